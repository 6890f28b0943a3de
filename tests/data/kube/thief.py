"""A pod's app that tries to get certificates with its own projected token (audience tollway).

Prints one JSON line: the status of each attempt (registering and signing as itself, as
another service account, as another pod's node), then sleeps (the test reads its log).
"""

from __future__ import annotations

import asyncio
import json
import os
import time

import httpx

from tollway.proxy import tls

URL = os.environ["CONTROL_PLANE"]
NS = os.environ["POD_NAMESPACE"]
ME = f"{os.environ['POD_NAME']}.{NS}"
VICTIM_NODE = os.environ["VICTIM_NODE"]  # a checkout-service pod's node name
VICTIM_ID = "spiffe://cluster.local/ns/checkout/sa/checkout-service"
OWN_ID = f"spiffe://cluster.local/ns/{NS}/sa/thief"


def token() -> str:
    with open("/var/run/secrets/tokens/tollway-token") as f:
        return f.read().strip()


def register(name: str, namespace: str, sa: str) -> int:
    return httpx.post(f"{URL}/v1/register", timeout=20,
                      headers={"Authorization": f"Bearer {token()}"},
                      json={"node": {"name": name, "namespace": namespace,
                                     "service_account": sa}}).status_code


async def sign(spiffe_id: str, node: str) -> str:
    try:
        creds = await tls.issue(spiffe_id, tls.http_signer(URL, node, token=token))
    except tls.SignRefused as exc:
        return str(exc.status)
    except Exception as exc:
        return f"error: {exc!r}"
    return str(creds.spiffe_id)


def sign_own() -> str:
    """As a sidecar does: with two control-plane replicas behind the Service, registering
    and signing may land on different ones (403 "not registered"): register again, retry."""
    got = ""
    for _ in range(30):
        register(ME, NS, "thief")
        got = asyncio.run(sign(OWN_ID, ME))
        if got != "403":
            return got
        time.sleep(0.5)
    return got


out = {
    "register_self": register(ME, NS, "thief"),
    "sign_self": sign_own(),
    "register_as_checkout": register(f"stolen-0.{NS}", "checkout", "checkout-service"),
    "register_victim_node": register(VICTIM_NODE, "checkout", "checkout-service"),
    "sign_victim_id_as_self": asyncio.run(sign(VICTIM_ID, ME)),
    "sign_as_victim_node": asyncio.run(sign(VICTIM_ID, VICTIM_NODE)),
}
print(json.dumps(out), flush=True)
while True:
    time.sleep(3600)
