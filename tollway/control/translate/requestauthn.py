"""RequestAuthentication -> the jwtRules one proxy enforces [pure].

Istio merges the jwtRules of every RequestAuthentication that applies to a workload:
those in the root namespace and the workload's namespace whose selector (if any) matches
its labels; `targetRefs` ones apply to gateways. Keys are inline here: `jwks` as written,
or, for `jwksUri`, what the control plane fetched into `jwks` before translation (see
`control/jwks.py`); a rule whose keys could not be fetched keeps only its `jwksUri`, and
the proxy then refuses that issuer's tokens (fail closed).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tollway.config.resource import Resource
from tollway.control.translate.security import ROOT_NAMESPACE, HasResources, _match_labels, _selects
from tollway.snapshot import types

DEFAULT_HEADER = "authorization"


def _applies(r: Resource, node: types.Node, root_namespace: str) -> bool:
    if r.namespace not in (node.namespace, root_namespace):
        return False
    if r.spec.get("targetRefs") or r.spec.get("targetRef"):
        return node.kind == "gateway"
    labels = _match_labels(r.spec)
    return labels is None or _selects(labels, node)


def _locations(rule: Mapping[str, Any]) -> tuple[types.JwtLocation, ...]:
    out = [types.JwtLocation(header=str(h.get("name", "")).lower(),
                             prefix=str(h.get("prefix") or ""))
           for h in rule.get("fromHeaders") or () if isinstance(h, Mapping)]
    out += [types.JwtLocation(param=str(p)) for p in rule.get("fromParams") or ()]
    out += [types.JwtLocation(cookie=str(c)) for c in rule.get("fromCookies") or ()]
    return tuple(out)  # empty: the proxy's default (Authorization: Bearer, access_token)


def jwt_rule(rule: Mapping[str, Any]) -> types.JwtRule:
    return types.JwtRule(
        issuer=str(rule.get("issuer", "")),
        audiences=tuple(str(a) for a in rule.get("audiences") or ()),
        jwks=str(rule.get("jwks") or ""),
        jwks_uri=str(rule.get("jwksUri") or ""),
        locations=_locations(rule),
        forward_original_token=bool(rule.get("forwardOriginalToken", False)),
        output_payload_to_header=str(rule.get("outputPayloadToHeader") or ""),
        output_claim_to_headers=tuple(
            (str(c.get("header", "")), str(c.get("claim", "")))
            for c in rule.get("outputClaimToHeaders") or () if isinstance(c, Mapping)),
        space_delimited_claims=tuple(str(c) for c in rule.get("spaceDelimitedClaims") or ()),
    )


def request_authn_for(world: HasResources, node: types.Node,
                      root_namespace: str = ROOT_NAMESPACE) -> types.RequestAuthn:
    """Every jwtRule that applies to `node`, root namespace first, then by name."""
    chosen = [r for r in world.resources.of_kind("RequestAuthentication")
              if _applies(r, node, root_namespace)]
    chosen.sort(key=lambda r: (r.namespace != root_namespace, r.namespace, r.name))
    return types.RequestAuthn(rules=tuple(
        jwt_rule(rule) for r in chosen for rule in r.spec.get("jwtRules") or ()
        if isinstance(rule, Mapping)))
