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


_LINTS = {"Rollout": _rollout, "Canary": _canary, "AuthorizationPolicy": _authorization}


def lint(resource: Resource) -> list[Lint]:
    fn = _LINTS.get(resource.kind)
    return list(fn(resource)) if fn else []
