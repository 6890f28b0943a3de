"""`tollway rollout ...`: watch and steer rollouts through the control plane's API.

Commands never edit the spec GitOps owns (set-image aside, which is a new revision); the
actor (`--actor`, default $USER) and `--reason` are recorded with each decision.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import httpx
import typer

from tollway.cli import credentials

DEFAULT_SERVER = "http://127.0.0.1:15010"
_SERVER = typer.Option(None, "--server", help="Control plane URL (default $TOLLWAY_SERVER "
                       f"or {DEFAULT_SERVER}).")
_NS = typer.Option(None, "-n", "--namespace", help="Namespace (found by name if omitted).")
_ACTOR = typer.Option(None, "--actor", help="Who is acting (default $USER).")
_REASON = typer.Option("", "--reason", help="Why; recorded with the decision.")
_KUBECONFIG = typer.Option(None, "--kubeconfig", help="Work against a Kubernetes cluster "
                           "(this kubeconfig) instead of the control plane's API.")
_CONTEXT = typer.Option(None, "--context", help="Kubeconfig context (implies the cluster).")


def _kube(kubeconfig: Path | None, context: str | None) -> bool:
    return kubeconfig is not None or context is not None


def _kube_summary(obj: dict[str, Any]) -> dict[str, Any]:
    st = obj.get("status") or {}
    weights = (st.get("canary") or {}).get("weights") or {}
    return {"kind": obj["kind"], "namespace": obj["metadata"]["namespace"],
            "name": obj["metadata"]["name"], "phase": st.get("phase", "Pending"),
            "weight": st.get("canaryWeight", (weights.get("canary") or {}).get("weight", 0)),
            "message": st.get("message", "")}


def _base(server: str | None) -> str:
    return (server or os.environ.get("TOLLWAY_SERVER") or DEFAULT_SERVER).rstrip("/")


def _call(method: str, url: str, **kw: Any) -> httpx.Response:
    try:
        headers = credentials.headers(url.split("/v1/")[0])
        return httpx.request(method, url, timeout=15.0, headers=headers, **kw)
    except httpx.HTTPError as exc:
        typer.echo(f"cannot reach the control plane at {url.split('/v1/')[0]} "
                   f"({type(exc).__name__}); start it with `tollway up DIR` or pass --server",
                   err=True)
        raise typer.Exit(1) from None


def _items(base: str) -> list[dict[str, Any]]:
    resp = _call("GET", f"{base}/v1/rollouts")
    if resp.status_code == 404:
        typer.echo("this control plane runs no rollout controller", err=True)
        raise typer.Exit(1)
    items: list[dict[str, Any]] = resp.json().get("items", [])
    return items


def _resolve(base: str, name: str, namespace: str | None) -> str:
    if namespace:
        return namespace
    found = [i for i in _items(base) if i["name"] == name]
    if not found:
        typer.echo(f"no Rollout or Canary named {name}; see `tollway rollout list`", err=True)
        raise typer.Exit(1)
    if len(found) > 1:
        spaces = ", ".join(i["namespace"] for i in found)
        typer.echo(f"{name} exists in several namespaces ({spaces}); pass -n NAMESPACE",
                   err=True)
        raise typer.Exit(2)
    return str(found[0]["namespace"])


def render(obj: dict[str, Any]) -> str:
    """The human view of one rollout: phase, steps with the current one, runs, decisions."""
    st = obj.get("status") or {}
    kind = obj.get("kind")
    meta = obj.get("metadata") or {}
    lines = [f"{kind} {meta.get('namespace')}/{meta.get('name')}: {st.get('phase', 'Pending')}"
             + ("  (aborted)" if st.get("abort") else "")]
    if st.get("message"):
        lines.append(f"  message: {st['message']}")
    if st.get("error"):
        lines.append(f"  error:   {st['error']}")
    if kind == "Rollout":
        w = (st.get("canary") or {}).get("weights") or {}
        lines.append(f"  weights: stable {w.get('stable', {}).get('weight', 100)}% "
                     f"({st.get('stableRS', '')})  canary {w.get('canary', {}).get('weight', 0)}%"
                     f" ({st.get('currentPodHash', '')})")
        steps = st.get("steps") or []
        if steps:  # 1-based, as Argo's `Step: 1/10` and the dashboard count
            at = min(int(st.get("currentStepIndex") or 0) + 1, len(steps))
            done = st.get("phase") == "Healthy" and not any(x.get("current") for x in steps)
            lines.append(f"  step: {len(steps) if done else at}/{len(steps)}")
        for s in steps:
            mark = "->" if s.get("current") else "  "
            lines.append(f"  {mark} {s['index'] + 1:>2}. {s['step']}")
        for run in st.get("analysisRuns") or []:
            lines.append(f"  analysis {run['name']}: {run['phase']} {run.get('message', '')}")
            for m in run.get("metricResults") or []:
                vals = ", ".join(_measurement(x) for x in m.get("measurements", [])[-5:])
                lines.append(f"    {m['name']}: {m['phase']} ok={m['successful']} "
                             f"failed={m['failed']} errors={m['error']}  [{vals}]")
                last = (m.get("measurements") or [{}])[-1]
                if last.get("message"):
                    lines.append(f"      last: {last['message']}")
    else:
        lines.append(f"  canary weight {st.get('canaryWeight', 0)}%  failed checks "
                     f"{st.get('failedChecks', 0)}/{(st.get('analysis') or {}).get('threshold')}")
        for c in (st.get("checks") or [])[-5:]:
            lines.append(f"    check at {c['weight']}%: {'ok' if c['ok'] else 'FAILED'} "
                         f"{c['detail']}")
    for d in (st.get("decisions") or [])[-6:]:
        step = d.get("step")
        where = f" step {step + 1}" if isinstance(step, int) else ""
        lines.append(f"  [{d.get('actor')}] {d.get('phase')}{where} "
                     f"weight {d.get('weight')}%: {d.get('reason')}")
    return "\n".join(lines)


def _measurement(x: dict[str, Any]) -> str:
    """`0.998 Successful`, or just `Error` when there is no value (never `None Error`)."""
    value = x.get("value")
    phase = str(x.get("phase") or "")
    if value is None or value == "":
        return phase or "pending"
    return f"{_short(value)} {phase}".strip()


def _short(value: Any) -> str:
    if isinstance(value, dict) and "verdict" in value:
        return str(value["verdict"])
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list) and value and isinstance(value[0], float):
        return "[" + ", ".join(f"{v:.4g}" for v in value) + "]"
    text = str(value)
    return text if len(text) < 40 else text[:37] + "..."


def _act(server: str | None, name: str, namespace: str | None, action: str,
         body: dict[str, Any], kubeconfig: Path | None = None,
         context: str | None = None) -> None:
    if _kube(kubeconfig, context):
        from tollway.cli import rollout_kube

        typer.echo(rollout_kube.run(kubeconfig, context, action, name, namespace, **body))
        return
    base = _base(server)
    ns = _resolve(base, name, namespace)
    resp = _call("POST", f"{base}/v1/rollouts/{ns}/{name}/{action}", json=body)
    data = resp.json() if resp.headers.get("content-type", "").startswith("application/json") \
        else {"error": resp.text}
    if resp.status_code >= 400:
        typer.echo(f"tollway rollout {action}: {data.get('error')}", err=True)
        raise typer.Exit(1)
    typer.echo(data.get("message", "ok"))


def _who(actor: str | None) -> str:
    return actor or os.environ.get("USER") or "cli"


def register(app: typer.Typer) -> None:
    ro = typer.Typer(help="Watch and steer rollouts (Argo Rollouts and Flagger Canaries).",
                     no_args_is_help=True)
    app.add_typer(ro, name="rollout")

    @ro.command("list")
    def list_(server: str | None = _SERVER, namespace: str | None = _NS,
              kubeconfig: Path | None = _KUBECONFIG, context: str | None = _CONTEXT) -> None:
        """Every Rollout and Canary with its phase and canary weight."""
        if _kube(kubeconfig, context):
            from tollway.cli import rollout_kube

            items = [_kube_summary(o) for o in
                     rollout_kube.run(kubeconfig, context, "list", None, namespace)]
        else:
            items = [i for i in _items(_base(server))
                     if namespace is None or i["namespace"] == namespace]
        if not items:
            typer.echo("no rollouts")
            return
        typer.echo(f"{'KIND':8} {'NAMESPACE':12} {'NAME':24} {'PHASE':16} {'WEIGHT':>6}  MESSAGE")
        for i in items:
            typer.echo(f"{i['kind']:8} {i['namespace']:12} {i['name']:24} {i['phase']:16} "
                       f"{i['weight'] or 0:>5}%  {str(i['message'])[:80]}")

    @ro.command("status")
    def status(name: str, namespace: str | None = _NS, server: str | None = _SERVER,
               watch: bool = typer.Option(False, "--watch", "-w", help="Refresh every second."),
               output: str = typer.Option("", "-o", "--output", help="json for the object."),
               kubeconfig: Path | None = _KUBECONFIG, context: str | None = _CONTEXT,
               ) -> None:
        """Phase, steps (current marked), weights, measurements, last decisions and why."""
        if output not in ("", "json"):
            typer.echo("-o accepts only json", err=True)
            raise typer.Exit(2)
        kube = _kube(kubeconfig, context)
        base = _base(server)
        ns = namespace if kube else _resolve(base, name, namespace)
        while True:
            if kube:
                from tollway.cli import rollout_kube

                obj = rollout_kube.run(kubeconfig, context, "get", name, ns)
            else:
                resp = _call("GET", f"{base}/v1/rollouts/{ns}/{name}")
                if resp.status_code == 404:
                    typer.echo(f"no Rollout or Canary {ns}/{name}", err=True)
                    raise typer.Exit(1)
                obj = resp.json()
            if output == "json":
                typer.echo(json.dumps(obj, indent=2))
            else:
                if watch:
                    typer.echo("\x1b[2J\x1b[H", nl=False)
                typer.echo(render(obj))
            if not watch:
                return
            time.sleep(1.0)

    def simple(action: str, doc: str) -> None:
        def cmd(name: str, namespace: str | None = _NS, server: str | None = _SERVER,
                actor: str | None = _ACTOR, reason: str = _REASON,
                kubeconfig: Path | None = _KUBECONFIG, context: str | None = _CONTEXT) -> None:
            _act(server, name, namespace, action, {"actor": _who(actor), "reason": reason},
                 kubeconfig, context)

        cmd.__doc__ = doc
        ro.command(action)(cmd)

    @ro.command("promote")
    def promote(name: str, namespace: str | None = _NS, server: str | None = _SERVER,
                full: bool = typer.Option(False, "--full", help="Skip all remaining steps."),
                actor: str | None = _ACTOR, reason: str = _REASON,
                kubeconfig: Path | None = _KUBECONFIG, context: str | None = _CONTEXT) -> None:
        """Leave the current pause (or skip the current step); --full skips them all."""
        _act(server, name, namespace, "promote",
             {"full": full, "actor": _who(actor), "reason": reason}, kubeconfig, context)

    simple("abort", "Send all traffic back to stable at once (Degraded, abort).")
    simple("retry", "Run the steps of an aborted rollout again.")
    simple("pause", "Hold at the current step until resumed.")
    simple("resume", "Continue after a pause.")
    simple("restart", "Restart the rollout's replicas (new processes, same version).")

    @ro.command("set-weight")
    def set_weight(name: str, weight: int, namespace: str | None = _NS,
                   server: str | None = _SERVER, actor: str | None = _ACTOR,
                   reason: str = _REASON, kubeconfig: Path | None = _KUBECONFIG,
                   context: str | None = _CONTEXT) -> None:
        """Set the canary's traffic weight by hand and hold there (resume/promote to go on)."""
        if not 0 <= weight <= 100:
            typer.echo("the weight is a percentage from 0 to 100", err=True)
            raise typer.Exit(2)
        _act(server, name, namespace, "set-weight",
             {"weight": weight, "actor": _who(actor), "reason": reason}, kubeconfig, context)

    @ro.command("set-image")
    def set_image(name: str, image: str, namespace: str | None = _NS,
                  container: str | None = typer.Option(None, "--container", "-c"),
                  env: list[str] = typer.Option([], "--env", help="NAME=VALUE (repeatable)."),
                  server: str | None = _SERVER, actor: str | None = _ACTOR,
                  reason: str = _REASON, kubeconfig: Path | None = _KUBECONFIG,
                  context: str | None = _CONTEXT) -> None:
        """Update the template's image (and env), starting a new rollout."""
        pairs = {}
        for e in env:
            k, sep, v = e.partition("=")
            if not sep:
                typer.echo(f"--env {e!r}: write it as NAME=VALUE", err=True)
                raise typer.Exit(2)
            pairs[k] = v
        _act(server, name, namespace, "set-image",
             {"image": image, "container": container, "env": pairs, "actor": _who(actor),
              "reason": reason}, kubeconfig, context)
