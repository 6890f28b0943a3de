"""Reading an AdmissionReview off a webhook request (shared by /validate and /inject)."""

from __future__ import annotations

from typing import Any

from aiohttp import web


async def read_review(request: web.Request) -> dict[str, Any] | web.Response:
    """The request's AdmissionReview object, or the 400 answer saying why it is not one."""
    try:
        review = await request.json()
    except ValueError:
        return web.Response(status=400, text="body must be an AdmissionReview (JSON)")
    if not isinstance(review, dict):
        return web.Response(status=400, text="body must be an AdmissionReview object")
    return review
