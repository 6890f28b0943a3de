"""Istio's own value rules (pilot's config validation), as small pure checks.

The models call these from their validators so that a manifest Istio's webhook refuses
is refused here too, at the same field, with Istio's reason in one sentence.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re

DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
UNIX_PREFIX = "unix://"

# grpc.SupportedGRPCStatus: the names of https://grpc.github.io/grpc/core/md_doc_statuscodes.html
GRPC_STATUSES = (
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
    "UNAUTHENTICATED",
)
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE")


def dns_label(value: str, what: str) -> None:
    if len(value) > 63 or not DNS1123_LABEL.fullmatch(value):
        raise ValueError(f"{what} '{value}' must be a DNS-1123 label (lowercase letters, "
                         "digits and '-', at most 63)")


def fault_percentage(value: float, where: str) -> None:
    """Istio: a fault percentage is 0, or in [0.0001, 100]."""
    if value < 0 or value > 100 or 0 < value < 0.0001:
        raise ValueError(f"{where}.percentage.value {value} is neither 0 nor in "
                         "[0.0001, 100]")


def grpc_status(value: str) -> None:
    if value not in GRPC_STATUSES:
        from tollway.config.errors import did_you_mean

        hint = did_you_mean(value.upper(), list(GRPC_STATUSES))
        raise ValueError(f"grpcStatus '{value}' is not a gRPC status name{hint} (one of "
                         f"{', '.join(GRPC_STATUSES)})")


def header_operation(name: str, *, request_set: bool) -> None:
    """Names a header operation may use (Istio): never `host` or a `:` pseudo-header,
    except `:authority` (and `host` is validated later) where a request header is set."""
    if not name:
        raise ValueError("header name cannot be empty")
    lower = name.lower()
    if request_set:
        if lower.startswith(":") and lower != ":authority":
            raise ValueError(f"header '{name}' cannot have a ':' prefix (only :authority)")
        return
    if lower == "host":
        raise ValueError(f"header '{name}' cannot be removed or set on a response "
                         "(Istio refuses Host here)")
    if lower.startswith(":"):
        raise ValueError(f"header '{name}' cannot have a ':' prefix")


def unix_address(address: str) -> None:
    """`unix://PATH`: an absolute file path, or an abstract socket `@name`."""
    path = address.removeprefix(UNIX_PREFIX)
    if not path:
        raise ValueError("unix address must not be empty")
    if path.startswith("@"):
        return
    if not posixpath.isabs(path) or path.endswith("/"):
        raise ValueError(f"{address}: '{path}' is not an absolute path to a file")


def ip_or_cidr(value: str, where: str) -> None:
    """AuthorizationPolicy ipBlocks and IP conditions: an address or a CIDR."""
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"{where} '{value}' is not an IP address or CIDR "
                         "(e.g. 10.0.0.1 or 10.0.0.0/16)") from None


def port_value(value: str, where: str) -> None:
    if not value.isdigit() or not 0 <= int(value) <= 65535:
        raise ValueError(f"{where} '{value}' is not a port number 0-65535")


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


_FQDN = re.compile(r"(?=.{1,255}$)[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?"
                   r"(\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*\.?")


def is_fqdn(value: str) -> bool:
    return _FQDN.fullmatch(value) is not None


def is_prime(x: int) -> bool:
    if 0 < x < 4:
        return True
    if x % 2 == 0:
        return False
    f = 3
    while f * f <= x:
        if x % f == 0:
            return False
        f += 2
    return True
