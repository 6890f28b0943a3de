"""Plain data for the rollout machine: phases, plans, state, inputs, effects, decisions.

Phases use Argo's words for Rollouts and Flagger's for Canaries, so `status` reads the
way users of either tool expect. State is a plain, JSON-able record: `persist.py` writes
it after every decision, which is what lets a restarted controller resume at the same
step without repeating or skipping one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any, Literal

Style = Literal["argo-canary", "argo-bluegreen", "flagger"]


# Argo's PauseReason constants (pkg/apis/rollouts/v1alpha1/types.go), as status.pauseConditions
# shows them: tools and alerts match on these strings. A user's pause is not one of them:
# Argo records it as spec.paused (phase Paused, message "manually paused"), with no condition.
PAUSE_STEP = "CanaryPauseStep"  # a pause step (and Tollway's manual gate, a `pause: {}`)
PAUSE_INCONCLUSIVE = "InconclusiveAnalysisRun"
PAUSE_BLUE_GREEN = "BlueGreenPause"
PAUSE_USER = ""  # paused with no controller reason: spec.paused
_OLD_PAUSE_REASONS = {"PauseStep": PAUSE_STEP, "ManualGate": PAUSE_STEP,
                      "Inconclusive": PAUSE_INCONCLUSIVE, "UserPause": PAUSE_USER}


class Phase(StrEnum):
    # Argo Rollout phases
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    HEALTHY = "Healthy"
    DEGRADED = "Degraded"
    # Flagger Canary phases
    INITIALIZING = "Initializing"
    INITIALIZED = "Initialized"
    WAITING = "Waiting"
    WAITING_PROMOTION = "WaitingPromotion"
    PROMOTING = "Promoting"
    FINALISING = "Finalising"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class Event(StrEnum):
    """What happened since the last step, classified before any transition is chosen
    (one per step: the first, in the style's precedence order, that the phase has a
    transition for). The values are the words docs/rollouts.md's table uses."""

    # the template
    NEW_REVISION = "new revision"
    BACK_TO_STABLE = "back to stable"
    FIRST_SIGHT = "first sight"
    # a user's command (tollway rollout ... / the API)
    ABORT = "abort"
    PROMOTE = "promote"
    PROMOTE_FULL = "promote --full"
    RETRY = "retry"
    PAUSE = "pause"
    RESUME = "resume"
    SET_WEIGHT = "set-weight"
    # analysis runs (Argo)
    STEP_RUN_SUCCESSFUL = "step run Successful"
    STEP_RUN_INCONCLUSIVE = "step run Inconclusive"
    BACKGROUND_INCONCLUSIVE = "background run Inconclusive"
    RUN_FAILED = "run Failed/Error"
    RUN_INCONCLUSIVE = "run Inconclusive"
    PREVIEW_READY = "preview ready"
    POST_DONE = "post-promotion done"
    # time
    PAUSE_ENDED = "pause ended"
    TICK = "sync"
    TICK_DUE = "interval elapsed"
    # Flagger's checks and gates
    PRIMARY_READY = "primary ready"
    PRIMARY_UNREADY = "primary rollout not finished"
    ROLLBACK_GATE = "rollback webhook"
    DEADLINE_EXCEEDED = "progress deadline exceeded"
    CANARY_UNREADY = "canary not ready"
    CANARY_READY = "canary ready"
    THRESHOLD_REACHED = "failedChecks >= threshold"
    TICK_NO_CHECK = "interval elapsed, no check"
    CHECK_FAILED = "check failed"
    CHECK_PASSED = "check passed"
    CONFIRMED = "confirm webhook passed"


# ---- the plan: one shape for Argo steps, blue-green and Flagger analysis ---------------


@dataclass(frozen=True, slots=True)
class AnalysisRef:
    """A Rollout's `RolloutAnalysis` (a step's, the background one, blue-green's pre/post):
    templates, literal args, args resolved to a pod template hash when the run starts
    (name -> Latest | Stable), and the Rollout's own dryRun rules (metricName regexes)."""

    templates: tuple[str, ...] = ()
    args: Mapping[str, str] = field(default_factory=dict)
    hash_args: Mapping[str, str] = field(default_factory=dict)
    dry_run: tuple[str, ...] = ()
    retention: tuple[tuple[str, int], ...] = ()  # measurementRetention (metricName, limit)

    def resolved_args(self, latest: str, stable: str) -> dict[str, str]:
        """Argo's BuildArgumentsForRolloutAnalysisRun: Latest is the new replica set's
        rollouts-pod-template-hash, Stable the stable one's."""
        hashes = {"Latest": latest, "Stable": stable}
        return {**self.args, **{k: hashes[v] for k, v in self.hash_args.items()}}


@dataclass(frozen=True, slots=True)
class Step:
    """One Argo canary step; `kind` is the step's field name in the Rollout spec."""

    kind: str  # setWeight | pause | analysis | setHeaderRoute | setMirrorRoute |
    #            setCanaryScale | gate (the manual gate of autoPromotionEnabled: false)
    weight: int | None = None
    duration: float | None = None  # pause seconds; None = until promoted
    templates: tuple[str, ...] = ()
    args: Mapping[str, str] = field(default_factory=dict)
    name: str = ""
    match: tuple[Mapping[str, Any], ...] = ()
    percentage: float | None = None
    scale: Mapping[str, Any] = field(default_factory=dict)
    analysis: AnalysisRef | None = None  # an analysis step's RolloutAnalysis

    def describe(self) -> str:
        if self.kind == "setWeight":
            return f"setWeight: {self.weight}"
        if self.kind == "pause":
            return f"pause: {self.duration:g}s" if self.duration is not None else "pause: {}"
        if self.kind == "analysis":
            return f"analysis: {', '.join(self.templates)}"
        if self.kind == "gate":
            return "manual gate (autoPromotionEnabled: false)"
        return f"{self.kind}: {self.name or dict(self.scale)}"


@dataclass(frozen=True, slots=True)
class FlaggerAnalysis:
    interval: float = 60.0
    threshold: int = 1
    weights: tuple[int, ...] = ()  # canary strategy: the weight after each passing tick
    iterations: int = 0  # A/B and blue/green
    match: tuple[Mapping[str, Any], ...] = ()
    mirror: bool = False
    mirror_weight: int = 100
    metrics: tuple[Mapping[str, Any], ...] = ()
    webhooks: tuple[Mapping[str, Any], ...] = ()
    skip_analysis: bool = False  # spec.skipAnalysis: promote as soon as the canary is ready
    progress_deadline: float = 600.0  # spec.progressDeadlineSeconds: not ready → rollback
    canary_ready_threshold: int = 100  # % of the target's replicas that must be ready
    primary_ready_threshold: int = 100

    @property
    def strategy(self) -> str:
        if self.weights:
            return "canary"
        return "ab" if self.match else "bluegreen"


@dataclass(frozen=True, slots=True)
class BlueGreen:
    active_service: str
    preview_service: str | None = None
    auto_promotion_enabled: bool = True
    auto_promotion_seconds: float | None = None
    scale_down_delay: float = 30.0
    pre_promotion: tuple[str, ...] = ()
    post_promotion: tuple[str, ...] = ()
    preview_replicas: int | None = None
    pre_analysis: AnalysisRef = field(default_factory=AnalysisRef)
    post_analysis: AnalysisRef = field(default_factory=AnalysisRef)


@dataclass(frozen=True, slots=True)
class Plan:
    style: Style
    name: str
    namespace: str
    steps: tuple[Step, ...] = ()
    background: tuple[str, ...] = ()  # background analysis templates
    background_args: Mapping[str, str] = field(default_factory=dict)
    background_starting_step: int = 0
    background_analysis: AnalysisRef = field(default_factory=AnalysisRef)
    flagger: FlaggerAnalysis | None = None
    bluegreen: BlueGreen | None = None
    warnings: tuple[str, ...] = ()


# ---- inputs and effects ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Inputs:
    """What the controller observed since the last step: the spec's revision, a user
    command, analysis run phases, a Flagger check, webhook gates."""

    revision: str
    command: str | None = None  # promote | promote-full | abort | retry | pause | resume
    actor: str = ""
    why: str = ""
    analysis: Mapping[str, str] = field(default_factory=dict)  # run name -> phase
    check: tuple[bool, str] | None = None  # Flagger: this tick's metric checks
    gates: Mapping[str, bool] = field(default_factory=dict)  # Flagger confirm-* webhooks
    ready: bool = True  # Argo: the canary's replicas are at the step's counts; Flagger: the
    #                     target (canary) Deployment is ready
    weight: int | None = None  # the value of a set-weight command
    primary_ready: bool = True  # Flagger: the -primary Deployment is ready


@dataclass(frozen=True, slots=True)
class Effect:
    """A change for the IO shell to carry out (traffic, replicas, analysis, webhooks)."""

    kind: str  # set-weight | header-route | mirror-route | clear-routes | start-analysis |
    #            stop-analysis | scale-canary | promote-stable | scale-down | webhook
    weight: int | None = None
    name: str = ""
    templates: tuple[str, ...] = ()
    args: Mapping[str, str] = field(default_factory=dict)
    match: tuple[Mapping[str, Any], ...] = ()
    percentage: float | None = None
    revision: str = ""
    replicas: int | None = None
    delay: float = 0.0
    dry_run: tuple[str, ...] = ()  # start-analysis: the Rollout's dryRun metricName rules
    retention: tuple[tuple[str, int], ...] = ()  # and its measurementRetention rules


@dataclass(frozen=True, slots=True)
class Decision:
    at: float
    phase: str
    step: int
    weight: int
    reason: str
    actor: str = "controller"


# ---- state ---------------------------------------------------------------------------------


@dataclass(slots=True)
class RolloutState:
    style: Style
    phase: Phase
    revision: str = ""  # the template being rolled out (Argo: the canary's pod-template-hash)
    stable_revision: str = ""
    previous_revision: str = ""  # blue-green: the old active, kept for a fast switch back
    step_index: int = 0
    weight: int = 0
    scale_weight: int = 0  # the weight the canary's replicas are sized for (ahead of traffic)
    paused: bool = False
    pause_reason: str = ""  # Argo's PauseReason constant; "" while paused = a user's pause
    pause_until: float | None = None
    abort: bool = False
    message: str = ""
    step_started_at: float = 0.0
    step_run: str = ""  # the inline analysis run of the current step
    background_run: str = ""
    header_routes: dict[str, list[Any]] = field(default_factory=dict)
    mirror_routes: dict[str, dict[str, Any]] = field(default_factory=dict)
    canary_scale: dict[str, Any] = field(default_factory=dict)
    failed_checks: int = 0
    iterations: int = 0
    next_tick: float = 0.0
    unready_since: float | None = None  # Flagger: since when the canary has not been ready
    awaiting_ready: bool = False  # Flagger: scaled up, first route waits for readiness
    runs_started: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["phase"] = self.phase.value
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> RolloutState:
        names = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in raw.items() if k in names}
        kwargs["phase"] = Phase(raw["phase"])
        if "pause_reason" in kwargs:  # a state file written before Argo's names were used
            kwargs["pause_reason"] = _OLD_PAUSE_REASONS.get(kwargs["pause_reason"],
                                                            kwargs["pause_reason"])
        return cls(**kwargs)


HISTORY_LIMIT = 200
