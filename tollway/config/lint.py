"""Per-resource warnings: valid manifests that probably do not mean what they say.

Errors come from the models; these never block an apply.
"""

from __future__ import annotations

from collections.abc import Iterator

from tollway.config.findings import Severity
from tollway.config.resource import Resource
from tollway.config.source import PathKey
from tollway.snapshot.conditions import ABSENT_PREFIX

Lint = tuple[Severity, PathKey, str]


def _rollout(resource: Resource) -> Iterator[Lint]:
    canary = resource.spec.get("strategy", {}).get("canary")
    if isinstance(canary, dict) and "autoPromotionEnabled" in canary:
        yield (
            Severity.WARNING,
            ("strategy", "canary", "autoPromotionEnabled"),
            "autoPromotionEnabled is a blueGreen field in Argo Rollouts, not a canary one; "
            "Tollway accepts it and honours autoPromotionEnabled: false as a manual gate "
            "before the final step (promote with `tollway rollout promote`)",
        )


def _canary(resource: Resource) -> Iterator[Lint]:
    if "canaryAnalysis" in resource.spec:
        yield (Severity.WARNING, ("canaryAnalysis",),
               "canaryAnalysis is Flagger's deprecated name for analysis; Tollway reads "
               "only analysis (rename it)")


def _authorization(resource: Resource) -> Iterator[Lint]:
    for i, rule in enumerate(resource.spec.get("rules") or ()):
        for j, cond in enumerate(rule.get("when") or ()):
            key = str(cond.get("key", ""))
            if key.startswith(ABSENT_PREFIX):
                yield (Severity.WARNING, ("rules", i, "when", j, "key"),
                       f"'{key}' is Envoy network-filter metadata that Tollway's proxy does "
                       "not produce: its values never match and its notValues always pass")


def _virtual_service(resource: Resource) -> Iterator[Lint]:
    for i, route in enumerate(resource.spec.get("http") or ()):
        abort = (route.get("fault") or {}).get("abort")
        if isinstance(abort, dict) and "httpStatus" not in abort and "grpcStatus" not in abort:
            yield (Severity.WARNING, ("http", i, "fault", "abort"),
                   "abort configured, but no httpStatus or grpcStatus: nothing is aborted")
    if not resource.spec.get("hosts"):
        yield (Severity.WARNING, ("hosts",),
               "no hosts: this is a delegate VirtualService; it routes only requests that "
               "another VirtualService's http route hands it with `delegate`")


_LINTS = {"Rollout": _rollout, "VirtualService": _virtual_service, "Canary": _canary,
          "AuthorizationPolicy": _authorization}


def lint(resource: Resource) -> list[Lint]:
    fn = _LINTS.get(resource.kind)
    return list(fn(resource)) if fn else []
