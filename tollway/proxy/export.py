"""The span exporter: a bounded queue the event loop fills and one thread that empties it.

Why a thread: encoding (JSON, protobuf) and the POST to the collector must never run on
the request path nor wait on it. The loop only appends finished Span objects to a deque
(`offer`, O(1)); the thread wakes every `interval` seconds, or as soon as a batch is full,
encodes up to `batch_size` spans and POSTs them with the provider's timeout.

Bounded, and honest about it: when the queue holds `max_queue` spans, new ones are dropped
and counted (`queue_full`); a batch the collector refuses or that cannot be delivered (dead,
slow past the timeout, 4xx/5xx) is dropped and counted (`export_failed`). Nothing retries:
a slow or dead collector costs spans, never requests. Counts are on /stats/prometheus as
`tollway_tracing_spans_exported_total` and `tollway_tracing_spans_dropped_total{reason}`.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from tollway.proxy.core.spans import Span, zipkin_json
from tollway.snapshot import types

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("tollway.proxy.tracing")

Encoder = Callable[[Sequence[Span], str, int], bytes]


def _encoder(kind: str) -> tuple[Encoder, str]:
    if kind == "opentelemetry":
        from tollway.proxy.core.otlp import otlp_protobuf  # protobuf only when OTLP is used

        return otlp_protobuf, "application/x-protobuf"
    return zipkin_json, "application/json"


class _Target:
    """Where the thread sends, fixed per provider (swapped whole on a config change)."""

    def __init__(self, provider: types.TracingProvider, service: str) -> None:
        # httpx only once a provider is configured: a proxy that reports no spans (most,
        # and every VM sidecar without tracing) neither imports it (~0.6 s, several MB)
        # nor starts the thread. A missing httpx is an ImportError here, at config time.
        import httpx

        self.errors: tuple[type[BaseException], ...] = (httpx.HTTPError, OSError)
        self.provider = provider
        self.service = service
        self.encode, content_type = _encoder(provider.kind)
        self.headers = {"content-type": content_type, **dict(provider.headers)}
        # A plain-http collector needs no TLS context: skip loading the CA bundle (tens of
        # ms and MBs). An https endpoint is verified against the system's CAs as usual.
        plain = provider.endpoint.startswith("http://")
        self.client: httpx.Client = httpx.Client(timeout=provider.timeout,
                                                 headers=self.headers, verify=not plain,
                                                 trust_env=False)

    def same(self, provider: types.TracingProvider, service: str) -> bool:
        return provider == self.provider and service == self.service


class SpanSink:
    """One per proxy process (see module doc)."""

    def __init__(self, *, max_queue: int = 4096, batch_size: int = 256,
                 interval: float = 1.0) -> None:
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.interval = interval
        self.queue: deque[Span] = deque()
        self.exported = 0
        self.dropped: dict[str, int] = {"queue_full": 0, "export_failed": 0}
        self.batches = 0
        self._target: _Target | None = None
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._retired: list[_Target] = []
        self._failing = False  # log the first failure and the recovery, not every batch

    # ------------------------------------------------------------ event-loop side
    def configure(self, provider: types.TracingProvider | None, service: str) -> None:
        """Send to `provider` from now on (None: report nothing, queued spans dropped)."""
        old = self._target
        if provider is None:
            self._target = None
        elif old is None or not old.same(provider, service):
            self._target = _Target(provider, service)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="tollway-span-export",
                                                daemon=True)
                self._thread.start()
        if old is not None and old is not self._target:
            self._retired.append(old)  # closed by the thread: it may be mid-POST on it
            self._wake.set()

    def offer(self, spans: Sequence[Span]) -> None:
        """Queue a request's spans; drop (and count) them when the queue is full."""
        q = self.queue
        if len(q) + len(spans) > self.max_queue:
            self.dropped["queue_full"] += len(spans)
            return
        q.extend(spans)
        if len(q) >= self.batch_size:
            self._wake.set()

    @property
    def running(self) -> bool:
        return self._thread is not None

    def statistics(self) -> dict[str, Any]:
        return {"exported": self.exported, "dropped": dict(self.dropped),
                "queued": len(self.queue), "batches": self.batches}

    def close(self, flush_timeout: float = 2.0) -> None:
        """Send what is queued (within `flush_timeout`), then stop the thread."""
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(flush_timeout)
            self._thread = None

    # ------------------------------------------------------------ exporter thread
    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            for t in self._retired[:]:
                self._retired.remove(t)
                t.client.close()
            while self.queue:
                self._send_one_batch()
            if self._stop:
                target = self._target
                if target is not None:
                    target.client.close()
                return

    def _send_one_batch(self) -> None:
        q = self.queue
        batch: list[Span] = []
        pop = q.popleft
        while q and len(batch) < self.batch_size:
            batch.append(pop())
        target = self._target
        if target is None:
            return  # tracing turned off: what was queued is not reported
        why = ""
        try:
            body = target.encode(batch, target.service, target.provider.max_tag_length)
            resp = target.client.post(target.provider.endpoint, content=body)
            if resp.status_code >= 300:
                why = f"it answered {resp.status_code}"
        except target.errors as exc:
            why = str(exc) or type(exc).__name__
        ok = not why
        if ok == self._failing:
            self._failing = not ok
            if ok:
                log.info("tracing: %s accepts spans again", target.provider.endpoint)
            else:
                log.warning("tracing: cannot send spans to %s (%s); dropping them until it "
                            "answers (tollway_tracing_spans_dropped_total counts them)",
                            target.provider.endpoint, why)
        self.batches += 1
        if ok:
            self.exported += len(batch)
        else:
            self.dropped["export_failed"] += len(batch)
