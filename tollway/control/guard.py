"""The API's front door: who may call what, from where (an aiohttp middleware).

Every request, before any handler:
1. `Host` must name the address the connection arrived on (its IP literal, `localhost`
   on loopback, or a name configured with `extra_hosts`), else 421. A DNS-rebinding page
   reaches 127.0.0.1 under its own name, and that name gives it away.
2. A call that changes something (any method but GET/HEAD) must be
   `Content-Type: application/json` (415 otherwise) and, when the browser says where it
   comes from (`Origin`, `Sec-Fetch-Site`), come from this origin (403). A cross-site
   "simple" request (form or `text/plain` POST, no preflight) can be neither.
3. The credential, `Authorization: Bearer TOKEN` (a header no cross-site request can set
   without a preflight this server never answers):
   - workload routes (`/v1/register`, `/v1/ack`, `/v1/ca/sign`, `GET /v1/stream`)
     take a workload token (or the admin's); the handler checks it against the node
     named, through `auth.Principal.check_node`;
   - secret-reading routes (`GET /v1/resources...`, which can list Secrets, and
     `/debug/configz`, whose snapshots carry gateway keys) and every other mutating
     route need the admin credential;
   - other reads (health, proxies, dashboard views, rollout status) need none.
Missing or unverifiable credential: 401; valid but not enough: 403. Each answer is one
sentence that says what to do.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from aiohttp import web

from tollway.control import auth
from tollway.kit.clock import Clock, MonotonicClock

PRINCIPAL = web.RequestKey("principal", auth.Principal)  # the verified caller
WORKLOAD_ROUTES = frozenset({("POST", "/v1/register"), ("POST", "/v1/ack"),
                             ("POST", "/v1/ca/sign"), ("GET", "/v1/stream")})
SECRET_READS = ("/v1/resources", "/debug/configz")
SAFE_METHODS = frozenset({"GET", "HEAD"})
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
NEEDS_ADMIN = ("this call needs the admin credential: on the machine running `tollway up` "
               "the CLI reads it from STATE_DIR/admin-token by itself; elsewhere pass "
               "--token TOKEN or set TOLLWAY_TOKEN")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _text(status: int, text: str, **headers: str) -> web.Response:
    return web.Response(status=status, text=text + "\n", headers=headers)


def split_host(host: str) -> tuple[str, int | None]:
    """`name:port` / `[v6]:port` / `name` → (lowercase name, port or None)."""
    host = host.strip().lower()
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        name, sep, port = host.rpartition(":")
        if not sep or ":" in name:  # no port, or a bare IPv6 literal
            name, port = host, ""
    return name, int(port) if port.isdigit() else None


def _loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


@dataclass
class Guard:
    """The policy above, with its verifier (`auth.TokenSigner` or a chain of them)."""

    verifier: auth.TokenVerifier
    clock: Clock = field(default_factory=MonotonicClock)
    extra_hosts: Iterable[str] = ()

    def host_allowed(self, host: str, local: tuple[str, int] | None) -> bool:
        name, port = split_host(host)
        if not name:
            return False
        if name in {h.lower() for h in self.extra_hosts}:
            return True
        if local is None:
            return False
        ip, local_port = local[0], local[1]
        if port is not None and port != local_port:
            return False
        return name == ip.lower() or (_loopback(ip) and name in LOOPBACK_NAMES)

    async def principal(self, request: web.Request) -> auth.Principal | None:
        """The verified caller, None without a credential; AuthError for a bad one."""
        token = auth.bearer(request.headers.get("Authorization"))
        if token is None:
            return None
        return await auth.verify(self.verifier, token, self.clock.wall())

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        local = request.transport.get_extra_info("sockname") if request.transport else None
        host = request.headers.get("Host", "")
        if not self.host_allowed(host, tuple(local[:2]) if local else None):
            return _text(421, f"Host {host!r} is not an address this control plane serves "
                              "(a DNS-rebinding page?); call it by its IP address")
        mutating = request.method not in SAFE_METHODS
        if mutating:
            refusal = _cross_site(request, host)
            if refusal is not None:
                return refusal
        try:
            principal = await self.principal(request)
        except auth.AuthError as exc:
            return _text(401, f"{exc}", **{"WWW-Authenticate": "Bearer"})
        route = (request.method if request.method != "HEAD" else "GET", request.path)
        if route in WORKLOAD_ROUTES:
            if principal is None:
                return _text(401, "this call needs the workload's credential: `tollway up` "
                                  "gives one to each sidecar; a VM proxy takes --token-file "
                                  "(`tollway token create`)", **{"WWW-Authenticate": "Bearer"})
        elif mutating or request.path.startswith(SECRET_READS):
            if principal is None:
                return _text(401, NEEDS_ADMIN, **{"WWW-Authenticate": "Bearer"})
            if not principal.admin:
                return _text(403, f"{principal.describe()} cannot do this; {NEEDS_ADMIN}")
        if principal is not None:
            request[PRINCIPAL] = principal
        try:
            return await handler(request)
        except auth.Forbidden as exc:
            return _text(403, str(exc))


def _cross_site(request: web.Request, host: str) -> web.Response | None:
    origin = request.headers.get("Origin")
    if origin is not None and origin.lower().rstrip("/") != f"http://{host.lower()}":
        return _text(403, f"a change from origin {origin!r} is refused: only this origin "
                          "(the dashboard) and non-browser clients may change the mesh")
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        return _text(403, "a cross-site request cannot change the mesh")
    if request.content_type != "application/json":
        return _text(415, f"a change must be sent as Content-Type: application/json, not "
                          f"{request.content_type or 'nothing'!r}")
    return None


def principal_of(request: web.Request) -> auth.Principal:
    """The caller the guard verified; fails closed when the app was built without one."""
    try:
        return request[PRINCIPAL]
    except KeyError:
        raise auth.Forbidden("no verified credential on this request (control plane "
                             "built without its guard)") from None
