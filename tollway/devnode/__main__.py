"""`python -m tollway.devnode run|cleanup`: the node agent and its crash cleanup.

`tollway dev cluster up` starts `run`; `down` runs `cleanup` after stopping it. See
docs/devnode.md for every flag and the files under --state-dir.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from tollway.devnode import podnet
from tollway.devnode.agent import Agent, AgentError, AgentOptions


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tollway.devnode", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="register a Node and run its pods as processes")
    run.add_argument("--kubeconfig", type=Path, required=True)
    run.add_argument("--node-name", default="tollway-dev")
    run.add_argument("--state-dir", type=Path, required=True)
    run.add_argument(
        "--node-ip",
        default="",
        help="InternalIP (default: the podCIDR gateway, i.e. the bridge IP)",
    )
    run.add_argument("--bridge", default="tollway0")
    run.add_argument("--cluster-dns", default="10.96.0.10")
    run.add_argument("--cluster-domain", default="cluster.local")
    run.add_argument("--port", type=int, default=10250, help="kubelet HTTPS port; 0 = any")
    run.add_argument("--tls-cert-file", type=Path)
    run.add_argument("--tls-private-key-file", type=Path)
    run.add_argument("--client-ca-file", type=Path)
    run.add_argument("--pod-cidr", help="set node.spec.podCIDR if no controller allocates one")
    run.add_argument("--kubelet-version", default="v1.34.4")
    run.add_argument("--backoff-base", type=float, default=10.0, help="crash backoff start (s)")
    run.add_argument("--probe-scale", type=float, default=1.0, help="multiply probe timings")
    run.add_argument("-v", "--verbose", action="store_true")
    clean = sub.add_parser("cleanup", help="remove every netns/veth/process a run left behind")
    clean.add_argument("--state-dir", type=Path, required=True)
    clean.add_argument("--bridge", default=None, help="also delete this bridge")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("run", "cleanup", "-h", "--help"):
        argv.insert(0, "run")  # `tollway dev cluster up` starts the agent without a subcommand
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
        format="devnode %(asctime)s %(levelname)s %(message)s",
    )
    for noisy in ("httpx", "httpx2", "httpcore"):  # one line per API call/probe drowns what matters
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.cmd == "cleanup":
        for what in asyncio.run(podnet.cleanup(args.state_dir, bridge=args.bridge)):
            print(f"removed {what}")
        return 0
    opts = AgentOptions(
        kubeconfig=args.kubeconfig,
        node_name=args.node_name,
        state_dir=args.state_dir.resolve(),
        node_ip=args.node_ip,
        bridge=args.bridge,
        cluster_dns=args.cluster_dns,
        cluster_domain=args.cluster_domain,
        port=args.port,
        tls_cert=args.tls_cert_file,
        tls_key=args.tls_private_key_file,
        client_ca=args.client_ca_file,
        pod_cidr=args.pod_cidr,
        version=args.kubelet_version,
        backoff_base=args.backoff_base,
        probe_scale=args.probe_scale,
    )
    try:
        asyncio.run(Agent(opts).run())
    except AgentError as e:
        print(f"devnode: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
