"""A missing security piece stops the proxy at start; it never runs without it.

Each case runs a fresh interpreter in which one module of the chain cannot be imported
(as after a rename, a packaging mistake or a partial install) and asks it to build the
chain for an inbound listener under an AuthorizationPolicy with mTLS on. The only
acceptable outcomes are an ImportError (or SnapshotError) before any listener exists; a
chain that silently lacks the RBAC filter or XFCC is the failure this test exists for.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from importlib.abc import MetaPathFinder

    BLOCKED = sys.argv[1]

    class Missing(MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Missing())
    try:
        from tollway.proxy.chain.build import compile_snapshot
        from tollway.proxy.chain.mirror import Mirrorer
        from tollway.proxy.chain.telemetry import Metrics
        from tollway.proxy.http1.parse import Limits
        from tollway.snapshot import types
        from tollway.snapshot.codec import SnapshotError
    except ImportError as exc:
        print("REFUSED", exc)
        sys.exit(0)

    deny = types.AuthzPolicy(name="ns/deny-all", action="DENY", rules=(types.AuthzRule(),))
    cfg = types.ProxyConfig(
        version="v1",
        node=types.Node(name="p"),
        listeners=(types.Listener(name="in", kind="inbound", app_port=1, service_port=80),),
        authz=types.Authz(policies=(deny,)),
    )

    class FakeTlsState:  # stands for the workload certificate: mTLS is on
        client = None
        def client_for(self, ids):
            return None

    loop = asyncio.new_event_loop()
    try:
        snap = compile_snapshot(cfg, loop=loop, metrics=Metrics(), mirrorer=Mirrorer(),
                                limits=Limits(), tls_state=FakeTlsState())
    except (ImportError, SnapshotError) as exc:
        print("REFUSED", exc)
        sys.exit(0)
    names = sorted(f.name for f in snap.plans["in"].filters)
    print("STARTED with filters", names)
    sys.exit(1)
    """
)


@pytest.mark.parametrize(
    "module",
    ["tollway.proxy.chain.authz", "tollway.proxy.chain.xfcc", "tollway.proxy.core.authz"],
)
def test_a_missing_security_module_stops_the_proxy_from_starting(module: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, module], capture_output=True, text=True, timeout=120
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"proxy built its chain without {module}: {out}"
    assert "REFUSED" in proc.stdout and module.rsplit(".", 1)[1] in proc.stdout


def test_the_full_build_has_both_security_filters() -> None:
    """The control case: nothing blocked, the inbound chain has XFCC then RBAC."""
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, "no.such.module"], capture_output=True, text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "STARTED with filters ['authz', 'xfcc']" in proc.stdout
