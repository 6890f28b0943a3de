"""The status a rollout shows, in Argo's shape for Rollouts and Flagger's for Canaries."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tollway.rollout.model import Phase, Plan, RolloutState


def argo_status(state: RolloutState, plan: Plan, runs: Mapping[str, Mapping[str, Any]],
                at: float) -> dict[str, Any]:
    # Argo's pauseConditions hold the controller's reasons only (CanaryPauseStep,
    # InconclusiveAnalysisRun, BlueGreenPause); a user's pause is spec.paused, no condition
    pause = []
    if state.paused and state.pause_reason:
        pause.append({"reason": state.pause_reason, "startTime": state.step_started_at})
    steps = [{"index": i, "step": s.describe(),
              "current": i == state.step_index and state.phase is not Phase.HEALTHY}
             for i, s in enumerate(plan.steps)]
    return {
        "phase": state.phase.value,
        "message": state.message,
        "abort": state.abort,
        "paused": state.paused,
        "pauseConditions": pause,
        "controllerPause": bool(pause),
        "currentStepIndex": min(state.step_index, len(plan.steps)),
        "currentPodHash": state.revision,
        "stableRS": state.stable_revision,
        "canary": {"weights": {
            "canary": {"weight": state.weight, "podTemplateHash": state.revision},
            "stable": {"weight": 100 - state.weight, "podTemplateHash": state.stable_revision},
        }},
        "steps": steps,
        "headerRoutes": state.header_routes,
        "mirrorRoutes": state.mirror_routes,
        "analysisRuns": list(runs.values()),
        "decisions": state.history[-30:],
        "warnings": list(plan.warnings),
        "observedAt": at,
    }


def flagger_status(state: RolloutState, plan: Plan, checks: list[dict[str, Any]],
                   at: float) -> dict[str, Any]:
    fa = plan.flagger
    promoted = state.phase in (Phase.SUCCEEDED, Phase.INITIALIZED)
    return {
        "phase": state.phase.value,
        "canaryWeight": state.weight,
        "failedChecks": state.failed_checks,
        "iterations": state.iterations,
        "lastAppliedSpec": state.revision,
        "lastPromotedSpec": state.stable_revision,
        "message": state.message,
        "conditions": [{"type": "Promoted", "status": "True" if promoted else "False",
                        "reason": state.phase.value, "message": state.message}],
        "analysis": {"interval": fa.interval if fa else None,
                     "threshold": fa.threshold if fa else None,
                     "weights": list(fa.weights) if fa else [],
                     "iterations": fa.iterations if fa else 0},
        "checks": checks[-30:],
        "decisions": state.history[-30:],
        "observedAt": at,
    }
