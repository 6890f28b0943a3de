"""`tollway rollout ... --kubeconfig/--context`: the same commands against a cluster.

The cluster is the only store: `status` reads the Rollout/Canary (Argo's or Flagger's
status), its AnalysisRun objects and the controller's record (the decisions, with who
and why); `promote|abort|retry|pause|resume|restart|set-weight` put a command annotation
on the object, which the control plane's rollout controller (the Lease holder) consumes
once and removes; `set-image` edits the template (the Rollout's, or the Canary target
Deployment's), a new revision as with `kubectl argo rollouts set image`.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx2
import typer

from tollway.kube.api import Api, ApiUnavailable, load_config
from tollway.rollout import onkube, plans
from tollway.rollout.cluster import path_of, record_name

KINDS = ("Rollout", "Canary")


class KubeRollouts:
    """One CLI invocation's connection to the API server."""

    def __init__(self, kubeconfig: Path | None, context: str | None) -> None:
        try:
            self.api = Api(load_config(kubeconfig, context))
        except ApiUnavailable as exc:
            typer.echo(f"tollway rollout: {exc}", err=True)
            raise typer.Exit(2) from None

    async def _req(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        try:
            return await self.api.request(method, path, **kw)
        except httpx2.HTTPError as exc:
            typer.echo(f"tollway rollout: cannot reach the Kubernetes API at "
                       f"{self.api.server} ({type(exc).__name__}); check --kubeconfig/"
                       "--context and that the cluster is up", err=True)
            raise typer.Exit(1) from None

    async def items(self, namespace: str | None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for kind in KINDS:
            code, data = await self._req("GET", path_of(kind, namespace or ""))
            if code == 200 and isinstance(data, dict):
                for item in data.get("items") or []:
                    out.append({**item, "kind": kind})
        return out

    async def find(self, name: str, namespace: str | None) -> dict[str, Any]:
        if namespace:
            for kind in KINDS:
                code, data = await self._req("GET", path_of(kind, namespace, name))
                if code == 200 and isinstance(data, dict):
                    return data
            typer.echo(f"no Rollout or Canary {namespace}/{name}", err=True)
            raise typer.Exit(1)
        found = [i for i in await self.items(None) if i["metadata"]["name"] == name]
        if not found:
            typer.echo(f"no Rollout or Canary named {name} in any namespace; see "
                       "`tollway rollout list`", err=True)
            raise typer.Exit(1)
        if len(found) > 1:
            spaces = ", ".join(i["metadata"]["namespace"] for i in found)
            typer.echo(f"{name} exists in several namespaces ({spaces}); pass -n NAMESPACE",
                       err=True)
            raise typer.Exit(2)
        return found[0]

    async def view(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """The object with what `rollout.render` shows: steps, runs and decisions."""
        meta = obj.get("metadata") or {}
        kind, ns, name = str(obj.get("kind")), str(meta["namespace"]), str(meta["name"])
        status = dict(obj.get("status") or {})
        code, cm = await self._req("GET", path_of("ConfigMap", ns, record_name(kind, name)))
        record: dict[str, Any] = {}
        if code == 200 and isinstance(cm, dict):
            try:
                record = json.loads((cm.get("data") or {}).get("record") or "{}") or {}
            except ValueError:
                record = {}
        state = record.get("state") or {}
        status["decisions"] = list(state.get("history") or [])[-30:]
        if kind == "Rollout":
            status["steps"] = _steps(obj, status)
            params = {"labelSelector": f"{onkube.ROLLOUT_LABEL}={name}"}
            code, runs = await self._req("GET", path_of("AnalysisRun", ns), params=params)
            items = runs.get("items") if code == 200 and isinstance(runs, dict) else []
            status["analysisRuns"] = [
                {"name": r["metadata"]["name"], **(r.get("status") or {})}
                for r in sorted(items or [], key=lambda r: str(
                    r["metadata"].get("creationTimestamp")))][-3:]
        return {**obj, "status": status}

    async def command(self, obj: Mapping[str, Any], cmd: onkube.Command) -> str:
        meta = obj.get("metadata") or {}
        body = {"metadata": {"annotations": {
            onkube.COMMAND_ANNOTATION: onkube.command_annotation(cmd)}}}
        code, data = await self._req(
            "PATCH", path_of(str(obj.get("kind")), str(meta["namespace"]), str(meta["name"])),
            body=body, content_type="application/merge-patch+json")
        if code != 200:
            why = data.get("message") if isinstance(data, dict) else ""
            typer.echo(f"tollway rollout {cmd.action}: HTTP {code} {why}", err=True)
            raise typer.Exit(1)
        return (f"{cmd.machine_command} requested for {obj.get('kind')} "
                f"{meta['namespace']}/{meta['name']} by {cmd.actor}")

    async def set_image(self, obj: Mapping[str, Any], image: str, container: str | None,
                        env: Mapping[str, str]) -> str:
        meta = obj.get("metadata") or {}
        ns = str(meta["namespace"])
        target: Mapping[str, Any] = obj
        if obj.get("kind") == "Canary":
            ref = str(((obj.get("spec") or {}).get("targetRef") or {}).get("name")
                      or meta["name"])
            code, dep = await self._req("GET", path_of("Deployment", ns, ref))
            if code != 200 or not isinstance(dep, dict):
                typer.echo(f"tollway rollout set-image: target Deployment {ns}/{ref} not "
                           "found", err=True)
                raise typer.Exit(1)
            target = {**dep, "kind": "Deployment"}
        containers = [dict(c) for c in ((target.get("spec") or {}).get("template") or {})
                      .get("spec", {}).get("containers") or []]
        hit = [c for c in containers if not container or c.get("name") == container]
        if not hit:
            typer.echo(f"tollway rollout set-image: no container named {container}", err=True)
            raise typer.Exit(1)
        for c in hit:
            c["image"] = image
            for k, v in env.items():
                c["env"] = [*(e for e in c.get("env") or [] if e.get("name") != k),
                            {"name": k, "value": v}]
        tmeta = target.get("metadata") or {}
        body = {"metadata": {"resourceVersion": tmeta.get("resourceVersion")},
                "spec": {"template": {"spec": {"containers": containers}}}}
        code, data = await self._req(
            "PATCH", path_of(str(target.get("kind")), ns, str(tmeta["name"])), body=body,
            content_type="application/merge-patch+json")
        if code != 200:
            why = data.get("message") if isinstance(data, dict) else ""
            typer.echo(f"tollway rollout set-image: HTTP {code} {why}", err=True)
            raise typer.Exit(1)
        return f"{target.get('kind')} {tmeta['name']}: image set to {image}"

    async def close(self) -> None:
        await self.api.close()


def _steps(obj: Mapping[str, Any], status: Mapping[str, Any]) -> list[dict[str, Any]]:
    meta = obj.get("metadata") or {}
    try:
        plan = plans.argo_plan(str(meta["name"]), str(meta["namespace"]),
                               dict(obj.get("spec") or {}), meta)
    except plans.PlanError:
        return []
    at = onkube.plan_step_index([s.kind for s in plan.steps],
                                int(status.get("currentStepIndex") or 0))
    return [{"index": i, "step": s.describe(),
             "current": i == at and status.get("phase") != "Healthy"}
            for i, s in enumerate(plan.steps)]


def run(kubeconfig: Path | None, context: str | None, action: str, name: str | None,
        namespace: str | None, **kw: Any) -> Any:
    """One CLI action against the cluster (`action`: list, get, command, set-image)."""
    async def main() -> Any:
        kr = KubeRollouts(kubeconfig, context)
        try:
            if action == "list":
                return await kr.items(namespace)
            assert name is not None
            obj = await kr.find(name, namespace)
            if action == "get":
                return await kr.view(obj)
            if action == "set-image":
                return await kr.set_image(obj, kw["image"], kw.get("container"), kw["env"])
            cmd = onkube.Command(uuid.uuid4().hex[:12], action, kw["actor"], kw["reason"],
                                 bool(kw.get("full")), kw.get("weight"))
            return await kr.command(obj, cmd)
        finally:
            await kr.close()

    return asyncio.run(main())
