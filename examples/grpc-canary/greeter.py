"""greeter: a small gRPC service written with `grpcio`, for the gRPC canary example.

Service `greeter.Greeter` (no generated code: the messages are protobuf's own
`google.protobuf.StringValue`, the handlers are grpcio's generic handlers):

- `SayHello(StringValue) -> StringValue`: "hello NAME from VERSION";
- `SayHellos(StringValue) -> stream StringValue`: the same, three times (server streaming);
- `Stats(StringValue) -> StringValue`: this process's counts as JSON (calls, failed), never
  failed nor delayed, so a test can count the upstream attempts a replica received.

How a version behaves (env, as a Deployment or Rollout sets it):

- `VERSION` (v1, v2, v3...): named in every answer and in the trailing metadata
  `x-version`;
- `FAIL_RATE` (0..1): this share of SayHello/SayHellos calls is answered UNAVAILABLE,
  spread evenly (0.5 fails every other call, 0.2 every fifth);
- `DELAY_MS`: added to every SayHello/SayHellos call.

`v3` is the bad version: unless `FAIL_RATE`/`DELAY_MS` say otherwise it fails 20% of its
calls UNAVAILABLE and answers 150 ms late. Listens on `PORT` (set by `tollway up`),
default 50051, plaintext HTTP/2: its sidecar does mTLS.

Run alone: `python greeter.py` (then `python client.py --target 127.0.0.1:50051`).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
from google.protobuf.wrappers_pb2 import StringValue

SERVICE = "greeter.Greeter"
BAD_VERSIONS = {"v3": (0.2, 150.0)}  # VERSION -> (FAIL_RATE, DELAY_MS) when env is silent


class Greeter:
    def __init__(self, version: str, fail_rate: float, delay_ms: float) -> None:
        self.version = version
        self.fail_rate = min(max(fail_rate, 0.0), 1.0)
        self.delay = max(delay_ms, 0.0) / 1000.0
        self.calls = 0
        self.failed = 0
        self.lock = threading.Lock()

    def _admit(self, context: Any) -> None:
        """Count the call; fail it when the running share of failures falls behind
        FAIL_RATE (deterministic, evenly spread: no luck in tests or demos)."""
        with self.lock:
            self.calls += 1
            fail = int(self.calls * self.fail_rate) > int((self.calls - 1) * self.fail_rate)
            if fail:
                self.failed += 1
        if self.delay:
            time.sleep(self.delay)
        context.set_trailing_metadata((("x-version", self.version),))
        if fail:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"greeter {self.version} is overloaded")

    def say_hello(self, request: StringValue, context: Any) -> StringValue:
        self._admit(context)
        return StringValue(value=f"hello {request.value or 'world'} from {self.version}")

    def say_hellos(self, request: StringValue, context: Any) -> Iterator[StringValue]:
        self._admit(context)
        for i in range(3):
            yield StringValue(value=f"hello {request.value or 'world'} #{i} from {self.version}")

    def stats(self, request: StringValue, context: Any) -> StringValue:
        with self.lock:
            counts = {"version": self.version, "calls": self.calls, "failed": self.failed}
        return StringValue(value=json.dumps(counts))


def handler(greeter: Greeter) -> grpc.GenericRpcHandler:
    def unary(fn: Any) -> grpc.RpcMethodHandler:
        return grpc.unary_unary_rpc_method_handler(
            fn, request_deserializer=StringValue.FromString,
            response_serializer=StringValue.SerializeToString)

    return grpc.method_handlers_generic_handler(SERVICE, {
        "SayHello": unary(greeter.say_hello),
        "SayHellos": grpc.unary_stream_rpc_method_handler(
            greeter.say_hellos, request_deserializer=StringValue.FromString,
            response_serializer=StringValue.SerializeToString),
        "Stats": unary(greeter.stats),
    })


def from_env(env: Any = os.environ) -> Greeter:
    version = env.get("VERSION", "v1")
    fail, delay = BAD_VERSIONS.get(version, (0.0, 0.0))
    return Greeter(version, float(env.get("FAIL_RATE", fail)),
                   float(env.get("DELAY_MS", delay)))


def main() -> int:
    greeter = from_env()
    port = int(os.environ.get("PORT", "50051"))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    server.add_generic_rpc_handlers((handler(greeter),))
    if not server.add_insecure_port(f"127.0.0.1:{port}"):
        print(f"greeter: port {port} is taken; set PORT to a free one", file=sys.stderr)
        return 1
    server.start()
    print(f"greeter {greeter.version} on 127.0.0.1:{port} (fail {greeter.fail_rate:.0%}, "
          f"delay {greeter.delay * 1000:.0f} ms)", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=5).wait()  # answer the calls in flight, as a pod drains
    return 0


if __name__ == "__main__":
    sys.exit(main())
