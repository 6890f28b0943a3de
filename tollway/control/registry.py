"""Service registry: which endpoints stand behind each (host, port) of the mesh [pure].

Inputs are the validated resources and the replicas the runtime knows about (local
processes, or VMs registered as WorkloadEntries). Sources, in Istio's and Kubernetes'
terms:
- a Kubernetes `Service` selects replicas and WorkloadEntries of its namespace by label;
  each service port maps to the replica's sidecar inbound port (`Replica.port`, or the
  entry in `Replica.ports` for the targetPort);
- without a Service, a Deployment/Rollout whose pod labels carry `app: NAME` (or a
  WorkloadEntry / replica with that label) provides host NAME in its namespace on its
  containerPort(s) — 8080 when none is declared;
- a `ServiceEntry` provides its hosts with its `endpoints`, its `workloadSelector`, or
  (resolution DNS without endpoints) the host itself.

Endpoints are keyed `"FQDN:PORT"` (see `endpoint_key`), PORT being the *service* port the
clients name. Endpoints of replicas with a sidecar carry the label
`security.istio.io/tlsMode: istio`, as Istio marks them for auto mTLS; pods without one
are plaintext endpoints (meshed clients still reach them, without mTLS).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tollway.config.resource import CLUSTER_DOMAIN, Resource, ResourceSet
from tollway.control import protocol
from tollway.snapshot import types

DEFAULT_PORT = 8080
TLS_MODE_LABEL = "security.istio.io/tlsMode"
WORKLOAD_KINDS = ("Deployment", "Rollout")


@dataclass(frozen=True, slots=True)
class Replica:
    """One running instance of a workload, as the runtime reports it.

    `port` is where OTHER sidecars connect (this replica's sidecar inbound listener);
    `ports` maps a container port to its inbound listener for multi-port workloads.
    """

    workload: str
    kind: str  # "Deployment" | "Rollout" | "WorkloadEntry"
    namespace: str
    labels: Mapping[str, str]
    service_account: str
    address: str
    port: int
    app_port: int
    healthy: bool = True
    name: str = ""
    ports: Mapping[int, int] = field(default_factory=dict)
    # A Kubernetes pod: clients connect to the Service's targetPort at the pod IP, as
    # EndpointSlices list it (its sidecar, if any, captures the connection); a named
    # targetPort is looked up in `named_ports` (the containers' port names).
    target_ports: bool = False
    named_ports: Mapping[str, int] = field(default_factory=dict)
    # Runs a Tollway sidecar: its endpoints speak mTLS (tlsMode istio); a pod without one
    # is a plaintext endpoint.
    sidecar: bool = True

    def port_for(self, target: int | str | None) -> int:
        if self.target_ports:
            if isinstance(target, int):
                return target
            if isinstance(target, str):
                return self.named_ports.get(target, self.app_port)
            return self.app_port
        if isinstance(target, int) and target in self.ports:
            return self.ports[target]
        return self.port


@dataclass(frozen=True, slots=True)
class ServicePort:
    number: int
    name: str = "http"
    target: int | str | None = None
    # Istio's protocol of the port (control/protocol.py): "HTTP", "HTTP2", "GRPC", "TCP"...;
    # "" when neither appProtocol nor the name says (Istio sniffs such a port)
    protocol: str = "HTTP"


@dataclass(frozen=True, slots=True)
class Service:
    """A host the mesh knows, with the ports clients may name."""

    host: str  # FQDN, or a ServiceEntry host as written (lowercased)
    name: str
    namespace: str
    ports: tuple[ServicePort, ...]
    origin: str  # "Service" | "workload" | "ServiceEntry"
    sidecars: bool = True  # endpoints run a Tollway sidecar (False for external entries)
    export_to: tuple[str, ...] = ()  # ServiceEntry exportTo / Service annotation; () = all
    # The Service's ClusterIPs: a captured connection to VIP:port (an app that dialled the
    # address, not the name) is routed as the service, as Istio's virtual hosts list them.
    addresses: tuple[str, ...] = ()

    def visible_in(self, namespace: str) -> bool:
        e = self.export_to
        return (not e or "*" in e or namespace in e
                or ("." in e and namespace == self.namespace))

    def port(self, number: int) -> ServicePort | None:
        return next((p for p in self.ports if p.number == number), None)


@dataclass(frozen=True, slots=True)
class Registry:
    services: Mapping[str, Service]
    endpoints: Mapping[str, tuple[types.Endpoint, ...]]


def fqdn(name: str, namespace: str, domain: str = CLUSTER_DOMAIN) -> str:
    return f"{name}.{namespace}.svc.{domain}"


def endpoint_key(host: str, port: int) -> str:
    """The registry key: `"payment-service.payments.svc.cluster.local:8080"`."""
    return f"{host}:{port}"


# ------------------------------------------------------------------ spec helpers


def as_map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else []


def as_int(value: Any, default: int | None = None) -> int | None:
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return default


def str_labels(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in as_map(value).items()}


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def pod_labels(r: Resource) -> dict[str, str]:
    template = as_map(r.spec.get("template"))
    return str_labels(as_map(template.get("metadata")).get("labels"))


def container_ports(r: Resource) -> list[ServicePort]:
    template = as_map(r.spec.get("template"))
    out: list[ServicePort] = []
    for c in as_list(as_map(template.get("spec")).get("containers")):
        for p in as_list(as_map(c).get("ports")):
            number = as_int(as_map(p).get("containerPort"))
            if number is not None and all(o.number != number for o in out):
                name = as_map(p).get("name")
                out.append(ServicePort(number, str(name or "http"), number,
                                       protocol.port_protocol(number, name) if name else "HTTP"))
    return out


# ------------------------------------------------------------------ endpoints


def _replica_endpoint(r: Replica, port: int) -> types.Endpoint:
    labels = dict(r.labels)
    if r.sidecar:
        labels[TLS_MODE_LABEL] = "istio"
    return types.Endpoint(
        address=r.address, port=port, labels=labels, service_account=r.service_account,
        namespace=r.namespace, workload=r.workload, healthy=r.healthy,
    )


def _entry_endpoint(spec: Mapping[str, Any], namespace: str, port: int,
                    workload: str = "") -> types.Endpoint:
    weight = as_int(spec.get("weight"), 1) or 1
    return types.Endpoint(
        address=str(spec.get("address") or ""), port=port,
        labels=str_labels(spec.get("labels")),
        service_account=str(spec.get("serviceAccount") or "default"),
        namespace=namespace, workload=workload, weight=weight,
    )


def _entry_port(spec: Mapping[str, Any], sp: ServicePort) -> int:
    """WorkloadEntry.ports[svcPortName] wins; then an int targetPort; then the number."""
    ports = as_map(spec.get("ports"))
    named = as_int(ports.get(sp.name))
    if named is not None:
        return named
    if len(ports) == 1:
        only = as_int(next(iter(ports.values())))
        if only is not None:
            return only
    target = as_int(sp.target)
    return target if target is not None else sp.number


def _registered(replicas: Sequence[Replica]) -> set[tuple[str, str]]:
    """WorkloadEntries that a live registered proxy stands for (it replaces the entry)."""
    return {(r.namespace, r.workload) for r in replicas if r.kind == "WorkloadEntry"}


def _workload_entries(resources: ResourceSet, replicas: Sequence[Replica]) -> list[Resource]:
    live = _registered(replicas)
    return [w for w in resources.of_kind("WorkloadEntry")
            if (w.namespace, w.name) not in live and w.spec.get("address")]


class _Pool:
    """Replicas and WorkloadEntries indexed by (namespace, label, value): selecting stays
    cheap when hundreds of replicas back dozens of services."""

    def __init__(self, replicas: Sequence[Replica], entries: Sequence[Resource]) -> None:
        self.replicas: dict[tuple[str, str, str], list[Replica]] = {}
        self.entries: dict[tuple[str, str, str], list[Resource]] = {}
        for r in replicas:
            for k, v in r.labels.items():
                self.replicas.setdefault((r.namespace, k, v), []).append(r)
        for w in entries:
            for k, v in str_labels(w.spec.get("labels")).items():
                self.entries.setdefault((w.namespace, k, v), []).append(w)

    def select(self, selector: Mapping[str, str], namespace: str,
               sp: ServicePort) -> list[types.Endpoint]:
        if not selector:
            return []
        first = min(selector.items())
        key = (namespace, *first)
        eps = [_replica_endpoint(r, r.port_for(sp.target))
               for r in self.replicas.get(key, ()) if selects(selector, r.labels)]
        eps += [_entry_endpoint(w.spec, w.namespace, _entry_port(w.spec, sp), w.name)
                for w in self.entries.get(key, ())
                if selects(selector, str_labels(w.spec.get("labels")))]
        return eps


# ------------------------------------------------------------------ sources


def _service_ports(spec: Mapping[str, Any]) -> tuple[ServicePort, ...]:
    out: list[ServicePort] = []
    for p in as_list(spec.get("ports")):
        pm = as_map(p)
        number = as_int(pm.get("port"))
        if number is None:
            continue
        target = pm.get("targetPort")
        target = target if isinstance(target, (int, str)) and not isinstance(target, bool) \
            else number
        name, app = pm.get("name"), pm.get("appProtocol")
        out.append(ServicePort(number, str(name or "http"), target, protocol.port_protocol(
            number, str(name) if name else None, str(app) if app else None,
            str(pm.get("protocol") or "TCP"))))
    return tuple(out)


def _kube_services(resources: ResourceSet, domain: str) -> list[tuple[Service, Resource]]:
    return [(Service(fqdn(r.name, r.namespace, domain), r.name, r.namespace,
                     _service_ports(r.spec), "Service",
                     export_to=_split(r.annotations.get("networking.istio.io/exportTo")),
                     addresses=_cluster_ips(r.spec)), r)
            for r in resources.of_kind("Service")]


def _cluster_ips(spec: Mapping[str, Any]) -> tuple[str, ...]:
    """`clusterIPs` (or `clusterIP`) as IP literals; a headless Service ("None") has none."""
    found = [str(a) for a in as_list(spec.get("clusterIPs"))] or [str(spec.get("clusterIP") or "")]
    out: list[str] = []
    for text in found:
        try:
            out.append(str(ipaddress.ip_address(text)))
        except ValueError:
            continue
    return tuple(dict.fromkeys(out))


def _split(value: Any) -> tuple[str, ...]:
    return tuple(x.strip() for x in str(value).split(",") if x.strip()) if value else ()


def _implicit_services(
    resources: ResourceSet, replicas: Sequence[Replica], entries: Sequence[Resource],
    domain: str,
) -> list[Service]:
    """Hosts named by an `app` label where no Service of that name exists."""
    ports: dict[tuple[str, str], list[ServicePort]] = {}
    for kind in WORKLOAD_KINDS:
        for r in resources.of_kind(kind):
            app = pod_labels(r).get("app")
            if app:
                known = ports.setdefault((r.namespace, app), [])
                known += [p for p in container_ports(r) if p.number not in
                          {k.number for k in known}]
    names = [(r.namespace, r.labels.get("app", "")) for r in replicas]
    names += [(w.namespace, str_labels(w.spec.get("labels")).get("app", "")) for w in entries]
    for key in names:
        if key[1]:
            ports.setdefault(key, [])
    out = []
    for (ns, app), found in sorted(ports.items()):
        if resources.get("Service", ns, app) is None:
            found = found or [ServicePort(DEFAULT_PORT, "http", DEFAULT_PORT)]
            out.append(Service(fqdn(app, ns, domain), app, ns,
                               tuple(sorted(found, key=lambda p: p.number)), "workload"))
    return out


def _entry_services(resources: ResourceSet) -> list[tuple[Service, Resource]]:
    out = []
    for r in resources.of_kind("ServiceEntry"):
        ports = tuple(
            ServicePort(n, str(as_map(p).get("name") or f"port-{n}"),
                        as_int(as_map(p).get("targetPort"), n),
                        protocol.parse(str(as_map(p).get("protocol") or "")))
            for p in as_list(r.spec.get("ports"))
            if (n := as_int(as_map(p).get("number"))) is not None
        )
        internal = r.spec.get("location") == "MESH_INTERNAL"
        for h in as_list(r.spec.get("hosts")):
            host = str(h).lower().rstrip(".")
            out.append((Service(host, host.split(".")[0], r.namespace, ports or
                                (ServicePort(80, "http", 80),), "ServiceEntry",
                                sidecars=internal,
                                export_to=tuple(str(x) for x in as_list(r.spec.get("exportTo")))),
                        r))
    return out


def _entry_endpoints(svc: Service, se: Resource, pool: _Pool) -> dict[int, list[types.Endpoint]]:
    resolution = str(se.spec.get("resolution") or "NONE")
    selector = as_map(se.spec.get("workloadSelector"))
    out: dict[int, list[types.Endpoint]] = {}
    for sp in svc.ports:
        if selector:
            eps = pool.select(str_labels(selector.get("labels")), se.namespace, sp)
        elif se.spec.get("endpoints"):
            eps = [_entry_endpoint(as_map(e), se.namespace, _entry_port(as_map(e), sp))
                   for e in as_list(se.spec.get("endpoints")) if as_map(e).get("address")]
        elif resolution.startswith("DNS") and "*" not in svc.host:
            eps = [types.Endpoint(address=svc.host, port=as_int(sp.target, sp.number)
                                  or sp.number, namespace=se.namespace)]
        else:
            eps = []
        out[sp.number] = eps
    return out


def _ordered(eps: Iterable[types.Endpoint]) -> tuple[types.Endpoint, ...]:
    return tuple(sorted(eps, key=lambda e: (e.address, e.port, e.workload)))


def build_registry(
    resources: ResourceSet, replicas: Sequence[Replica] = (), domain: str = CLUSTER_DOMAIN,
) -> Registry:
    """Every service the mesh knows and the endpoints behind each of its ports."""
    entries = _workload_entries(resources, replicas)
    pool = _Pool(replicas, entries)
    services: dict[str, Service] = {}
    endpoints: dict[str, tuple[types.Endpoint, ...]] = {}
    for svc, r in _kube_services(resources, domain):
        services[svc.host] = svc
        selector = str_labels(r.spec.get("selector"))
        for sp in svc.ports:
            eps = pool.select(selector, svc.namespace, sp)
            endpoints[endpoint_key(svc.host, sp.number)] = _ordered(eps)
    for svc in _implicit_services(resources, replicas, entries, domain):
        services[svc.host] = svc
        selector = {"app": svc.name}
        for sp in svc.ports:
            eps = pool.select(selector, svc.namespace, sp)
            endpoints[endpoint_key(svc.host, sp.number)] = _ordered(eps)
    for svc, se in _entry_services(resources):
        if svc.host in services:
            continue  # a ServiceEntry naming a Kubernetes service only adds SANs
        services[svc.host] = svc
        for number, eps in _entry_endpoints(svc, se, pool).items():
            endpoints[endpoint_key(svc.host, number)] = _ordered(eps)
    return Registry(services, endpoints)


def endpoints_for(
    resources: ResourceSet, replicas: Sequence[Replica] = (), domain: str = CLUSTER_DOMAIN,
) -> dict[str, tuple[types.Endpoint, ...]]:
    """`"FQDN:PORT"` -> endpoints, PORT being the service port clients name."""
    return dict(build_registry(resources, replicas, domain).endpoints)


# ------------------------------------------------------------------ who may join


_JOINING = "\x00joining"  # marks the candidate's endpoints in a trial registry


def _selector_of(svc: Service, resources: ResourceSet) -> tuple[str, Mapping[str, str]]:
    """The namespace and labels a service selects its backends by."""
    if svc.origin == "Service":
        r = resources.get("Service", svc.namespace, svc.name)
        return svc.namespace, str_labels(r.spec.get("selector")) if r else {}
    if svc.origin == "workload":
        return svc.namespace, {"app": svc.name}
    for se in resources.of_kind("ServiceEntry"):
        if svc.host in {str(h).lower().rstrip(".") for h in as_list(se.spec.get("hosts"))}:
            return se.namespace, str_labels(as_map(se.spec.get("workloadSelector"))
                                            .get("labels"))
    return svc.namespace, {}


def _declared_accounts(resources: ResourceSet, namespace: str,
                       selector: Mapping[str, str]) -> set[str]:
    """Service accounts the config says the selected workloads run as."""
    found: set[str] = set()
    if not selector:
        return found
    for kind in WORKLOAD_KINDS:
        for r in resources.of_kind(kind):
            if r.namespace == namespace and selects(selector, pod_labels(r)):
                spec = as_map(as_map(r.spec.get("template")).get("spec"))
                found.add(str(spec.get("serviceAccountName") or "default"))
    for w in resources.of_kind("WorkloadEntry"):
        if w.namespace == namespace and selects(selector, str_labels(w.spec.get("labels"))):
            found.add(str(w.spec.get("serviceAccount") or "default"))
    return found


def joined_services(resources: ResourceSet, replicas: Sequence[Replica], candidate: Replica,
                    domain: str = CLUSTER_DOMAIN) -> dict[str, set[str]]:
    """The hosts `candidate` would serve, each with the service accounts its other
    backends run as (live endpoints and the workloads the config declares).

    The registry uses it to refuse a registration that would put an endpoint running
    as one identity behind a service that runs as another: its clients' requests would
    reach whoever holds *some* token of that namespace.
    """
    trial = Replica(**{**{k: getattr(candidate, k) for k in candidate.__slots__},
                       "workload": _JOINING})
    others = [r for r in replicas if r.name != candidate.name]
    reg = build_registry(resources, [*others, trial], domain)
    out: dict[str, set[str]] = {}
    for key, eps in reg.endpoints.items():
        if not any(e.workload == _JOINING for e in eps):
            continue
        host = key.rpartition(":")[0]
        accounts = out.setdefault(host, set())
        accounts.update(e.service_account for e in eps if e.workload != _JOINING)
        svc = reg.services.get(host)
        if svc is not None:
            accounts.update(_declared_accounts(resources, *_selector_of(svc, resources)))
    return out
