"""Metric providers: where a measurement's value comes from (Prometheus, web, the mesh).

Each provider returns a plain value (what `result` is bound to in a condition) or raises
ProviderError with one sentence; the controller turns that into an Error measurement, so
a provider never crashes a rollout.
"""


class ProviderError(Exception):
    """A measurement could not be taken; the message says why (it becomes an Error)."""
