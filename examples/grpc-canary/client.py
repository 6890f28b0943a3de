"""Call greeter through the mesh with `grpcio` and count who answered and with which status.

    python client.py                        # 100 calls through tollway up's client proxy
    python client.py -n 500 --rps 50        # paced
    python client.py --target 127.0.0.1:8080 --authority greeter.example.com   # via the gateway

The channel dials the client proxy (or the gateway) and names the service in `:authority`
(`greeter:50051`), as a meshed app's channel to `greeter:50051` would reach its sidecar.
Prints one line per version and status, e.g. `v1 OK 80`, then a JSON summary with --json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter

import grpc
from google.protobuf.wrappers_pb2 import StringValue


def channel(target: str, authority: str) -> grpc.Channel:
    return grpc.insecure_channel(target, options=[
        ("grpc.default_authority", authority),
        ("grpc.enable_http_proxy", 0),  # the target is the proxy already
    ])


def say_hello(ch: grpc.Channel) -> grpc.UnaryUnaryMultiCallable:
    return ch.unary_unary("/greeter.Greeter/SayHello",
                          request_serializer=StringValue.SerializeToString,
                          response_deserializer=StringValue.FromString)


def call(stub: grpc.UnaryUnaryMultiCallable, name: str, timeout: float = 10.0) -> tuple[str, str]:
    """(version, status name) of one call; the version is "-" when the call failed."""
    try:
        reply, c = stub.with_call(StringValue(value=name), timeout=timeout)
    except grpc.RpcError as exc:
        return "-", exc.code().name
    version = dict(c.trailing_metadata() or ()).get("x-version", reply.value.split()[-1])
    return str(version), "OK"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="127.0.0.1:15001",
                    help="where to dial: the client proxy (default) or the gateway")
    ap.add_argument("--authority", default="greeter:50051", help="the :authority to send")
    ap.add_argument("-n", type=int, default=100, help="calls to make")
    ap.add_argument("--rps", type=float, default=0.0, help="pace (0: back to back)")
    ap.add_argument("--json", action="store_true", help="print a JSON summary")
    args = ap.parse_args(argv)
    seen: Counter[tuple[str, str]] = Counter()
    with channel(args.target, args.authority) as ch:
        stub = say_hello(ch)
        start = time.monotonic()
        for i in range(args.n):
            if args.rps > 0:
                time.sleep(max(0.0, start + i / args.rps - time.monotonic()))
            seen[call(stub, f"call-{i}")] += 1
    for (version, status), n in sorted(seen.items()):
        print(f"{version} {status} {n}")
    if args.json:
        print(json.dumps({f"{v} {s}": n for (v, s), n in sorted(seen.items())}))
    return 0 if all(status == "OK" for _, status in seen) else 1


if __name__ == "__main__":
    sys.exit(main())
