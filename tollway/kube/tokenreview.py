"""Sidecars' projected service-account tokens, verified by the API server (TokenReview).

As istiod does: the sidecar sends the token the kubelet projects into its pod (audience
`tollway`), the control plane asks `authentication.k8s.io/v1` TokenReview whether it is
valid for that audience, and the answer's user `system:serviceaccount:NS:SA` is the only
identity the caller gets. A token bound to a pod carries the pod's name and UID in
`user.extra`; the Principal is then bound to that pod's node name (`POD.NS`, the name its
sidecar registers with), so one pod cannot act as another pod of the same account.

`principal_from_review` is pure; `TokenReviewVerifier` asks the API server and keeps an
accepted answer for a short while (a sidecar calls several times in a row).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tollway.control import auth
from tollway.kube.api import Api

AUDIENCE = "tollway"
SA_PREFIX = "system:serviceaccount:"
POD_NAME = "authentication.kubernetes.io/pod-name"
POD_UID = "authentication.kubernetes.io/pod-uid"
CACHE_SECONDS = 60.0
REVIEW_PATH = "/apis/authentication.k8s.io/v1/tokenreviews"


def _one(extra: Mapping[str, Any], key: str) -> str:
    value = extra.get(key)
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
        return value[0]
    return ""


def principal_from_review(status: Mapping[str, Any], audience: str = AUDIENCE) -> auth.Principal:
    """A TokenReview's `status` -> the caller's Principal, or AuthError (fails closed)."""
    if status.get("authenticated") is not True:
        why = status.get("error") or "the Kubernetes API did not authenticate it"
        raise auth.AuthError(f"the service-account token is not valid: {why}")
    audiences = status.get("audiences")
    if not isinstance(audiences, list) or audience not in audiences:
        raise auth.AuthError(f"the service-account token is not for audience {audience!r}; "
                             f"project one with `audience: {audience}`")
    user = status.get("user") or {}
    username = str(user.get("username") or "")
    if not username.startswith(SA_PREFIX):
        raise auth.AuthError(f"{username or 'the token'} is not a service account; only "
                             "workloads' service-account tokens are accepted")
    ns, sep, sa = username[len(SA_PREFIX):].partition(":")
    try:
        auth.check_name("namespace", ns)
        auth.check_name("service account", sa)
    except ValueError as exc:
        raise auth.AuthError(f"the token's user {username!r} is malformed: {exc}") from None
    if not sep:
        raise auth.AuthError(f"the token's user {username!r} is malformed")
    extra = user.get("extra") or {}
    pod = _one(extra, POD_NAME) if isinstance(extra, Mapping) else ""
    return auth.Principal(namespace=ns, service_account=sa, node=f"{pod}.{ns}" if pod else "")


def review_body(token: str, audience: str = AUDIENCE) -> dict[str, Any]:
    return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
            "spec": {"token": token, "audiences": [audience]}}


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and not token.startswith(auth.PREFIX + ".")


@dataclass
class TokenReviewVerifier:
    """`auth.AsyncTokenVerifier` over the API server's TokenReview."""

    api: Api
    audience: str = AUDIENCE
    _cache: dict[str, tuple[auth.Principal, float]] = field(default_factory=dict)

    def _key(self, token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    def verify(self, token: str, now: float) -> auth.Principal:
        """Only what an earlier review said (the synchronous path cannot ask)."""
        hit = self._cache.get(self._key(token))
        if hit is not None and hit[1] > now:
            return hit[0]
        raise auth.AuthError("a service-account token must be reviewed by the Kubernetes API")

    async def verify_async(self, token: str, now: float) -> auth.Principal:
        if not looks_like_jwt(token):
            raise auth.AuthError("not a Kubernetes service-account token")
        key = self._key(token)
        hit = self._cache.get(key)
        if hit is not None and hit[1] > now:
            return hit[0]
        code, data = await self.api.request("POST", REVIEW_PATH, body=review_body(
            token, self.audience))
        if code not in (200, 201) or not isinstance(data, dict):
            raise auth.AuthError(f"the Kubernetes API could not review the token (HTTP {code}); "
                                 "try again")
        principal = principal_from_review(data.get("status") or {}, self.audience)
        if len(self._cache) > 10000:
            self._cache.clear()
        self._cache[key] = (principal, now + CACHE_SECONDS)
        return principal
