"""A sidecar imports what its config uses: `cryptography` only with TLS or JWT rules, the
`h2` library only when an HTTP/2 client arrives - and a configured feature whose module
cannot be imported refuses the snapshot instead of running without it.

Each case runs a fresh interpreter (sys.modules is per process). The config is the one
bench/rss.py measures: many routes, a regex route, an AuthorizationPolicy (RE2 loaded).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import asyncio, socket, sys
    from importlib.abc import MetaPathFinder

    BLOCKED = sys.argv[1]

    class Missing(MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if BLOCKED and (name == BLOCKED or name.startswith(BLOCKED + ".")):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Missing())
    from tollway.proxy.main import ProxyServer
    from tollway.snapshot import types
    from tollway.snapshot.codec import SnapshotError

    def config(version, jwt):
        route = lambda i, uri: types.Route(  # noqa: E731
            name=f"r{i}", matches=(types.RouteMatch(uri=uri),),
            clusters=(types.WeightedCluster(cluster="c", weight=100),))
        routes = [route(0, types.StringMatch(kind="regex", value="/api/v[0-9]+/.*"))]
        routes += [route(i, types.StringMatch(kind="prefix", value=f"/r{i}/"))
                   for i in range(1, 50)]
        allow = types.AuthzPolicy(name="ns/allow-get", action="ALLOW", rules=(types.AuthzRule(
            operations=(types.AuthzOperation(methods=types.StringSet(values=("GET",))),)),))
        authn = types.RequestAuthn(rules=(types.JwtRule(
            issuer="https://issuer.example", jwks_uri="https://issuer.example/jwks"),)
        ) if jwt else types.RequestAuthn()
        return types.ProxyConfig(
            version=version, node=types.Node(name="p"),
            listeners=(
                types.Listener(name="out", kind="outbound", address="127.0.0.1", port=0,
                               route_table="t"),
                types.Listener(name="in", kind="inbound", address="127.0.0.1", port=0,
                               app_port=1, service_port=80),
            ),
            route_tables=(types.RouteTable(name="t", virtual_hosts=(
                types.VirtualHost(name="h", domains=("*",), routes=tuple(routes)),)),),
            clusters=(types.Cluster(name="c", service="s", port=80, endpoints=(
                types.Endpoint(address="127.0.0.1", port=1),)),),
            authz=types.Authz(policies=(allow,)), request_authn=authn)

    def loaded():
        return sorted({m.split(".")[0] for m in sys.modules} & {"cryptography", "h2", "hpack"})

    async def main():
        server = ProxyServer(None, serve_admin=False)
        await server.start()
        try:
            server.apply(config("v1", jwt=False))
            print("PLAIN", loaded(), sorted(f.name for f in server.snapshot.plans["in"].filters))
            # an HTTP/2 client (prior knowledge) is served: the HTTP/2 server is imported now
            host, port = server.listener_address("out")
            r, w = await asyncio.open_connection(host, port)
            w.write(b"PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n" + b"\\0\\0\\0\\x04\\0\\0\\0\\0\\0")
            await w.drain()
            head = await asyncio.wait_for(r.read(9), 30)
            w.close()
            print("H2", head[3] if len(head) == 9 else None, loaded())
            try:
                server.apply(config("v2", jwt=True))
            except SnapshotError as exc:
                print("REFUSED", exc, "| in force:", server.version)
                return
            print("JWT", loaded(), sorted(f.name for f in server.snapshot.plans["in"].filters))
        finally:
            await server.close()

    asyncio.run(main())
    """
)


def _run(blocked: str = "") -> str:
    proc = subprocess.run([sys.executable, "-c", SCRIPT, blocked], capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_features_load_their_modules_only_when_configured_or_used() -> None:
    out = _run()
    plain, h2, jwt = out.splitlines()
    # authz (RBAC) is in the chain, and neither cryptography nor h2 was imported for it
    assert plain == "PLAIN [] ['authz']", out
    # the HTTP/2 client got the server's SETTINGS frame (type 4): the server (our own
    # connection, with hpack) loaded on demand; the h2 library is the upstream client's only
    assert h2.startswith("H2 4 ") and "'hpack'" in h2 and "'h2'" not in h2, out
    # RequestAuthentication: the jwt_authn filter, with cryptography
    assert jwt.startswith("JWT ['cryptography'") and "'jwt_authn'" in jwt, out


def test_jwt_rules_without_cryptography_refuse_the_snapshot() -> None:
    """Fail closed: the snapshot that asks for token checks is refused and the last good
    one stays in force; a config without JWT rules runs as before."""
    out = _run("cryptography")
    lines = out.splitlines()
    assert lines[0] == "PLAIN [] ['authz']", out
    assert lines[-1].startswith("REFUSED "), out
    assert "RequestAuthentication" in lines[-1] and "cryptography" in lines[-1], out
    assert lines[-1].endswith("| in force: v1"), out
