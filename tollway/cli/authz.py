"""`tollway authz check WORKLOAD --from PRINCIPAL --method M --path P -f DIR`.

Explains an authorization decision the way `istioctl x authz check` users expect: which
AuthorizationPolicies apply to the workload (by namespace, root namespace and selector),
what each of them says about this request (the first matching rule, or no match), and
the decision in Istio's order (DENY, then ALLOW with default-deny). It runs the same
translation and evaluator as the sidecar, so the answer is the sidecar's answer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from tollway.config.load import load_paths
from tollway.config.resource import ResourceSet
from tollway.control.translate import security
from tollway.proxy.core import authz
from tollway.proxy.core.pathnorm import PathNormalizer
from tollway.snapshot import types

WORKLOAD_KINDS = ("Deployment", "Rollout", "WorkloadEntry", "StatefulSet")


@dataclass(frozen=True)
class Manifests:
    resources: ResourceSet


def _fail(message: str) -> typer.Exit:
    typer.echo(f"tollway authz check: {message}", err=True)
    return typer.Exit(2)


def _template(r: Any) -> tuple[Mapping[str, Any], str]:
    """(labels, service account) of a workload resource's pods."""
    spec = r.spec
    if r.kind == "WorkloadEntry":
        return spec.get("labels") or {}, str(spec.get("serviceAccount") or "default")
    tmpl = spec.get("template") or {}
    labels = (tmpl.get("metadata") or {}).get("labels") or {}
    pod = tmpl.get("spec") or {}
    sa = pod.get("serviceAccountName") or pod.get("serviceAccount") or "default"
    return labels, str(sa)


def find_workload(resources: ResourceSet, workload: str, namespace: str | None
                  ) -> types.Node:
    """WORKLOAD as `name`, `name.namespace` or `namespace/name` → the proxy's Node."""
    if "/" in workload:
        namespace, workload = workload.split("/", 1)
    elif "." in workload and namespace is None:
        workload, namespace = workload.split(".", 1)
    found = [r for kind in WORKLOAD_KINDS for r in resources.of_kind(kind)
             if r.name == workload and (namespace is None or r.namespace == namespace)]
    if not found:
        where = f" in namespace {namespace}" if namespace else ""
        raise _fail(f"no Deployment, Rollout or WorkloadEntry named {workload}{where} in "
                    "these manifests; check the name or add -f with the folder that has it")
    r = found[0]
    labels, sa = _template(r)
    return types.Node(name=f"{r.name}.{r.namespace}", workload=r.name, namespace=r.namespace,
                      service_account=sa, labels={str(k): str(v) for k, v in labels.items()})


def _principal(value: str, resources: ResourceSet) -> str | None:
    """A principal as written, or a workload (`NAME.NS`, `NS/NAME`) → its identity."""
    if value in ("", "-", "plaintext", "none"):
        return None
    if value.startswith("spiffe://") or value.count("/") >= 2:
        return value.removeprefix("spiffe://")
    node = find_workload(resources, value, None)
    return f"{node.cluster_domain}/ns/{node.namespace}/sa/{node.service_account}"


def _headers(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise _fail(f"--header {item!r} must look like NAME:VALUE, e.g. x-token:abc")
        out[name.strip().lower()] = value.strip()
    return out


# What each field of a source / operation is compared with, in Istio's words.
_ACTUAL: dict[str, Callable[[authz.Request], str | None]] = {
    "principals": lambda r: r.principal, "request_principals": lambda r: r.request_principal,
    "namespaces": lambda r: r.namespace, "ip_blocks": lambda r: r.source_ip,
    "remote_ip_blocks": lambda r: r.remote_ip or r.source_ip, "hosts": lambda r: r.host,
    "ports": lambda r: str(r.port), "methods": lambda r: r.method,
    "paths": lambda r: authz.path_only(r.path),
}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w.title() for w in rest)


def _matches(rule: types.AuthzRule, req: authz.Request) -> bool:
    """The sidecar's own evaluator on a rule cut down to the part being explained."""
    return authz.compile_rule(rule)(req)


def _failed_fields(entry: Any, wrap: Any, req: authz.Request) -> str:
    """Which fields of one `from.source` / `to.operation` entry the request fails."""
    said = []
    for name in entry.__struct_fields__:
        spec = getattr(entry, name)
        if spec is None or _matches(wrap(type(entry)(**{name: spec})), req):
            continue
        actual = _ACTUAL[name](req)
        shown = "(none)" if actual in (None, "") else actual
        only = type(entry)(**{name: types.StringSet(values=spec.values)})
        if spec.values and not _matches(wrap(only), req):
            said.append(f"{_camel(name)} {list(spec.values)} does not match {shown}")
        else:
            said.append(f"not{_camel(name)[0].upper()}{_camel(name)[1:]} "
                        f"{list(spec.not_values)} excludes {shown}")
    return ", ".join(said) or "no field fails"


def why_not(rule: types.AuthzRule, req: authz.Request) -> str:
    """Each part of a rule (from, to, when) the request fails, and which field."""
    failed = []
    if rule.sources and not _matches(types.AuthzRule(sources=rule.sources), req):
        failed.append("from: " + "; or ".join(
            _failed_fields(s, lambda one: types.AuthzRule(sources=(one,)), req)
            for s in rule.sources))
    if rule.operations and not _matches(types.AuthzRule(operations=rule.operations), req):
        failed.append("to: " + "; or ".join(
            _failed_fields(o, lambda one: types.AuthzRule(operations=(one,)), req)
            for o in rule.operations))
    for c in rule.conditions:
        if not _matches(types.AuthzRule(conditions=(c,)), req):
            wanted = f"values {list(c.values)}" if c.values else f"notValues {list(c.not_values)}"
            failed.append(f"when: {c.key} {wanted} not met")
    return " | ".join(failed) or "matches"


def explain(policies: types.Authz, req: authz.Request) -> tuple[list[str], authz.Decision]:
    """One line per applicable policy (what it says about req), then the decision.

    A rule that does not match says which condition failed (`from: principals [...] does
    not match ...`): a denial by default-deny is only useful with the reason."""
    lines = []
    for p in policies.policies:
        one = authz.compile_authz(types.Authz(policies=(p,)))
        compiled = (one.deny + one.allow + one.audit) or ()
        if not compiled:
            lines.append(f"  {p.action:<7} {p.name:<40} skipped (CUSTOM needs an "
                         "external authorizer)")
            continue
        hit = compiled[0].first_match(req)
        said = f"rule {hit} matches" if hit is not None else (
            "no rules (allow-nothing)" if not p.rules else "no rule matches")
        lines.append(f"  {p.action:<7} {p.name:<40} {len(p.rules)} rule(s): {said}")
        if hit is None:
            lines += [f"      rule {i}: {why_not(r, req)}" for i, r in enumerate(p.rules)]
    return lines, authz.evaluate(authz.compile_authz(policies), req)


def check(
    workload: str = typer.Argument(..., help="Workload: NAME, NAME.NAMESPACE or NS/NAME."),
    source: str = typer.Option("plaintext", "--from",
                               help="Caller: a principal (cluster.local/ns/NS/sa/SA), a "
                               "workload (NAME.NS), or 'plaintext'."),
    method: str = typer.Option("GET", "--method", "-X"),
    path: str = typer.Option("/", "--path"),
    host: str = typer.Option("", "--host"),
    port: int = typer.Option(0, "--port", help="Destination workload port."),
    header: list[str] = typer.Option([], "--header", "-H", help="NAME:VALUE, repeatable."),
    source_ip: str = typer.Option("127.0.0.1", "--source-ip"),
    namespace: str | None = typer.Option(None, "--namespace", "-n"),
    files: list[str] = typer.Option(["."], "-f", "--filename", help="Manifest files/folders."),
) -> None:
    """Explain whether a caller may make a request: which policy and rule decide.

    Exit 0 when allowed, 1 when denied, 2 on a usage or manifest error."""
    missing = [f for f in files if not Path(f).exists()]
    if missing:
        raise _fail(f"no such file or folder: {missing[0]}")
    loaded = load_paths(files)
    if not loaded.ok:
        raise _fail(f"the manifests have errors, first: {loaded.errors[0].render()}")
    node = find_workload(loaded.resources, workload, namespace)
    policies = security.authz_for(Manifests(loaded.resources), node)
    # as the sidecar does first, under the default meshConfig.pathNormalization (BASE)
    normal = PathNormalizer().normalize(path)
    if normal is None:
        raise _fail(f"--path {path!r} cannot be normalized (an escaped NUL): the sidecar "
                    "answers such a request 400")
    req = authz.Request(method=method, path=normal, host=host, port=port,
                        principal=_principal(source, loaded.resources), source_ip=source_ip,
                        headers=_headers(header))
    try:
        lines, decision = explain(policies, req)
    except ValueError as exc:
        raise _fail(f"an AuthorizationPolicy cannot be evaluated: {exc}") from None
    who = req.principal or "a plaintext caller (no principal)"
    typer.echo(f"Workload {node.namespace}/{node.workload} (service account "
               f"{node.service_account}); request {method} {path} from {who}")
    typer.echo(f"Policies applied ({len(policies.policies)}):" if policies.policies
               else "Policies applied: none")
    for line in lines:
        typer.echo(line)
    verdict = "ALLOWED" if decision.allowed else "DENIED (403 RBAC: access denied)"
    typer.echo(f"Decision: {verdict}: {decision.reason}")
    if decision.audited:
        typer.echo("Audited by: " + ", ".join(f"{n} rule {i}" for n, i in decision.audited))
    if not decision.allowed:  # as `test`/`grep` do: scripts can branch on the answer
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Authorization: explain AuthorizationPolicy decisions.",
                        no_args_is_help=True)
    group.command("check")(check)
    app.add_typer(group, name="authz")
