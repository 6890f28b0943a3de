"""The control plane's HTTP face (aiohttp): proxy streams, the CLI's API, discovery, debug.

Routes (docs/contracts.md has the wire details):
- proxies: `GET /v1/stream?node=`, `POST /v1/ack`, `POST /v1/register`
- CLI: `POST /v1/apply`, `POST /v1/delete`, `GET /v1/resources[/KIND[/NAME]]`,
  `GET /v1/proxies`
- Prometheus `http_sd_configs`: `GET /v1/sd/prometheus`
- debug views (Istio's names): `/debug/configz`, `/debug/registryz`, `/debug/syncz`
- the CA, when mounted with `ca_routes`: `POST /v1/ca/sign`, `POST /v1/ca/revoke`
Other parts mount their own routes through `make_app(..., routes=[...])` (the rollout
controller adds `/v1/rollouts...`).

Every route sits behind `guard.Guard` (Host, cross-site and credential checks; see
there): `make_app` takes the guard as a required argument, so an app without one cannot
be built. Proxies' routes check the caller's workload credential against the node named.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import msgspec
from aiohttp import web

from tollway.config.resource import Resource
from tollway.control import auth, registry, resources_json
from tollway.control import ca as ca_mod
from tollway.control import guard as guard_mod
from tollway.control import proxies as proxies_mod
from tollway.control.applied import AppliedConfig
from tollway.control.plane import ControlPlane
from tollway.control.store import ApplyResult, ConfigStore
from tollway.kit.clock import Clock

HEARTBEAT = 10.0
PLANE: web.AppKey[ControlPlane] = web.AppKey("plane", ControlPlane)
STORE: web.AppKey[ConfigStore] = web.AppKey("store", ConfigStore)


def make_app(
    plane: ControlPlane, *, guard: guard_mod.Guard, routes: Iterable[web.RouteDef] = (),
    heartbeat: float = HEARTBEAT, applied: AppliedConfig | None = None,
) -> web.Application:
    """The control plane app behind `guard`; `routes` are mounted beside the built-in ones.

    With `applied`, `/v1/apply` and `/v1/delete` go through it (persisted, preferred over
    the folder); without, straight to the store (nothing outlives the process).
    """
    app = web.Application(client_max_size=16 * 1024 * 1024, middlewares=[guard.middleware])
    app[PLANE] = plane
    app[STORE] = plane.store
    handlers = _Handlers(plane, heartbeat, applied)
    app.add_routes(
        [
            web.get("/v1/stream", handlers.stream),
            web.post("/v1/ack", handlers.ack),
            web.post("/v1/register", handlers.register),
            web.post("/v1/apply", handlers.apply),
            web.post("/v1/delete", handlers.delete),
            web.get("/v1/resources", handlers.resources),
            web.get("/v1/resources/{kind}", handlers.resources),
            web.get("/v1/resources/{kind}/{name}", handlers.resources),
            web.get("/v1/proxies", handlers.proxies),
            web.get("/v1/sd/prometheus", handlers.prometheus_sd),
            web.get("/debug/configz", handlers.configz),
            web.get("/debug/registryz", handlers.registryz),
            web.get("/debug/syncz", handlers.syncz),
            web.get("/healthz", handlers.healthz),
        ]
    )
    app.add_routes(list(routes))
    return app


def trust_refresher(plane: ControlPlane, authority: ca_mod.CertificateAuthority
                    ) -> Callable[[], None]:
    """Push the CA's root and revoked serials to every proxy (now, and each time called)."""
    from tollway.control.translate import security

    def refresh() -> None:
        plane.set_trust(security.trust_for(authority.root_pem, authority.trust_domain,
                                           authority.revoked_serials()))

    refresh()
    return refresh


def ca_routes(plane: ControlPlane, authority: ca_mod.CertificateAuthority, *,
              ttl: float = ca_mod.DEFAULT_TTL,
              persist: Callable[[], Awaitable[None]] | None = None) -> list[web.RouteDef]:
    """Make `authority` this plane's CA: `POST /v1/ca/sign` and `/v1/ca/revoke` routes.

    Every proxy the plane knows (`plane.identity_for`) can get a certificate for its
    own namespace and service account, when its credential is for that identity; the
    root and the revoked serials go out in every snapshot, and a revocation is pushed to
    every proxy at once. `persist`: see `ca.routes` (the CA Secret on Kubernetes).
    """
    routes: list[web.RouteDef] = ca_mod.routes(authority, plane.identity_for, ttl,
                                               on_revoke=trust_refresher(plane, authority),
                                               persist=persist)
    return routes


DASHBOARD_SESSION = 12 * 3600.0


def token_routes(signer: auth.TokenSigner, clock: Clock) -> list[web.RouteDef]:
    """`POST /v1/tokens` (admin only, by the guard): mint a credential.

    `{"namespace": NS, "service_account": SA, "ttl": SECONDS?, "node": NAME?}` → a
    workload token (`tollway token create`, for a VM proxy's --token-file);
    `{"dashboard": true}` → an admin token that expires in 12 h, for a browser tab
    (`tollway dashboard` puts it in the URL's fragment, which no server ever sees).
    """

    async def create(request: web.Request) -> web.Response:
        body = await _body(request)
        now = clock.wall()
        if body.get("dashboard") is True:
            return _json({"token": signer.admin(now, DASHBOARD_SESSION),
                          "expires": int(now + DASHBOARD_SESSION)})
        ttl = body.get("ttl")
        if ttl is not None and (not isinstance(ttl, int | float) or isinstance(ttl, bool)
                                or ttl <= 0):
            raise web.HTTPBadRequest(text="'ttl' must be a positive number of seconds")
        try:
            token = signer.workload(str(body.get("namespace") or ""),
                                    str(body.get("service_account") or ""), now,
                                    node=str(body.get("node") or ""),
                                    ttl=float(ttl) if ttl is not None else None)
        except ValueError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from exc
        return _json({"token": token,
                      "expires": int(now + float(ttl)) if ttl is not None else None})

    return [web.post("/v1/tokens", create)]


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(data), status=status, content_type="application/json"
    )


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        data = msgspec.json.decode(await request.read())
    except msgspec.DecodeError as exc:
        raise web.HTTPBadRequest(text=f"request body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text="request body must be a JSON object")
    return data


class _Handlers:
    def __init__(self, plane: ControlPlane, heartbeat: float,
                 applied: AppliedConfig | None) -> None:
        self.plane = plane
        self.store = plane.store
        self.heartbeat = heartbeat
        self.applied = applied

    # ---------------------------------------------------------------- proxies

    async def stream(self, request: web.Request) -> web.StreamResponse:
        name = request.query.get("node", "")
        if not name:
            raise web.HTTPBadRequest(text="stream: the query parameter 'node' is required")
        entry = self.plane.book.get(name)
        if entry is None:
            raise web.HTTPNotFound(text=f"proxy {name} is not registered; POST /v1/register")
        guard_mod.principal_of(request).check_node(name, entry.node.namespace,
                                               entry.node.service_account)
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        outbox = self.plane.open_stream(name)
        try:
            while not outbox.closed:
                line = await outbox.take(self.heartbeat)
                await response.write(line if line is not None else b"\n")
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.plane.close_stream(name, outbox)
        return response

    async def ack(self, request: web.Request) -> web.Response:
        body = await _body(request)
        status = str(body.get("status", ""))
        if status not in ("ACK", "NACK") or not body.get("node"):
            raise web.HTTPBadRequest(text="ack: need 'node' and 'status' ACK or NACK")
        entry = self.plane.book.get(str(body["node"]))
        if entry is None:
            raise web.HTTPNotFound(text=f"proxy {body['node']} is not registered")
        guard_mod.principal_of(request).check_node(entry.name, entry.node.namespace,
                                               entry.node.service_account)
        await self.plane.ack(
            str(body["node"]), str(body.get("version", "")), status, str(body.get("reason", ""))
        )
        return _json({"ok": True})

    async def register(self, request: web.Request) -> web.Response:
        try:
            entry = proxies_mod.entry_from_register(await _body(request))
        except ValueError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from exc
        principal = guard_mod.principal_of(request)
        node = entry.node
        principal.check_node(entry.name, node.namespace, node.service_account)
        known = self.plane.book.get(entry.name)
        if known is not None:  # the same node name under another identity is not a refresh
            principal.check_node(entry.name, known.node.namespace,
                                 known.node.service_account)
        _check_joins(self.plane, entry, principal)
        if known is None or known.origin == "vm":  # `tollway up` knows its own proxies better
            self.plane.register(entry)
        return _json({"ok": True, "name": entry.name})

    # ---------------------------------------------------------------- config

    async def apply(self, request: web.Request) -> web.Response:
        loaded = _load(await _body(request))
        if isinstance(loaded, web.Response):
            return loaded
        resources, actor, reason = loaded
        if self.applied is not None:
            return _result(self.applied.apply(resources, actor=actor, reason=reason))
        return _result(self.store.apply(resources, actor=actor, reason=reason, source="api"))

    async def delete(self, request: web.Request) -> web.Response:
        loaded = _load(await _body(request))
        if isinstance(loaded, web.Response):
            return loaded
        resources, actor, reason = loaded
        keys = [r.key for r in resources]
        if self.applied is not None:
            return _result(self.applied.delete(keys, actor=actor, reason=reason))
        return _result(self.store.delete(keys, actor=actor, reason=reason))

    async def resources(self, request: web.Request) -> web.Response:
        kind = request.match_info.get("kind")
        name = request.match_info.get("name")
        namespace = request.query.get("namespace")
        notes = self.applied.conflicts() if self.applied is not None else {}
        items = resources_json.select(self.store, kind, name, namespace, notes)
        if name and not items:
            return _json({"error": f"{kind}/{name} not found"}, 404)
        return _json({"items": items, "revision": self.store.revision})

    async def proxies(self, _request: web.Request) -> web.Response:
        return _json(self.plane.proxy_rows())

    async def prometheus_sd(self, _request: web.Request) -> web.Response:
        return _json(prometheus_targets(self.plane))

    # ---------------------------------------------------------------- debug

    async def configz(self, request: web.Request) -> web.Response:
        only = request.query.get("proxy")
        configs = {n: msgspec.to_builtins(c) for n, c in self.plane.configs.items()
                   if only in (None, n)}
        return _json(configs)

    async def registryz(self, _request: web.Request) -> web.Response:
        endpoints: Mapping[str, Any] = {}
        if self.plane.world is not None:
            endpoints = self.plane.compiler.endpoints(self.plane.world)
        return _json({
            "replicas": [msgspec.to_builtins(_replica_dict(r))
                         for r in self.plane.replicas.values()],
            "endpoints": msgspec.to_builtins(endpoints),
        })

    async def syncz(self, _request: web.Request) -> web.Response:
        stats = dataclasses.asdict(self.plane.statistics())
        # when each proxy acknowledged what it has, on the control plane's monotonic clock
        # (CLOCK_MONOTONIC: comparable with other processes on the same host, as
        # bench/cluster_push_latency.py does)
        acks = {r.name: {"acked": r.acked, "acked_at": r.acked_at, "sent_at": r.sent_at}
                for r in self.plane.ledger.rows()}
        return _json({"statistics": stats, "proxies": self.plane.proxy_rows(), "acks": acks})

    async def healthz(self, _request: web.Request) -> web.Response:
        return _json({"ok": True, "revision": self.store.revision})


def _check_joins(plane: ControlPlane, entry: proxies_mod.ProxyEntry,
                 principal: auth.Principal) -> None:
    """Forbidden when the entry would serve a host whose workloads run as another
    service account (a token of the namespace must not take over its services)."""
    candidate = proxies_mod.replica_from_entry(entry)
    if candidate is None or principal.admin:
        return
    joined = registry.joined_services(plane.store.current(), list(plane.replicas.values()),
                                      candidate)
    sa = entry.node.service_account
    for host, accounts in sorted(joined.items()):
        foreign = sorted(accounts - {sa})
        if foreign:
            raise auth.Forbidden(
                f"registering {entry.name} with labels {dict(entry.node.labels)} would make "
                f"it an endpoint of {host}, whose workloads run as service account "
                f"{', '.join(foreign)}, not {sa}; use a credential for that service account "
                "or labels of a service that runs as this one")


def _slots(obj: Any) -> dict[str, Any]:
    return {k: getattr(obj, k) for k in obj.__slots__}


def _replica_dict(replica: Any) -> dict[str, Any]:
    out = _slots(replica)
    out["labels"] = dict(out["labels"])
    out["ports"] = dict(out["ports"])
    return out


def _load(body: Mapping[str, Any]) -> tuple[list[Resource], str, str] | web.Response:
    """Load the posted files; invalid input answers 422 with rendered findings."""
    from tollway.config import load

    files = body.get("files")
    if files is None:
        files = [{"filename": body.get("filename", "<stdin>"), "text": body.get("text", "")}]
    if not isinstance(files, list):
        raise web.HTTPBadRequest(text="'files' must be a list of {filename, text}")
    resources: list[Resource] = []
    findings = []
    for item in files:
        result = load.load_text(str(item.get("text", "")), str(item.get("filename", "<stdin>")))
        resources += list(result.resources)
        findings += list(result.findings)
    if any(f.is_error for f in findings):
        return _result(ApplyResult(ok=False, findings=tuple(findings)))
    actor = str(body.get("actor") or "user")
    names = ", ".join(str(i.get("filename", "")) for i in files)
    return resources, actor, str(body.get("reason") or f"apply -f {names}")


def _result(result: ApplyResult) -> web.Response:
    data = {
        "ok": result.ok,
        "exit": 0 if result.ok else 1,
        "findings": [f.render() for f in result.findings],
        "changed": ["/".join(k) for k in result.changed],
        "deleted": ["/".join(k) for k in result.deleted],
        "revision": result.revision,
    }
    return _json(data, 200 if result.ok else 422)


def prometheus_targets(plane: ControlPlane) -> list[dict[str, Any]]:
    """Prometheus http_sd: one target group per proxy (/stats/prometheus): its admin
    address, or for a sidecar in a pod (it registers a status port) the pod IP at that
    port, since its admin listens on the pod's loopback only. The node is the one its
    snapshot was built for (in a pod: the pod's labels and workload)."""
    groups = []
    for entry in plane.book.all():
        status = entry.ports.get("status")
        target = f"{entry.address}:{status}" if status else entry.admin
        if not target:
            continue
        config = plane.configs.get(entry.name)
        node = config.node if config is not None else entry.node
        labels = {
            "namespace": node.namespace,
            "workload": node.workload,
            "proxy": node.name,
            "kind": node.kind,
            "__metrics_path__": "/stats/prometheus",
        }
        for key in ("version", "app"):
            if key in node.labels:
                labels[key] = node.labels[key]
        groups.append({"targets": [target], "labels": labels})
    return groups


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Start `app` on host:port; the caller cleans up with `await runner.cleanup()`."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    try:
        await site.start()
    except OSError:
        with contextlib.suppress(Exception):
            await runner.cleanup()
        raise
    return runner
