"""The kinds the Kubernetes control plane watches, with their API paths [pure].

Core kinds feed the registry (Namespaces, Services, EndpointSlices, Pods,
ServiceAccounts); the Tollway kinds are every kind `tollway.config.kinds` implements in
the Istio, Argo and Flagger groups, watched at the first version it accepts (the CRDs
serve it). Status conditions are written only on those.
"""

from __future__ import annotations

from dataclasses import dataclass

from tollway.config import kinds as config_kinds

TOLLWAY_GROUPS = ("networking.istio.io", "security.istio.io", "argoproj.io", "flagger.app")
CLUSTER_SCOPED = frozenset({"Namespace", "ClusterAnalysisTemplate"})


def plural(kind: str) -> str:
    """Kubernetes' plural resource name: `AuthorizationPolicy` -> `authorizationpolicies`."""
    low = kind.lower()
    if low.endswith("y") and low[-2:-1] not in "aeiou":
        return low[:-1] + "ies"
    if low.endswith(("s", "x", "ch", "sh")):
        return low + "es"
    return low + "s"


@dataclass(frozen=True, slots=True)
class Watched:
    """One watched kind: where it lives in the API and whether it is ours."""

    group: str
    version: str
    kind: str
    tollway: bool  # a Tollway CRD kind: validated into the store, status written back
    into_store: bool = True  # core kinds the store holds (Service, Namespace, ...)

    @property
    def plural(self) -> str:
        return plural(self.kind)

    @property
    def namespaced(self) -> bool:
        return self.kind not in CLUSTER_SCOPED

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None,
             sub: str | None = None) -> str:
        """`/api/v1/pods`, `/apis/G/V/namespaces/NS/PLURAL/NAME/status`, ..."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if namespace and self.namespaced:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
        if sub:
            base += f"/{sub}"
        return base


CORE: tuple[Watched, ...] = (
    Watched("", "v1", "Namespace", tollway=False),
    Watched("", "v1", "Service", tollway=False),
    Watched("", "v1", "ServiceAccount", tollway=False),
    Watched("", "v1", "Pod", tollway=False, into_store=False),
    Watched("discovery.k8s.io", "v1", "EndpointSlice", tollway=False, into_store=False),
)


# What the rollout controller reads besides the Tollway kinds: Deployments (Flagger's
# targets, into the store as `tollway up` has them) and ReplicaSets (Argo's, for readiness).
ROLLOUTS: tuple[Watched, ...] = (
    Watched("apps", "v1", "Deployment", tollway=False),
    Watched("apps", "v1", "ReplicaSet", tollway=False, into_store=False),
)


def tollway_kinds() -> tuple[Watched, ...]:
    """Every implemented kind of the Istio/Argo/Flagger groups (what the CRDs define)."""
    return tuple(
        Watched(spec.group, spec.versions[0], spec.kind, tollway=True)
        for spec in config_kinds.ALL_KINDS
        if spec.group in TOLLWAY_GROUPS and spec.ignored is None
    )


def watched(rollouts: bool = False) -> tuple[Watched, ...]:
    return CORE + (ROLLOUTS if rollouts else ()) + tollway_kinds()
