"""RBAC evaluation for inbound requests, as Istio's AuthorizationPolicy defines it.

A snapshot's `types.Authz` is compiled once (`compile_authz`) into small matcher objects;
`evaluate(compiled, request)` then runs on the hot path and returns a `Decision` that says
not only allow/deny but which policy and rule decided, so the 403, the access log and
`tollway authz check` all tell the same story.

Order (Istio's): CUSTOM is skipped (no external authorizers here); any matching DENY
denies; with no ALLOW policy on the workload the request is allowed; otherwise one ALLOW
must match, else the default deny. AUDIT only marks the request.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import re2

from tollway.snapshot import types
from tollway.snapshot.conditions import ABSENT_PREFIX
from tollway.snapshot.conditions import known_condition as known_condition  # re-exported

Action = Literal["ALLOW", "DENY", "NONE"]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# The `when` key vocabulary lives in the snapshot contract, shared with config validation.
IP_CONDITIONS = frozenset({"source.ip", "remote.ip", "destination.ip"})


@dataclass(frozen=True, slots=True)
class Request:
    """The attributes of one inbound request that policies can look at.

    `principal` is the peer's SPIFFE identity without `spiffe://`
    (`cluster.local/ns/NS/sa/SA`), None on plaintext. Header names are lowercase.
    """

    method: str = "GET"
    path: str = "/"
    host: str = ""
    port: int = 0
    principal: str | None = None
    source_ip: str = "127.0.0.1"
    remote_ip: str | None = None
    destination_ip: str = "127.0.0.1"
    headers: Mapping[str, str] = field(default_factory=dict)
    request_principal: str | None = None
    sni: str = ""
    # From a verified JWT: list claims are tuples, and match when any element does.
    claims: Mapping[str, str | tuple[str, ...]] = field(default_factory=dict)

    @property
    def namespace(self) -> str | None:
        return namespace_of(self.principal)


def namespace_of(principal: str | None) -> str | None:
    """The `/ns/<ns>/` segment of a principal, as Istio reads `source.namespace`."""
    if not principal:
        return None
    parts = principal.split("/")
    for i in range(len(parts) - 1):
        if parts[i] == "ns":
            return parts[i + 1]
    return None


def _service_account_of(principal: str | None) -> str | None:
    ns = namespace_of(principal)
    if ns is None or principal is None:
        return None
    _, _, sa = principal.partition("/sa/")
    return f"{ns}/{sa}" if sa else None


def _trust_domain_of(principal: str | None) -> str | None:
    return principal.split("/", 1)[0] if principal else None


@dataclass(frozen=True, slots=True)
class Decision:
    """Why a request was allowed or denied: the deciding policy and rule index, if any."""

    allowed: bool
    action: Action
    policy: str | None
    rule: int | None
    reason: str
    audited: tuple[tuple[str, int], ...] = ()


# ------------------------------------------------------------------ value matchers

StrPred = Callable[[str], bool]


def string_matcher(pattern: str, *, ignore_case: bool = False, anywhere: bool = False) -> StrPred:
    """Istio's string forms: exact, `prefix*`, `*suffix`, `*` (any non-empty value).

    `anywhere` allows `*` inside the value (namespaces); it then matches as a glob.
    """
    p = pattern.lower() if ignore_case else pattern
    fold: Callable[[str], str] = str.lower if ignore_case else str
    if p == "*":
        return lambda v: v != ""
    if anywhere and "*" in p.strip("*"):
        rx = re2.compile(".*".join(re2.escape(part) for part in p.split("*")))
        return lambda v: rx.fullmatch(fold(v)) is not None
    if p.startswith("*"):
        tail = p[1:]
        return lambda v: fold(v).endswith(tail)
    if p.endswith("*"):
        head = p[:-1]
        return lambda v: fold(v).startswith(head)
    return lambda v: fold(v) == p


def path_matcher(pattern: str) -> StrPred:
    """Path patterns: the string forms, plus templates with `{*}` and `{**}` segments."""
    if "{*}" not in pattern and "{**}" not in pattern:
        return string_matcher(pattern)
    parts: list[str] = []
    for seg in pattern.split("/"):
        if seg == "{*}":
            parts.append("[^/]+")
        elif seg == "{**}":
            parts.append(".*")
        else:
            parts.append(re2.escape(seg))
    rx = re2.compile("/".join(parts))
    return lambda v: rx.fullmatch(v) is not None


def _network(value: str) -> Network:
    return ipaddress.ip_network(value, strict=False)


def ip_matcher(pattern: str) -> StrPred:
    """An IP or CIDR; an address that does not parse never matches."""
    net = _network(pattern)

    def match(v: str) -> bool:
        try:
            return ipaddress.ip_address(v) in net
        except ValueError:
            return False

    return match


class FieldMatcher:
    """One field: any of `values` (if given) and none of `not_values`, on one attribute.

    A missing attribute (None) matches no value, so it fails `values` and passes
    `not_values`: `notPrincipals: ["*"]` therefore matches plaintext, as in Istio.
    """

    __slots__ = ("_get", "_neg", "_pos")

    def __init__(
        self,
        get: Callable[[Request], str | tuple[str, ...] | None],
        values: tuple[StrPred, ...],
        not_values: tuple[StrPred, ...],
    ) -> None:
        self._get = get
        self._pos = values
        self._neg = not_values

    def __call__(self, req: Request) -> bool:
        v = self._get(req)
        if v is None:
            return not self._pos
        if isinstance(v, tuple):  # a list claim: any element matches (Istio)
            return self._any_of(v)
        if self._pos:
            for m in self._pos:
                if m(v):
                    break
            else:
                return False
        for m in self._neg:
            if m(v):
                return False
        return True

    def _any_of(self, items: tuple[str, ...]) -> bool:
        if self._pos and not any(m(v) for v in items for m in self._pos):
            return False
        return not any(m(v) for v in items for m in self._neg)


def _field(
    get: Callable[[Request], str | None],
    spec: types.StringSet | None,
    make: Callable[[str], StrPred],
) -> FieldMatcher | None:
    if spec is None or (not spec.values and not spec.not_values):
        return None
    return FieldMatcher(
        get, tuple(make(v) for v in spec.values), tuple(make(v) for v in spec.not_values)
    )


def exact_matcher(pattern: str) -> StrPred:
    """Ports: exact only."""
    return lambda v: v == pattern


def _host_matcher(pattern: str) -> StrPred:
    return string_matcher(pattern, ignore_case=True)


def _ns_matcher(pattern: str) -> StrPred:
    return string_matcher(pattern, anywhere=True)


def _remote_ip(r: Request) -> str:
    return r.remote_ip or r.source_ip


def _path_only(r: Request) -> str:
    return path_only(r.path)


def path_only(target: str) -> str:
    """The path a `paths` rule compares: the query dropped, nothing else. The listener has
    already normalized it per meshConfig.pathNormalization (core/pathnorm.py) for routing,
    this check and the app alike; normalizing again here would make NONE mean BASE."""
    q = target.find("?")
    return target if q < 0 else target[:q]


# ------------------------------------------------------------------ compiled rules

Pred = Callable[[Request], bool]


def _all(preds: list[FieldMatcher | Pred | None]) -> Pred:
    live = tuple(p for p in preds if p is not None)
    if not live:
        return lambda r: True
    if len(live) == 1:
        return live[0]

    def every(r: Request) -> bool:
        for p in live:
            if not p(r):
                return False
        return True

    return every


def _any(preds: list[Pred]) -> Pred:
    if not preds:
        return lambda r: True  # a missing from/to means "any"
    if len(preds) == 1:
        return preds[0]
    items = tuple(preds)

    def some(r: Request) -> bool:
        for p in items:
            if p(r):
                return True
        return False

    return some


def _source(s: types.AuthzSource) -> Pred:
    return _all(
        [
            _field(lambda r: r.principal, s.principals, string_matcher),
            _field(lambda r: r.request_principal, s.request_principals, string_matcher),
            _field(lambda r: r.namespace, s.namespaces, _ns_matcher),
            _field(lambda r: r.source_ip, s.ip_blocks, ip_matcher),
            _field(_remote_ip, s.remote_ip_blocks, ip_matcher),
            _field(lambda r: _trust_domain_of(r.principal), s.trust_domains, string_matcher),
        ]
    )


def _operation(o: types.AuthzOperation) -> Pred:
    return _all(
        [
            _field(lambda r: r.host, o.hosts, _host_matcher),
            _field(lambda r: str(r.port), o.ports, exact_matcher),
            _field(lambda r: r.method, o.methods, string_matcher),
            _field(_path_only, o.paths, path_matcher),
        ]
    )


Getter = Callable[[Request], str | tuple[str, ...] | None]
_ATTRS: dict[str, Getter] = {
    "source.ip": lambda r: r.source_ip,
    "remote.ip": _remote_ip,
    "source.namespace": lambda r: r.namespace,
    "source.principal": lambda r: r.principal,
    "source.serviceAccount": lambda r: _service_account_of(r.principal),
    "source.trustDomain": lambda r: _trust_domain_of(r.principal),
    "request.auth.principal": lambda r: r.request_principal,
    "request.auth.audiences": lambda r: r.claims.get("aud"),
    "request.auth.presenter": lambda r: r.claims.get("azp"),
    "destination.ip": lambda r: r.destination_ip,
    "destination.port": lambda r: str(r.port),
    "connection.sni": lambda r: r.sni or None,
}


def _bracket_arg(key: str) -> str:
    return key[key.index("[") + 1 : -1]


def _attribute(key: str) -> Getter:
    if not known_condition(key):  # the same vocabulary validation accepts, no wider
        raise ValueError(f"unknown authorization condition key {key!r}")
    if key in _ATTRS:
        return _ATTRS[key]
    if key.startswith("request.headers["):
        name = _bracket_arg(key).lower()
        return lambda r: r.headers.get(name)
    if key.startswith("request.auth.claims["):
        claim = _bracket_arg(key).replace("][", ".")  # [a][b]: the nested claim a.b
        return lambda r: r.claims.get(claim)
    if key.startswith(ABSENT_PREFIX):  # no filter here produces it: always absent
        return lambda r: None
    raise ValueError(f"unknown authorization condition key {key!r}")


def _condition(c: types.AuthzCondition) -> Pred:
    get = _attribute(c.key)
    make: Callable[[str], StrPred]
    if c.key in IP_CONDITIONS:
        make = ip_matcher
    elif c.key == "destination.port":
        make = exact_matcher
    else:
        make = string_matcher
    return FieldMatcher(get, tuple(map(make, c.values)), tuple(map(make, c.not_values)))


def compile_rule(rule: types.AuthzRule) -> Pred:
    """from (any source) AND to (any operation) AND every when condition."""
    return _all(
        [
            _any([_source(s) for s in rule.sources]) if rule.sources else None,
            _any([_operation(o) for o in rule.operations]) if rule.operations else None,
            *[_condition(c) for c in rule.conditions],
        ]
    )


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    name: str
    action: str
    rules: tuple[Pred, ...]
    decisions: tuple[Decision, ...] = ()  # per rule, built once: no formatting per request

    def first_match(self, req: Request) -> int | None:
        for i, rule in enumerate(self.rules):
            if rule(req):
                return i
        return None


def _decisions(name: str, action: str, n: int) -> tuple[Decision, ...]:
    allowed = action != "DENY"
    verb = "denied" if action == "DENY" else "allowed" if action == "ALLOW" else "audited"
    act: Action = "DENY" if action == "DENY" else "ALLOW" if action == "ALLOW" else "NONE"
    return tuple(Decision(allowed, act, name, i, f"{verb} by policy {name}, rule {i}")
                 for i in range(n))


@dataclass(frozen=True, slots=True)
class CompiledAuthz:
    deny: tuple[CompiledPolicy, ...] = ()
    allow: tuple[CompiledPolicy, ...] = ()
    audit: tuple[CompiledPolicy, ...] = ()
    default_deny: Decision | None = None

    @property
    def empty(self) -> bool:
        return not (self.deny or self.allow or self.audit)


def compile_authz(authz: types.Authz) -> CompiledAuthz:
    """Compile once per snapshot. Raises ValueError on a key or CIDR that cannot work."""
    by_action: dict[str, list[CompiledPolicy]] = {"DENY": [], "ALLOW": [], "AUDIT": []}
    for p in authz.policies:
        if p.action in by_action:
            rules = tuple(compile_rule(r) for r in p.rules)
            by_action[p.action].append(CompiledPolicy(
                p.name, p.action, rules, _decisions(p.name, p.action, len(rules))))
    names = ", ".join(p.name for p in by_action["ALLOW"])
    default_deny = Decision(False, "NONE", None, None,
                            f"no ALLOW policy matched (default deny; policies: {names})")
    return CompiledAuthz(tuple(by_action["DENY"]), tuple(by_action["ALLOW"]),
                         tuple(by_action["AUDIT"]), default_deny)


ALLOW_NO_POLICY = Decision(True, "NONE", None, None, "no ALLOW policy applies to the workload")


def evaluate(compiled: CompiledAuthz, req: Request) -> Decision:
    """DENY first, then ALLOW with default-deny; AUDIT only marks."""
    audited = _audits(compiled, req) if compiled.audit else ()
    for p in compiled.deny:
        i = p.first_match(req)
        if i is not None:
            return _with_audits(p.decisions[i], audited)
    if not compiled.allow:
        return _with_audits(ALLOW_NO_POLICY, audited)
    for p in compiled.allow:
        i = p.first_match(req)
        if i is not None:
            return _with_audits(p.decisions[i], audited)
    assert compiled.default_deny is not None
    return _with_audits(compiled.default_deny, audited)


def _with_audits(d: Decision, audited: tuple[tuple[str, int], ...]) -> Decision:
    if not audited:
        return d
    return Decision(d.allowed, d.action, d.policy, d.rule, d.reason, audited)


def _audits(compiled: CompiledAuthz, req: Request) -> tuple[tuple[str, int], ...]:
    out: list[tuple[str, int]] = []
    for p in compiled.audit:
        i = p.first_match(req)
        if i is not None:
            out.append((p.name, i))
    return tuple(out)
