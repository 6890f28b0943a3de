"""Rollout state → the resources that carry it out: replica sets, routes, subsets.

Declarative rather than incremental: from the state alone we compute what the generated
Deployments, the VirtualService routes and the DestinationRule subsets must say. The same
state always yields the same resources, so a restarted controller re-applies exactly what
was in force (no traffic blip), and the store's all-or-nothing apply skips what did not
change.

Argo (traffic-management/istio.md): replica sets are Deployments `NAME-<hash>` labelled
`rollouts-pod-template-hash`; subset-level routing sets the DestinationRule subsets'
hash labels and the weights of the stable/canary destinations in the named VirtualService
routes; host-level routing sets the weights of the stableService/canaryService hosts and
those Services' selectors. Managed header/mirror routes go first in the VirtualService.
A basic canary (no trafficRouting) sizes its replica sets by the counts the controller
steps toward the weight within maxSurge/maxUnavailable (replicas.py); they are kept in the
rollout's record, so they too come back unchanged after a restart.
Flagger (faq "Istio routing"): a `NAME-primary` Deployment runs the promoted template;
Services NAME (apex) and NAME-primary select it, NAME-canary selects the target; a
VirtualService NAME splits between NAME-primary and NAME-canary. The target itself runs
only while a revision is analysed: at zero replicas once the primary is ready, back to
its replicas when a new revision is detected, at zero again after promotion or rollback.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

from tollway.config.resource import Resource, ResourceSet
from tollway.kit.hashing import content_hash
from tollway.rollout import replicas as sizing
from tollway.rollout.model import Phase, Plan, RolloutState

HASH_LABEL = "rollouts-pod-template-hash"
OWNER = "tollway.dev/owned-by"
Manifest = dict[str, Any]


def template_hash(template: Mapping[str, Any]) -> str:
    """Argo's pod-template-hash analogue: a stable hash of the pod template."""
    return content_hash(template, 10)


def _meta(name: str, namespace: str, owner: str, labels: Mapping[str, str] | None = None,
          annotations: Mapping[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace,
                            "annotations": {**(annotations or {}), OWNER: owner}}
    if labels:
        meta["labels"] = dict(labels)
    return meta


def _owner(kind: str, r: Resource) -> str:
    return f"{kind}/{r.namespace}/{r.name}"


def _with_hash(template: Mapping[str, Any], h: str) -> dict[str, Any]:
    t = copy.deepcopy(dict(template))
    meta = t.setdefault("metadata", {})
    meta["labels"] = {**(meta.get("labels") or {}), HASH_LABEL: h}
    return t


def replica_set(rollout: Resource, template: Mapping[str, Any], h: str,
                replicas: int) -> Manifest:
    """A generated Deployment standing for one of the rollout's replica sets."""
    selector = dict((rollout.spec.get("selector") or {}).get("matchLabels") or {})
    labels = dict(((template.get("metadata") or {}).get("labels")) or {})
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": _meta(f"{rollout.name}-{h}", rollout.namespace, _owner("Rollout", rollout),
                          {**labels, HASH_LABEL: h}),
        "spec": {"replicas": replicas,
                 "selector": {"matchLabels": {**(selector or labels), HASH_LABEL: h}},
                 "template": _with_hash(template, h)},
    }


def canary_replicas(spec: Mapping[str, Any], state: RolloutState) -> int:
    """Argo with a traffic router: canary scaled to the weight unless setCanaryScale says."""
    total = int(spec.get("replicas", 1) or 1)
    scale = state.canary_scale
    if scale.get("replicas") is not None:
        return int(scale["replicas"])
    weight = (float(scale["weight"]) if scale.get("weight") is not None
              else max(state.weight, state.scale_weight))
    return max(1, math.ceil(total * weight / 100))


def stable_replicas(spec: Mapping[str, Any], state: RolloutState) -> int:
    """With a traffic router the stable stays full, unless `dynamicStableScale`: then it is
    sized to the larger of its desired and its actual traffic share."""
    total = int(spec.get("replicas", 1) or 1)
    canary = (spec.get("strategy") or {}).get("canary") or {}
    if not canary.get("dynamicStableScale") or state.revision == state.stable_revision:
        return total
    desired = 0 if state.abort else max(state.weight, state.scale_weight)
    _, stable = sizing.traffic_routed(total, desired, canary_scale={},
                                      dynamic_stable_scale=True, actual_weight=state.weight)
    return stable


def is_basic_canary(spec: Mapping[str, Any], plan: Plan) -> bool:
    """A canary without trafficRouting: its weight is the share of replicas."""
    canary = (spec.get("strategy") or {}).get("canary") or {}
    return plan.style == "argo-canary" and not canary.get("trafficRouting")


def argo_resources(rollout: Resource, plan: Plan, state: RolloutState,
                   templates: Mapping[str, Mapping[str, Any]],
                   current: ResourceSet,
                   counts: Mapping[str, int] | None = None) -> list[Manifest]:
    """Everything an Argo canary rollout needs in force for this state; `counts` (a basic
    canary) gives every replica set's size, stable and canary and older ones alike."""
    spec = rollout.spec
    stable_h = state.stable_revision
    canary_h = state.revision
    out: list[Manifest] = []
    running_canary = canary_h != stable_h and not state.abort
    if counts is not None:
        for h, n in counts.items():
            if n > 0 and h in templates:
                out.append(replica_set(rollout, templates[h], h, n))
    else:
        if stable_h in templates:
            out.append(replica_set(rollout, templates[stable_h], stable_h,
                                   stable_replicas(spec, state)))
        if running_canary and canary_h in templates:
            out.append(replica_set(rollout, templates[canary_h], canary_h,
                                   canary_replicas(spec, state)))
    routing = ((spec.get("strategy") or {}).get("canary") or {}).get("trafficRouting") or {}
    istio = routing.get("istio") or {}
    canary_for_routes = canary_h if running_canary else stable_h
    dr = istio.get("destinationRule")
    if dr:
        edited = _edit_dr(current, rollout, dr, stable_h, canary_for_routes)
        if edited:
            out.append(edited)
    canary_spec = (spec.get("strategy") or {}).get("canary") or {}
    if not dr:
        out += _host_services(current, rollout, canary_spec, stable_h, canary_for_routes)
    vs_specs = istio.get("virtualServices") or ([istio["virtualService"]]
                                               if istio.get("virtualService") else [])
    for vs in vs_specs:
        edited = _edit_vs(current, rollout, vs, dr, canary_spec, state)
        if edited:
            out.append(edited)
    return out


def _find(current: ResourceSet, kind: str, ref: str, namespace: str) -> Resource | None:
    name, _, ns = ref.partition(".")
    return current.get(kind, ns or namespace, name)


def _clone(r: Resource) -> Manifest:
    raw = copy.deepcopy(dict(r.raw))
    raw.setdefault("metadata", {})["namespace"] = r.namespace
    return raw


def _edit_dr(current: ResourceSet, rollout: Resource, dr: Mapping[str, Any], stable_h: str,
             canary_h: str) -> Manifest | None:
    found = _find(current, "DestinationRule", str(dr["name"]), rollout.namespace)
    if found is None:
        return None
    raw = _clone(found)
    for subset in raw.get("spec", {}).get("subsets") or []:
        if subset.get("name") == dr.get("stableSubsetName"):
            subset["labels"] = {**(subset.get("labels") or {}), HASH_LABEL: stable_h}
        elif subset.get("name") == dr.get("canarySubsetName"):
            subset["labels"] = {**(subset.get("labels") or {}), HASH_LABEL: canary_h}
    return raw


def _host_services(current: ResourceSet, rollout: Resource, canary: Mapping[str, Any],
                   stable_h: str, canary_h: str) -> list[Manifest]:
    out = []
    for key, h in (("stableService", stable_h), ("canaryService", canary_h)):
        name = canary.get(key)
        svc = current.get("Service", rollout.namespace, str(name)) if name else None
        if svc is None:
            continue
        raw = _clone(svc)
        sel = raw.setdefault("spec", {}).get("selector") or {}
        raw["spec"]["selector"] = {**sel, HASH_LABEL: h}
        out.append(raw)
    return out


def _is(dest: Mapping[str, Any], host: str | None, subset: str | None) -> bool:
    if subset is not None:
        return bool(dest.get("subset") == subset)
    if host is None:
        return False
    h = str(dest.get("host", ""))
    return h == host or h.split(".")[0] == host


def _edit_vs(current: ResourceSet, rollout: Resource, vs: Mapping[str, Any],
             dr: Mapping[str, Any] | None, canary: Mapping[str, Any],
             state: RolloutState) -> Manifest | None:
    found = _find(current, "VirtualService", str(vs["name"]), rollout.namespace)
    if found is None:
        return None
    raw = _clone(found)
    http = [r for r in raw.get("spec", {}).get("http") or []
            if not str(r.get("name", "")).startswith("tollway-managed-")]
    names = set(vs.get("routes") or [])
    stable_sub = dr.get("stableSubsetName") if dr else None
    canary_sub = dr.get("canarySubsetName") if dr else None
    stable_host = None if dr else canary.get("stableService")
    canary_host = None if dr else canary.get("canaryService")
    primary: Mapping[str, Any] | None = None
    for route in http:
        if names and route.get("name") not in names and not (len(http) == 1 and not names):
            continue
        for dest in route.get("route") or []:
            d = dest.get("destination") or {}
            if _is(d, stable_host, stable_sub):
                dest["weight"] = 100 - state.weight
                primary = primary or route
            elif _is(d, canary_host, canary_sub):
                dest["weight"] = state.weight
    managed = _managed_routes(primary, state, canary_sub, canary_host)
    raw["spec"]["http"] = managed + http
    return raw


def _canary_dest(primary: Mapping[str, Any], canary_sub: str | None,
                 canary_host: str | None) -> dict[str, Any]:
    for dest in primary.get("route") or []:
        d = dict(dest.get("destination") or {})
        if (canary_sub and d.get("subset") == canary_sub) or (
            canary_host and _is(d, canary_host, None)
        ):
            return d
    first = dict((primary.get("route") or [{}])[0].get("destination") or {})
    if canary_sub:
        first["subset"] = canary_sub
    return first


def _managed_routes(primary: Mapping[str, Any] | None, state: RolloutState,
                    canary_sub: str | None, canary_host: str | None) -> list[dict[str, Any]]:
    if primary is None:
        return []
    canary_dest = _canary_dest(primary, canary_sub, canary_host)
    out: list[dict[str, Any]] = []
    for name, mirror in sorted(state.mirror_routes.items()):
        route: dict[str, Any] = {"name": f"tollway-managed-{name}",
                 "route": copy.deepcopy(list(primary.get("route") or [])),
                 "mirror": canary_dest}
        if mirror.get("percentage") is not None:
            route["mirrorPercentage"] = {"value": float(mirror["percentage"])}
        if mirror.get("match"):
            route["match"] = [_argo_match(m) for m in mirror["match"]]
        out.append(route)
    for name, matches in sorted(state.header_routes.items()):
        out.append({"name": f"tollway-managed-{name}",
                    "match": [_argo_match(m) for m in matches],
                    "route": [{"destination": canary_dest, "weight": 100}]})
    return out


def _argo_match(m: Mapping[str, Any]) -> dict[str, Any]:
    """Argo's header match ({headerName, headerValue}) or a mirror match → Istio's."""
    if "headerName" in m:
        return {"headers": {str(m["headerName"]): dict(m.get("headerValue") or {})}}
    out: dict[str, Any] = {}
    for key in ("method", "uri", "headers", "queryParams"):
        if key in m:
            out[key] = copy.deepcopy(m[key])
    if "path" in m:
        out["uri"] = copy.deepcopy(m["path"])
    return out


def bluegreen_resources(rollout: Resource, plan: Plan, state: RolloutState,
                        templates: Mapping[str, Mapping[str, Any]],
                        current: ResourceSet) -> list[Manifest]:
    """Active and preview replica sets, and the two Services' selectors (Argo blue-green)."""
    bg = plan.bluegreen
    assert bg is not None
    total = int(rollout.spec.get("replicas", 1) or 1)
    out: list[Manifest] = []
    active, preview = state.stable_revision, state.revision
    if active in templates:
        out.append(replica_set(rollout, templates[active], active, total))
    previewing = preview != active and not state.abort
    if previewing and preview in templates:
        count = total if bg.preview_replicas is None else int(bg.preview_replicas)
        out.append(replica_set(rollout, templates[preview], preview, count))
    for name, h in ((bg.active_service, active),
                    (bg.preview_service, preview if previewing else active)):
        svc = current.get("Service", rollout.namespace, str(name)) if name else None
        if svc is None:
            continue
        raw = _clone(svc)
        sel = raw.setdefault("spec", {}).get("selector") or {}
        raw["spec"]["selector"] = {**sel, HASH_LABEL: h}
        out.append(raw)
    return out


# ---- Flagger ---------------------------------------------------------------------------------


TARGET_UP = (Phase.PROGRESSING, Phase.WAITING_PROMOTION, Phase.PROMOTING, Phase.FINALISING)


def flagger_resources(canary: Resource, plan: Plan, state: RolloutState,
                      templates: Mapping[str, Mapping[str, Any]],
                      current: ResourceSet, target_replicas: int = 0) -> list[Manifest]:
    """The -primary Deployment, the apex/primary/canary Services, the VirtualService and
    the target's scale. `target_replicas` is the target's own count (last seen above zero;
    ours to restore, since we set it to zero); while Initializing only the primary."""
    spec = canary.spec
    target = str((spec.get("targetRef") or {}).get("name", canary.name))
    ns = canary.namespace
    owner = _owner("Canary", canary)
    dep = current.get("Deployment", ns, target)
    out: list[Manifest] = []
    primary = f"{target}-primary"
    size = target_replicas or (int(dep.spec.get("replicas", 1) or 1) if dep else 1)
    if dep is not None and state.stable_revision in templates:
        template = copy.deepcopy(dict(templates[state.stable_revision]))
        labels = dict((template.get("metadata") or {}).get("labels") or {})
        labels["app"] = primary
        template.setdefault("metadata", {})["labels"] = labels
        body: dict[str, Any] = {"replicas": size,
                                "selector": {"matchLabels": {"app": primary}},
                                "template": template}
        if dep.spec.get("strategy"):
            body["strategy"] = copy.deepcopy(dep.spec["strategy"])
        out.append({"apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": _meta(primary, ns, owner, labels), "spec": body})
    if state.phase is Phase.INITIALIZING:
        return out
    if dep is not None:
        want = size if state.phase in TARGET_UP else 0
        if int(dep.spec.get("replicas", 1) if dep.spec.get("replicas") is not None
               else 1) != want:
            scaled = _clone(dep)
            scaled["spec"]["replicas"] = want
            out.append(scaled)
    svc = spec.get("service") or {}
    port = int(svc.get("port", 80))
    target_port = svc.get("targetPort", port)
    canary_labels = dict(((dep.spec.get("template") or {}).get("metadata") or {}).get("labels")
                         or {}) if dep else {"app": target}
    ports = [{"name": str(svc.get("portName", "http")), "port": port,
              "targetPort": target_port}]
    for name, selector in ((target, {"app": primary}), (primary, {"app": primary}),
                           (f"{target}-canary", canary_labels)):
        out.append({"apiVersion": "v1", "kind": "Service",
                    "metadata": _meta(name, ns, owner),
                    "spec": {"selector": selector, "ports": ports}})
    out.append(_flagger_vs(canary, target, plan, state, port))
    return out


def _flagger_vs(canary: Resource, target: str, plan: Plan, state: RolloutState,
                port: int) -> Manifest:
    svc = canary.spec.get("service") or {}
    primary_host, canary_host = f"{target}-primary", f"{target}-canary"
    split = [{"destination": {"host": primary_host, "port": {"number": port}},
              "weight": 100 - state.weight},
             {"destination": {"host": canary_host, "port": {"number": port}},
              "weight": state.weight}]
    http: list[dict[str, Any]] = []
    for matches in state.header_routes.values():
        http.append({"name": "canary-match", "match": copy.deepcopy(matches),
                     "route": [{"destination": split[1]["destination"], "weight": 100}]})
    default: dict[str, Any] = {"name": "primary", "route": split}
    for key in ("timeout", "retries", "headers", "corsPolicy", "rewrite"):
        if key in svc:
            default[key] = copy.deepcopy(svc[key])
    mirror = state.mirror_routes.get("mirror")
    if mirror:
        default["mirror"] = split[1]["destination"]
        default["mirrorPercentage"] = {"value": float(mirror.get("percentage") or 100)}
    http.append(default)
    spec: dict[str, Any] = {"hosts": [target, *list(svc.get("hosts") or [])], "http": http}
    if svc.get("gateways"):
        spec["gateways"] = list(svc["gateways"])
    return {"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
            "metadata": _meta(target, canary.namespace, _owner("Canary", canary)),
            "spec": spec}
