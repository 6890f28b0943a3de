"""PeerAuthentication and AuthorizationPolicy → the security part of one proxy's snapshot.

Pure: reads `world.resources` (specs as the user wrote them, Istio's field names) and the
proxy's `Node`, and returns plain snapshot types. Istio's rules, in brief:
- PeerAuthentication: workload (selector) over namespace over mesh (root namespace, no
  selector); a root-namespace PA with a selector is ignored; the oldest wins within a
  scope; UNSET inherits from the wider scope; `portLevelMtls` only on a workload PA, and a
  port-level UNSET inherits the workload's mode. Nothing at all means PERMISSIVE.
- AuthorizationPolicy: those in the workload's namespace or the root namespace whose
  selector (if any) matches the workload's labels; `targetRefs` policies are for
  gateways; `istio.io/dry-run: "true"` policies are not enforced.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, Protocol, cast

from tollway.config.resource import Resource, ResourceSet
from tollway.snapshot import types

ROOT_NAMESPACE = "istio-system"
Mode = Literal["STRICT", "PERMISSIVE", "DISABLE"]
MODES = ("STRICT", "PERMISSIVE", "DISABLE")


class HasResources(Protocol):
    """What this module needs from `control.world.World`."""

    @property
    def resources(self) -> ResourceSet: ...


# ------------------------------------------------------------------ selection


def _match_labels(spec: Mapping[str, Any]) -> Mapping[str, str] | None:
    selector = spec.get("selector")
    if not isinstance(selector, Mapping):
        return None
    labels = selector.get("matchLabels")
    return labels if isinstance(labels, Mapping) else {}


def _selects(labels: Mapping[str, str], node: types.Node) -> bool:
    return all(node.labels.get(k) == str(v) for k, v in labels.items())


def _age_key(r: Resource) -> tuple[str, str, int]:
    """Oldest first: creationTimestamp when given, else the order the files were read."""
    meta = r.raw.get("metadata") if isinstance(r.raw, Mapping) else None
    stamp = str(meta.get("creationTimestamp", "")) if isinstance(meta, Mapping) else ""
    return (stamp or "~", r.source.file, r.source.doc)


def _oldest(items: Iterable[Resource]) -> Resource | None:
    ordered = sorted(items, key=_age_key)
    return ordered[0] if ordered else None


# ------------------------------------------------------------------ PeerAuthentication


def _mode_of(obj: Any) -> str:
    if isinstance(obj, Mapping):
        mode = obj.get("mode")
        if isinstance(mode, str) and mode in (*MODES, "UNSET"):
            return mode
    return "UNSET"


def _resolve(*modes: str) -> str:
    """Widest scope first; a later non-UNSET mode overrides."""
    effective = "UNSET"
    for m in modes:
        if m != "UNSET":
            effective = m
    return effective


def peer_authn_for(
    world: HasResources, node: types.Node, root_namespace: str = ROOT_NAMESPACE
) -> types.PeerAuthn:
    """The effective inbound mTLS mode for `node`, with port-level overrides."""
    pas = world.resources.of_kind("PeerAuthentication")
    mesh = _oldest(r for r in pas if r.namespace == root_namespace
                   and _match_labels(r.spec) is None)
    ns = _oldest(r for r in pas if r.namespace == node.namespace
                 and r.namespace != root_namespace and _match_labels(r.spec) is None)
    workload = _oldest(r for r in pas if r.namespace == node.namespace
                       and r.namespace != root_namespace
                       and (sel := _match_labels(r.spec)) is not None and _selects(sel, node))
    base = _resolve(*(_mode_of(r.spec.get("mtls")) if r else "UNSET"
                      for r in (mesh, ns, workload)))
    mode = base if base != "UNSET" else "PERMISSIVE"
    ports: dict[int, str] = {}
    if workload is not None:
        for port, setting in (workload.spec.get("portLevelMtls") or {}).items():
            pm = _mode_of(setting)
            ports[int(port)] = mode if pm == "UNSET" else pm
    return types.PeerAuthn(mode=cast(Mode, mode), port_modes=ports)


# ------------------------------------------------------------------ AuthorizationPolicy


def _applies(r: Resource, node: types.Node, root_namespace: str) -> bool:
    if r.namespace not in (node.namespace, root_namespace):
        return False
    if str(r.annotations.get("istio.io/dry-run", "")).lower() in ("1", "t", "true"):  # ParseBool
        return False
    if r.spec.get("targetRefs") or r.spec.get("targetRef"):
        return node.kind == "gateway"
    labels = _match_labels(r.spec)
    return labels is None or _selects(labels, node)


def _strings(values: Any) -> tuple[str, ...]:
    if not isinstance(values, Sequence) or isinstance(values, str):
        return ()
    return tuple(str(v) for v in values)


def _set(spec: Mapping[str, Any], name: str, *, extra: Sequence[str] = (),
         extra_not: Sequence[str] = ()) -> types.StringSet | None:
    cap = name[0].upper() + name[1:]
    values = (*_strings(spec.get(name)), *extra)
    not_values = (*_strings(spec.get("not" + cap)), *extra_not)
    if not values and not not_values:
        return None
    return types.StringSet(values=values, not_values=not_values)


def _service_accounts(values: Any, namespace: str) -> tuple[str, ...]:
    """`serviceAccounts` (`ns/sa` or `sa`) as principal suffixes, as Istio expands them."""
    out = []
    for v in _strings(values):
        ns, _, sa = v.rpartition("/")
        out.append(f"*/ns/{ns or namespace}/sa/{sa}")
    return tuple(out)


def _source(src: Mapping[str, Any], namespace: str) -> types.AuthzSource:
    return types.AuthzSource(
        principals=_set(
            src, "principals",
            extra=_service_accounts(src.get("serviceAccounts"), namespace),
            extra_not=_service_accounts(src.get("notServiceAccounts"), namespace),
        ),
        request_principals=_set(src, "requestPrincipals"),
        namespaces=_set(src, "namespaces"),
        ip_blocks=_set(src, "ipBlocks"),
        remote_ip_blocks=_set(src, "remoteIpBlocks"),
        trust_domains=_set(src, "trustDomains"),
    )


def _operation(op: Mapping[str, Any]) -> types.AuthzOperation:
    return types.AuthzOperation(
        hosts=_set(op, "hosts"),
        ports=_set(op, "ports"),
        methods=_set(op, "methods"),
        paths=_set(op, "paths"),
    )


def _entries(items: Any, key: str) -> list[Mapping[str, Any]]:
    out = []
    for item in items or ():
        inner = item.get(key) if isinstance(item, Mapping) else None
        out.append(inner if isinstance(inner, Mapping) else {})
    return out


def rule_from_spec(rule: Mapping[str, Any], namespace: str) -> types.AuthzRule:
    """One `rules[]` entry → AuthzRule (from/to ORed inside, when ANDed)."""
    return types.AuthzRule(
        sources=tuple(_source(s, namespace) for s in _entries(rule.get("from"), "source")),
        operations=tuple(_operation(o) for o in _entries(rule.get("to"), "operation")),
        conditions=tuple(
            types.AuthzCondition(
                key=str(c.get("key", "")),
                values=_strings(c.get("values")),
                not_values=_strings(c.get("notValues")),
            )
            for c in rule.get("when") or ()
            if isinstance(c, Mapping)
        ),
    )


def policy_from_resource(r: Resource) -> types.AuthzPolicy:
    action = str(r.spec.get("action") or "ALLOW")
    rules = tuple(rule_from_spec(x if isinstance(x, Mapping) else {}, r.namespace)
                  for x in r.spec.get("rules") or ())
    return types.AuthzPolicy(
        name=f"{r.namespace}/{r.name}",
        action=cast(Literal["ALLOW", "DENY", "AUDIT", "CUSTOM"], action),
        rules=rules,
    )


def authz_for(
    world: HasResources, node: types.Node, root_namespace: str = ROOT_NAMESPACE
) -> types.Authz:
    """Every AuthorizationPolicy that selects `node`, ordered by namespace/name."""
    chosen = [r for r in world.resources.of_kind("AuthorizationPolicy")
              if _applies(r, node, root_namespace)]
    chosen.sort(key=lambda r: (r.namespace, r.name))
    return types.Authz(policies=tuple(policy_from_resource(r) for r in chosen))


# ------------------------------------------------------------------ client side


def spiffe_id(namespace: str, service_account: str, trust_domain: str = "cluster.local") -> str:
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"


def expected_identities(
    endpoints: Iterable[types.Endpoint], trust_domain: str = "cluster.local"
) -> tuple[str, ...]:
    """The SPIFFE IDs the destination's endpoints run as (what the client verifies)."""
    ids = {spiffe_id(e.namespace, e.service_account, trust_domain) for e in endpoints}
    return tuple(sorted(ids))


def _endpoint_node(e: types.Endpoint) -> types.Node:
    return types.Node(name=e.workload or e.address, workload=e.workload,
                      namespace=e.namespace, service_account=e.service_account,
                      labels=dict(e.labels))


def upstream_tls_for(
    world: HasResources,
    tls: Mapping[str, Any] | None,
    endpoints: Sequence[types.Endpoint],
    trust_domain: str = "cluster.local",
    root_namespace: str = ROOT_NAMESPACE,
    sidecars: bool = True,
) -> types.UpstreamTls:
    """DestinationRule `trafficPolicy.tls` → client TLS; with none, Istio's auto mTLS.

    Auto mTLS: ISTIO_MUTUAL when every endpoint's sidecar accepts mTLS on its port
    (its PeerAuthentication is not DISABLE), plaintext otherwise or when the endpoints
    have no sidecar (`sidecars=False`, e.g. a ServiceEntry's external hosts).
    """
    ids = expected_identities(endpoints, trust_domain)
    if tls:
        mode = str(tls.get("mode") or "DISABLE")
        return types.UpstreamTls(
            mode=cast(Literal["DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"], mode),
            sni=tls.get("sni"),
            ca_certificates=tls.get("caCertificates"),
            client_certificate=tls.get("clientCertificate"),
            private_key=tls.get("privateKey"),
            subject_alt_names=_strings(tls.get("subjectAltNames")),
            insecure_skip_verify=bool(tls.get("insecureSkipVerify", False)),
            expected_identities=ids if mode == "ISTIO_MUTUAL" else (),
        )
    if not endpoints or not sidecars:
        return types.UpstreamTls()
    for e in endpoints:
        pa = peer_authn_for(world, _endpoint_node(e), root_namespace)
        if pa.port_modes.get(e.port, pa.mode) == "DISABLE":
            return types.UpstreamTls()
    return types.UpstreamTls(mode="ISTIO_MUTUAL", expected_identities=ids)


def trust_for(root_pem: str | None, trust_domain: str = "cluster.local",
              revoked_serials: Iterable[str] = ()) -> types.Trust:
    """The trust bundle pushed with config: the CA's root and revoked serials."""
    return types.Trust(trust_domain=trust_domain, root_certificates=root_pem,
                       revoked_serials=tuple(sorted(revoked_serials)))
