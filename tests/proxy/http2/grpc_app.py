"""A small gRPC service with the real `grpcio` library (bytes in, bytes out: no codegen):
unary, server streaming, client streaming and bidirectional, plus a method that answers a
chosen status, so tests can check statuses, trailers and retries through the mesh.
`Hello` / `Hellos` speak protobuf's own `google.protobuf.StringValue` (still no codegen)
for clients that need a schema: grpcurl reads it from echo.proto beside this file."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
from google.protobuf.wrappers_pb2 import StringValue

SERVICE = "tollway.test.Echo"


class Echo:
    def __init__(self, name: str) -> None:
        self.name = name
        self.calls = 0
        self.flaky = False  # answer every other call UNAVAILABLE
        self.down = False  # answer every call UNAVAILABLE
        self.failed = 0

    def unary(self, request: bytes, context: Any) -> bytes:
        self.calls += 1
        if self.down or (self.flaky and self.calls % 2):
            self.failed += 1
            context.abort(grpc.StatusCode.UNAVAILABLE, f"{self.name} is not ready")
        context.set_trailing_metadata((("x-served-by", self.name),))
        return self.name.encode() + b":" + request

    def hello(self, request: StringValue, context: Any) -> StringValue:
        """`unary` with a protobuf message: "NAME:VALUE"."""
        return StringValue(value=self.unary(request.value.encode(), context).decode())

    def hellos(self, request: StringValue, context: Any) -> Iterator[StringValue]:
        """`server_stream` with protobuf messages: VALUE (a count) answers."""
        for answer in self.server_stream(request.value.encode(), context):
            yield StringValue(value=answer.decode())

    def fail(self, request: bytes, context: Any) -> bytes:
        context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "no room")

    def server_stream(self, request: bytes, context: Any) -> Iterator[bytes]:
        for i in range(int(request or b"3")):
            yield b"%s:%d" % (self.name.encode(), i)

    def stream_then_fail(self, request: bytes, context: Any) -> Iterator[bytes]:
        """One message, then UNAVAILABLE: the status travels in the trailers."""
        self.calls += 1
        yield self.name.encode()
        context.abort(grpc.StatusCode.UNAVAILABLE, f"{self.name} broke mid-stream")

    def client_stream(self, requests: Iterator[bytes], context: Any) -> bytes:
        return b"%d" % sum(len(r) for r in requests)

    def bidi(self, requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
        for r in requests:
            yield r[::-1]


def serve(name: str) -> tuple[grpc.Server, int, Echo]:
    echo = Echo(name)
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(echo.unary),
        "Fail": grpc.unary_unary_rpc_method_handler(echo.fail),
        "ServerStream": grpc.unary_stream_rpc_method_handler(echo.server_stream),
        "StreamThenFail": grpc.unary_stream_rpc_method_handler(echo.stream_then_fail),
        "ClientStream": grpc.stream_unary_rpc_method_handler(echo.client_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(echo.bidi),
        "Hello": grpc.unary_unary_rpc_method_handler(
            echo.hello, request_deserializer=StringValue.FromString,
            response_serializer=StringValue.SerializeToString),
        "Hellos": grpc.unary_stream_rpc_method_handler(
            echo.hellos, request_deserializer=StringValue.FromString,
            response_serializer=StringValue.SerializeToString),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port, echo


def stubs(channel: grpc.Channel) -> dict[str, Any]:
    path = f"/{SERVICE}/"
    return {
        "unary": channel.unary_unary(path + "Unary"),
        "fail": channel.unary_unary(path + "Fail"),
        "server_stream": channel.unary_stream(path + "ServerStream"),
        "stream_then_fail": channel.unary_stream(path + "StreamThenFail"),
        "client_stream": channel.stream_unary(path + "ClientStream"),
        "bidi": channel.stream_stream(path + "Bidi"),
    }
