"""gRPC facts the proxy reads off HTTP/2 streams, as Envoy reads them [pure].

- The status of a call (`final_status`): Envoy's `Grpc::Common::getGrpcStatus(trailers,
  headers, info)` order - `grpc-status` in the trailers, else in the response head (a
  trailers-only answer, or a local reply), else mapped from the HTTP status the client got
  (`http_to_grpc`), else none (no response at all). Istio labels `grpc_response_status`
  with it and the access log's %GRPC_STATUS% prints it.
- The HTTP status outlier detection is told (`grpc_to_http`): Envoy's router maps a
  `grpc-status` found in the response *head* to an HTTP status before it feeds the
  detector, so a gRPC server answering UNAVAILABLE counts as a 503 (consecutive5xx and
  consecutiveGatewayErrors); a status in the trailers is not fed (Envoy's router says so).
- Message counting (`MessageCounter`): gRPC messages are length-prefixed (1 flag byte,
  4 bytes big-endian length); Envoy's grpc_stats filter counts a message at its flag byte
  while the bytes stream past. The counter keeps only its position in the current
  frame, so nothing is buffered however large a message or long a stream.
"""

from __future__ import annotations

import struct
from typing import Final

Header = tuple[bytes, bytes]

INVALID: Final = -1  # Envoy's InvalidCode: a grpc-status that is not a number (or > 16)
MAX_KNOWN: Final = 16  # UNAUTHENTICATED, the last well-known code
OK: Final = 0
UNKNOWN: Final = 2
UNAVAILABLE: Final = 14

# Envoy's Grpc::Utility::httpToGrpcStatus (the gRPC HTTP mapping document).
_HTTP_TO_GRPC: Final = {400: 13, 401: 16, 403: 7, 404: 12, 429: 14, 502: 14, 503: 14,
                        504: 14}
# Envoy's Grpc::Utility::grpcToHttpStatus; anything else (InvalidCode) is 500.
_GRPC_TO_HTTP: Final = (200, 499, 500, 400, 504, 404, 409, 403, 429, 400, 409, 400, 501,
                        500, 503, 500, 401)

# Envoy's Grpc::Utility::grpcStatusToString (%GRPC_STATUS(CAMEL_STRING)%) and absl's
# StatusCodeToString (%GRPC_STATUS(SNAKE_STRING)%), indexed by code.
CAMEL: Final = ("Ok", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded",
                "NotFound", "AlreadyExists", "PermissionDenied", "ResourceExhausted",
                "FailedPrecondition", "Aborted", "OutOfRange", "Unimplemented", "Internal",
                "Unavailable", "DataLoss", "Unauthenticated")
SNAKE: Final = ("OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
                "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
                "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
                "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED")


def http_to_grpc(status: int) -> int:
    """The gRPC status a gRPC client is given for an HTTP status (a local reply, or a
    response that carried no grpc-status)."""
    return _HTTP_TO_GRPC.get(status, UNKNOWN)


def grpc_to_http(code: int) -> int:
    """The HTTP status Envoy's router tells outlier detection for a gRPC status."""
    return _GRPC_TO_HTTP[code] if 0 <= code <= MAX_KNOWN else 500


def parse_status(value: bytes | str) -> int:
    """A grpc-status value as a number; INVALID when it is not one (Envoy's SimpleAtoi
    failing). Codes above 16 are kept: the caller decides (user-defined codes)."""
    text = value.strip()
    if not text or not text.isdigit() or len(text) > 9:
        return INVALID
    return int(text)


def status_in_fields(fields: list[Header] | None) -> int | None:
    """The grpc-status of an HTTP/2 header list (trailers or a head), if it has one."""
    if fields:
        for name, value in fields:
            if name == b"grpc-status":
                return parse_status(value)
    return None


def status_and_message(fields: list[Header]) -> tuple[bytes | None, bytes | None]:
    """The grpc-status and grpc-message values of a header list, as sent (None: absent)."""
    status = message = None
    for name, value in fields:
        if name == b"grpc-status":
            status = value
        elif name == b"grpc-message":
            message = value
    return status, message


# Envoy's tracer marks a span `error` for these codes only (upstream errors; envoy#18877):
# UNKNOWN, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE,
# DATA_LOSS. The others are the caller's own mistakes.
UPSTREAM_ERRORS: Final = frozenset((2, 4, 8, 12, 13, 14, 15))


def span_tags(sent: tuple[bytes | None, bytes | None] | None, into: dict[str, str]) -> None:
    """Envoy's addGrpcResponseTags for one header list (head or trailers) that carried
    grpc-status: grpc.status_code, grpc.message as sent, error for an upstream error."""
    if sent is None or sent[0] is None:
        return
    into["grpc.status_code"] = sent[0].decode("latin-1")
    if sent[1] is not None:
        into["grpc.message"] = sent[1].decode("latin-1")
    if parse_status(sent[0]) in UPSTREAM_ERRORS:
        into["error"] = "true"


def status_in_block(block: bytes) -> int | None:
    """The grpc-status of an HTTP/1.1-form response head block (what the Attempt relays),
    if it has one. Names are matched case-insensitively, as HTTP/1.1 allows."""
    lower = block.lower()
    at = lower.find(b"\r\ngrpc-status:")
    if at < 0:
        return None
    start = at + 14
    end = block.find(b"\r\n", start)
    return parse_status(block[start:] if end < 0 else block[start:end])


def final_status(trailers: int | None, head: int | None, http_status: int) -> int | None:
    """The call's status in Envoy's order: trailers, head, the HTTP status mapped (0: no
    response was sent, then none)."""
    if trailers is not None:
        return trailers
    if head is not None:
        return head
    if http_status:
        return http_to_grpc(http_status)
    return None


def label(code: int | None) -> str:
    """Istio's `grpc_response_status` value: the code, "-1" for a code Envoy calls invalid
    (not a number, or a user-defined one above 16), "" when there is none."""
    if code is None:
        return ""
    return str(code) if 0 <= code <= MAX_KNOWN else str(INVALID)


def is_grpc(content_type: str) -> bool:
    """Envoy's isGrpcRequestHeaders on the content type: application/grpc, or
    application/grpc+proto / ;params (not grpc-web)."""
    if not content_type.startswith("application/grpc"):
        return False
    rest = content_type[16:17]
    return rest in ("", "+", ";")


class MessageCounter:
    """Counts length-prefixed gRPC messages in a byte stream fed in pieces (module doc).

    `count` grows at each message's flag byte, as Envoy's FrameInspector does; a flag
    byte with bits other than "compressed" set stops the counting for good (the stream is
    not gRPC framing: Envoy stops too)."""

    __slots__ = ("count", "length", "need", "skip", "stopped")

    def __init__(self) -> None:
        self.count = 0
        self.skip = 0  # body bytes of the current message still to pass over
        self.need = 0  # length bytes of the current prefix still to read (0: at a boundary)
        self.length = 0  # the length read so far (its 4 bytes may straddle DATA frames)
        self.stopped = False

    def feed(self, data: bytes) -> int:
        """Read `data` (the next piece of the stream); returns how many messages began."""
        if self.stopped:
            return 0
        began = 0
        i = 0
        n = len(data)
        skip, need, length = self.skip, self.need, self.length
        while i < n:
            if skip:  # inside a message body: pass over what is here
                step = skip if skip < n - i else n - i
                skip -= step
                i += step
            elif need:  # a length byte of a prefix cut by the piece's end (big-endian)
                length = (length << 8) | data[i]
                need -= 1
                i += 1
                if not need:
                    skip, length = length, 0
            elif data[i] & 0xFE:  # a flag byte that gRPC framing never has
                self.stopped = True
                break
            else:  # a message begins: its whole prefix here (the usual case), or a part
                began += 1
                if n - i >= 5:
                    skip = _LENGTH(data, i)[0]
                    i += 5
                else:
                    need = 4
                    i += 1
        self.skip, self.need, self.length = skip, need, length
        self.count += began
        return began


_LENGTH = struct.Struct(">xI").unpack_from  # a prefix's length, after its flag byte
