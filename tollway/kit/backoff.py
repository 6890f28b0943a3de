"""Exponential backoff with full jitter, for reconnects and restarts.

The random source is injected so tests are deterministic.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays base, 2*base, 4*base ... capped at `cap`, each scaled by a jitter draw."""

    base: float = 0.1
    cap: float = 5.0
    jitter: bool = True
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next_delay(self) -> float:
        delay = min(self.cap, self.base * (2**self.attempt))
        self.attempt += 1
        if self.jitter:
            delay = delay / 2 + self.rng.random() * delay / 2
        return float(delay)

    def reset(self) -> None:
        self.attempt = 0
