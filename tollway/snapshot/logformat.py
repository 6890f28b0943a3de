"""Envoy access-log formats: the command operators Tollway writes, Istio's defaults [pure].

`%COMMAND%`, `%COMMAND(arg)%` and `%COMMAND(arg):max%` as Envoy's access log formats
spell them (`%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%`, `%START_TIME%`). Parsed here, beside the
snapshot types, so the mesh config refuses at load an operator the proxy cannot write
(the same reason as snapshot/cel.py); the proxy renders the parts (chain/accesslog.py).
"""

from __future__ import annotations

import re

# Operators Tollway fills; those marked "-" in docs/observability.md are always "-" here.
COMMANDS = frozenset({
    "START_TIME", "REQ", "RESP", "PROTOCOL", "RESPONSE_CODE", "RESPONSE_FLAGS",
    "RESPONSE_CODE_DETAILS", "CONNECTION_TERMINATION_DETAILS",
    "UPSTREAM_TRANSPORT_FAILURE_REASON", "BYTES_RECEIVED", "BYTES_SENT", "DURATION",
    "REQUEST_DURATION", "RESPONSE_DURATION", "UPSTREAM_HOST", "UPSTREAM_CLUSTER",
    "UPSTREAM_CLUSTER_RAW", "UPSTREAM_LOCAL_ADDRESS", "DOWNSTREAM_LOCAL_ADDRESS",
    "DOWNSTREAM_REMOTE_ADDRESS", "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT",
    "DOWNSTREAM_PEER_URI_SAN", "REQUESTED_SERVER_NAME", "ROUTE_NAME", "TRACE_ID", "HOSTNAME",
    "UPSTREAM_REQUEST_ATTEMPT_COUNT", "GRPC_STATUS", "GRPC_STATUS_NUMBER",
})
# %GRPC_STATUS(X)%'s formats (Envoy's; none given: CAMEL_STRING)
GRPC_STATUS_FORMATS = frozenset({"", "CAMEL_STRING", "SNAKE_STRING", "NUMBER"})
# Istio's EnvoyTextLogFormat (meshConfig.accessLogEncoding TEXT, no accessLogFormat).
ISTIO_TEXT = (
    '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" '
    "%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% "
    '"%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% '
    '%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" '
    '"%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER_RAW% '
    "%UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% "
    "%REQUESTED_SERVER_NAME% %ROUTE_NAME%\n"
)
# Istio's EnvoyJSONLogFormatIstio (accessLogEncoding JSON), plus the trace id.
ISTIO_JSON: tuple[tuple[str, str], ...] = (
    ("start_time", "%START_TIME%"),
    ("route_name", "%ROUTE_NAME%"),
    ("method", "%REQ(:METHOD)%"),
    ("path", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"),
    ("protocol", "%PROTOCOL%"),
    ("response_code", "%RESPONSE_CODE%"),
    ("response_flags", "%RESPONSE_FLAGS%"),
    ("response_code_details", "%RESPONSE_CODE_DETAILS%"),
    ("connection_termination_details", "%CONNECTION_TERMINATION_DETAILS%"),
    ("upstream_transport_failure_reason", "%UPSTREAM_TRANSPORT_FAILURE_REASON%"),
    ("bytes_received", "%BYTES_RECEIVED%"),
    ("bytes_sent", "%BYTES_SENT%"),
    ("duration", "%DURATION%"),
    ("upstream_service_time", "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%"),
    ("x_forwarded_for", "%REQ(X-FORWARDED-FOR)%"),
    ("user_agent", "%REQ(USER-AGENT)%"),
    ("request_id", "%REQ(X-REQUEST-ID)%"),
    ("authority", "%REQ(:AUTHORITY)%"),
    ("upstream_host", "%UPSTREAM_HOST%"),
    ("upstream_cluster", "%UPSTREAM_CLUSTER_RAW%"),
    ("upstream_local_address", "%UPSTREAM_LOCAL_ADDRESS%"),
    ("downstream_local_address", "%DOWNSTREAM_LOCAL_ADDRESS%"),
    ("downstream_remote_address", "%DOWNSTREAM_REMOTE_ADDRESS%"),
    ("requested_server_name", "%REQUESTED_SERVER_NAME%"),
    ("trace_id", "%TRACE_ID%"),
)

# A part: a literal string, or (command, argument, max length or 0).
Part = str | tuple[str, str, int]
_OP = re.compile(r"%([A-Z][A-Z0-9_]*)(?:\(([^)]*)\))?(?::(\d+))?%")


class FormatError(ValueError):
    """An operator the proxy cannot write; the message is one sentence."""


def parse(fmt: str) -> tuple[Part, ...]:
    """Literal text and operators, in order; `%%` is a literal `%`."""
    out: list[Part] = []
    pos = 0
    text = ""
    while pos < len(fmt):
        if fmt.startswith("%%", pos):
            text += "%"
            pos += 2
            continue
        if fmt[pos] != "%":
            text += fmt[pos]
            pos += 1
            continue
        m = _OP.match(fmt, pos)
        if m is None:
            raise FormatError(f"`{fmt[pos:pos + 30]}` is not an Envoy command operator "
                              "(%COMMAND%, %COMMAND(arg)% or %COMMAND(arg):N%)")
        if m[1] not in COMMANDS:
            raise FormatError(f"%{m[1]}% is not an operator Tollway writes (it writes "
                              f"{', '.join(sorted(COMMANDS))})")
        if m[1] == "GRPC_STATUS" and (m[2] or "") not in GRPC_STATUS_FORMATS:
            raise FormatError(f"%GRPC_STATUS({m[2]})%: the format is CAMEL_STRING, "
                              "SNAKE_STRING or NUMBER")
        if text:
            out.append(text)
            text = ""
        out.append((m[1], m[2] or "", int(m[3] or 0)))
        pos = m.end()
    if text:
        out.append(text)
    return tuple(out)


def check(fmt: str) -> str | None:
    try:
        parse(fmt)
    except FormatError as exc:
        return str(exc)
    return None
