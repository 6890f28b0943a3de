"""Resources → the local processes `tollway up` must run [pure].

Each Deployment replica becomes one app process (its first container's `command` +
`args`, its `env`, `PORT` = the port it must listen on) beside its own sidecar. Replica
names carry a hash of the pod template, as Kubernetes' pod-template-hash does: a changed
template yields new names, so the supervisor starts the new replicas and retires the old
ones once the new are ready (a rolling update), while a change of `replicas:` alone keeps
the names (scale up adds indices, scale down removes the highest).

Rollouts are not run here: the rollout controller materialises their replica sets as
generated Deployments in the store, and every Deployment is run.

Local mode runs commands, not images: a Deployment with an image and no command is
refused with one sentence that shows the line to add.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tollway.config.findings import Finding
from tollway.config.resource import Resource, ResourceSet
from tollway.kit.hashing import content_hash

WORKLOAD_KINDS = ("Deployment",)
SUGGESTED_COMMAND = 'command: ["tollway", "demo-app"]'


@dataclass(frozen=True, slots=True)
class ReplicaPlan:
    """One replica to run: what to execute and who it is in the mesh."""

    name: str  # node name of its sidecar: WORKLOAD-HASH-INDEX.NAMESPACE
    workload: str
    namespace: str
    index: int
    template_hash: str
    labels: Mapping[str, str]
    service_account: str
    command: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    container_ports: tuple[int, ...]
    readiness_path: str | None = None  # readinessProbe.httpGet.path, else a TCP check
    working_dir: str | None = None

    @property
    def app_port_hint(self) -> int:
        return self.container_ports[0] if self.container_ports else 8080


@dataclass(frozen=True, slots=True)
class Refusal:
    """A workload local mode cannot run, with the one sentence that says how to fix it."""

    kind: str
    name: str
    namespace: str
    message: str
    file: str = ""
    line: int = 0

    def finding(self) -> Finding:
        return Finding(self.file, self.line, self.kind, self.name,
                       "spec.template.spec.containers[0].command", self.message)


@dataclass(frozen=True, slots=True)
class Rolling:
    """How a workload replaces its replicas when its template changes (a Deployment's
    `spec.strategy`): at most `replicas + max_surge` running, at least
    `replicas - max_unavailable` ready, both already resolved to counts."""

    replicas: int
    max_surge: int
    max_unavailable: int


@dataclass(frozen=True, slots=True)
class Plan:
    replicas: tuple[ReplicaPlan, ...]
    refusals: tuple[Refusal, ...]
    rolling: tuple[tuple[tuple[str, str], Rolling], ...] = ()  # (namespace, name) -> Rolling

    def by_name(self) -> dict[str, ReplicaPlan]:
        return {r.name: r for r in self.replicas}

    def rolling_for(self, namespace: str, workload: str) -> Rolling:
        """The workload's strategy; one not in the plan (deleted) is retired at once."""
        for key, rolling in self.rolling:
            if key == (namespace, workload):
                return rolling
        return Rolling(0, 0, 0)


# ---- rolling updates: maxSurge / maxUnavailable -------------------------------------------

DEFAULT_SURGE = "25%"
DEFAULT_UNAVAILABLE = "25%"


class StrategyError(ValueError):
    """A maxSurge/maxUnavailable value that is neither a count nor a percentage."""


def scaled(value: int | str, total: int, round_up: bool) -> int:
    """An IntOrString as a count: an int as is, "N%" (or, as Argo reads it, a bare "N")
    as N% of `total`, rounded up for maxSurge and down for maxUnavailable (Kubernetes)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise StrategyError(f"{value!r} is neither a count nor a percentage like '25%'")
    if isinstance(value, int):
        if value < 0:
            raise StrategyError(f"{value} is negative; use 0 or more")
        return value
    text = value.strip()
    digits = text[:-1] if text.endswith("%") else text
    if not digits.isdigit():
        raise StrategyError(f"{value!r} is neither a count nor a percentage like '25%'")
    share = int(digits) * total
    return -(-share // 100) if round_up else share // 100


def fenceposts(max_surge: int | str | None, max_unavailable: int | str | None,
               replicas: int) -> tuple[int, int]:
    """(surge, unavailable) as counts, with Kubernetes' and Argo's defaults (25%, 25%).

    Both resolving to 0 (e.g. 10% of 2 rounds down to 0) would make no progress, so
    unavailable becomes 1, as both controllers do; unavailable never exceeds replicas.
    Both set to 0 explicitly is refused at validation, not here."""
    surge = scaled(DEFAULT_SURGE if max_surge is None else max_surge, replicas, True)
    unavailable = scaled(DEFAULT_UNAVAILABLE if max_unavailable is None else max_unavailable,
                         replicas, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, min(unavailable, replicas)


def both_zero(max_surge: Any, max_unavailable: Any) -> bool:
    """True when both are explicitly zero ("0", 0 or "0%"): a rollout that cannot move."""
    def zero(v: Any) -> bool:
        return v is not None and not isinstance(v, bool) and str(v).strip().rstrip("%") == "0"

    return zero(max_surge) and zero(max_unavailable)


@dataclass(frozen=True, slots=True)
class Counts:
    """One replica set (or several taken together): how many should run, how many are ready."""

    spec: int
    available: int


def rolling_step(rolling: Rolling, new: Counts, old: Counts) -> tuple[int, int]:
    """One step of a Deployment rolling update: the next (new, old) replica counts.

    Kubernetes' order: the new set grows into the surge room (`replicas + maxSurge` minus
    every replica that should run); then old replicas that are not ready go first (they
    serve nothing), and ready ones only while the ready total stays at least
    `replicas - maxUnavailable`. The caller removes not-ready replicas before ready ones,
    so availability never drops below that floor because of a step."""
    want = rolling.replicas
    new_spec = new.spec
    if new_spec < want:
        room = want + rolling.max_surge - (new.spec + old.spec)
        new_spec += max(0, min(room, want - new.spec))
    elif new_spec > want:
        new_spec = want
    min_available = want - rolling.max_unavailable
    # Kubernetes' gate: the new set's own not-ready replicas count against the budget
    gate = old.spec + min(new.available, new_spec) - min_available
    old_spec = old.spec
    if gate > 0:
        unhealthy = min(old.spec - min(old.available, old.spec), gate)
        old_spec -= unhealthy
        budget = min(new.available, new_spec) + min(old.available, old.spec) - min_available
        old_spec -= max(0, min(budget, old_spec))
    return new_spec, old_spec


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else []


def _pod(r: Resource) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    template = _map(r.spec.get("template"))
    return _map(template.get("metadata")), _map(template.get("spec"))


def _container(pod_spec: Mapping[str, Any]) -> Mapping[str, Any] | None:
    containers = [_map(c) for c in _list(pod_spec.get("containers"))]
    with_command = [c for c in containers if c.get("command")]
    if with_command:
        return with_command[0]
    return None


def _refusal(r: Resource, pod_spec: Mapping[str, Any]) -> Refusal:
    containers = [_map(c) for c in _list(pod_spec.get("containers"))]
    first = containers[0] if containers else {}
    cname = str(first.get("name") or "the container")
    image = first.get("image")
    what = f"image {image}" if image else "no command"
    message = (
        f"Deployment {r.name} has {what} but local mode runs commands, not images: "
        f"add `{SUGGESTED_COMMAND}` (or your app's command) to container {cname}."
    )
    return Refusal(r.kind, r.name, r.namespace, message, r.source.file, r.source.line)


def _env(container: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    out = []
    for item in _list(container.get("env")):
        entry = _map(item)
        if entry.get("name") and "value" in entry:
            out.append((str(entry["name"]), str(entry["value"])))
    return tuple(out)


def _ports(container: Mapping[str, Any]) -> tuple[int, ...]:
    ports = []
    for item in _list(container.get("ports")):
        number = _map(item).get("containerPort")
        if isinstance(number, int) and not isinstance(number, bool):
            ports.append(number)
    return tuple(ports)


def _readiness_path(container: Mapping[str, Any]) -> str | None:
    http_get = _map(_map(container.get("readinessProbe")).get("httpGet"))
    path = http_get.get("path")
    return str(path) if path else ("/" if http_get else None)


def _replicas(r: Resource) -> int:
    value = r.spec.get("replicas", 1)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 1


def plan_workload(r: Resource) -> tuple[list[ReplicaPlan], Refusal | None]:
    meta, pod_spec = _pod(r)
    container = _container(pod_spec)
    if container is None:
        return [], _refusal(r, pod_spec)
    labels = {str(k): str(v) for k, v in _map(meta.get("labels")).items()}
    sa = str(pod_spec.get("serviceAccountName") or pod_spec.get("serviceAccount") or "default")
    command = tuple(str(c) for c in _list(container.get("command")) + _list(container.get("args")))
    env = _env(container)
    ports = _ports(container)
    readiness = _readiness_path(container)
    workdir = container.get("workingDir")
    template_hash = content_hash([command, env, ports, readiness, labels, sa, workdir], 5)
    out = [
        ReplicaPlan(
            name=f"{r.name}-{template_hash}-{i}.{r.namespace}",
            workload=r.name, namespace=r.namespace, index=i, template_hash=template_hash,
            labels=labels, service_account=sa, command=command, env=env,
            container_ports=ports, readiness_path=readiness,
            working_dir=str(workdir) if workdir else None,
        )
        for i in range(_replicas(r))
    ]
    return out, None


def rolling_of(r: Resource) -> Rolling:
    """A Deployment's `spec.strategy` as counts: RollingUpdate (the default, 25%/25%) or
    Recreate (every old replica goes before a new one starts: no surge, all unavailable).
    Values validation refused never get here; should one, the defaults apply."""
    replicas = _replicas(r)
    strategy = _map(r.spec.get("strategy"))
    if strategy.get("type") == "Recreate":
        return Rolling(replicas, 0, replicas)
    rolling = _map(strategy.get("rollingUpdate"))
    try:
        surge, unavailable = fenceposts(rolling.get("maxSurge"), rolling.get("maxUnavailable"),
                                        replicas)
    except StrategyError:
        surge, unavailable = fenceposts(None, None, replicas)
    return Rolling(replicas, surge, unavailable)


def plan(resources: ResourceSet) -> Plan:
    """Every replica to run and every workload refused, in a stable order."""
    replicas: list[ReplicaPlan] = []
    refusals: list[Refusal] = []
    rolling: list[tuple[tuple[str, str], Rolling]] = []
    for kind in WORKLOAD_KINDS:
        for r in sorted(resources.of_kind(kind), key=lambda r: (r.namespace, r.name)):
            planned, refusal = plan_workload(r)
            replicas += planned
            rolling.append(((r.namespace, r.name), rolling_of(r)))
            if refusal is not None:
                refusals.append(refusal)
    return Plan(tuple(replicas), tuple(refusals), tuple(rolling))


def refusal_findings(resources: ResourceSet) -> list[Finding]:
    """Refusals as findings, so the store refuses such an apply all-or-nothing."""
    return [r.finding() for r in plan(resources).refusals]


def process_env(
    replica: ReplicaPlan,
    *,
    base: Mapping[str, str],
    app_port: int,
    outbound_port: int,
    exe_dir: str,
    intercept: bool = False,
) -> dict[str, str]:
    """The app's environment: its own env, PORT, PATH with Tollway, and the sidecar as HTTP
    proxy; `intercept` (the app's netns captures its traffic): no proxy variable at all,
    not even one inherited from the shell, as in a pod."""
    env = dict(base)
    if intercept:  # the shell's proxy settings are not the pod's; the manifest's are
        for key in PROXY_VARS:
            env.pop(key, None)
    env.update(replica.env)
    path = env.get("PATH", "")
    parts = [p for p in path.split(os.pathsep) if p]
    if exe_dir not in parts:
        parts.insert(0, exe_dir)
    env.update(
        PORT=str(app_port),
        PATH=os.pathsep.join(parts),
        TOLLWAY_WORKLOAD=replica.workload,
        TOLLWAY_NAMESPACE=replica.namespace,
        POD_NAME=replica.name.split(".")[0],
        POD_NAMESPACE=replica.namespace,
    )
    if not intercept:
        proxy = f"http://127.0.0.1:{outbound_port}"
        env.update(HTTP_PROXY=proxy, http_proxy=proxy, NO_PROXY="", no_proxy="")
        env.pop("HTTPS_PROXY", None)
        env.pop("https_proxy", None)
    return env


PROXY_VARS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY",
              "no_proxy", "ALL_PROXY", "all_proxy")


def diff(
    desired: Sequence[ReplicaPlan], running: Sequence[str]
) -> tuple[list[ReplicaPlan], list[str]]:
    """(replicas to start, names to stop)."""
    want = {r.name for r in desired}
    have = set(running)
    return [r for r in desired if r.name not in have], sorted(have - want)
