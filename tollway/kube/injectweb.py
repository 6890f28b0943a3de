"""The injection webhook: AdmissionReview v1 for a Pod CREATE -> the JSONPatch of `inject`.

`admit` is pure (the same review in, the same answer out); `routes` mounts it on the
webhook server at `/inject` and `/inject/...` (Istio serves both). A pod that is not to be
injected is allowed unchanged; a pod whose capture annotations are malformed is refused
with the annotation named (Istio refuses it too: a pod half-captured is worse than none).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from tollway.kube import inject
from tollway.kube.review import read_review

PATH = "/inject"


def admit(review: Mapping[str, Any], settings: inject.Settings) -> dict[str, Any]:
    """AdmissionReview v1 in, AdmissionReview v1 out (same uid)."""
    raw = review.get("request")
    request: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    response: dict[str, Any] = {"uid": str(request.get("uid") or ""), "allowed": True}
    pod = request.get("object")
    kind = request.get("kind") if isinstance(request.get("kind"), Mapping) else {}
    is_pod = isinstance(kind, Mapping) and kind.get("kind", "Pod") == "Pod"
    if request.get("operation") == "CREATE" and is_pod and isinstance(pod, Mapping):
        namespace = str(request.get("namespace")
                        or (pod.get("metadata") or {}).get("namespace") or "default")
        wanted, _why = inject.decision(pod, namespace)
        if wanted:
            try:
                ops = inject.patch(pod, settings)
            except inject.InjectError as exc:
                response["allowed"] = False
                response["status"] = {"code": 400, "reason": "BadRequest",
                                      "message": f"tollway sidecar injection: {exc}"}
            else:
                response["patchType"] = "JSONPatch"
                response["patch"] = base64.b64encode(
                    json.dumps(ops, separators=(",", ":")).encode()).decode()
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "response": response}


def routes(settings: inject.Settings) -> list[web.RouteDef]:
    """POST /inject and /inject/... on the webhook's HTTPS server."""

    async def handle(request: web.Request) -> web.Response:
        if request.content_type != "application/json":
            return web.Response(status=415, text="Content-Type must be application/json")
        review = await read_review(request)
        if isinstance(review, web.Response):
            return review
        return web.json_response(admit(review, settings))

    return [web.post(PATH, handle), web.post(PATH + "/{tail:.*}", handle)]
