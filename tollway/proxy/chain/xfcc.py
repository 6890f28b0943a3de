"""`x-forwarded-client-cert` for the app: set from the verified peer, never passed through.

Kept apart from the inbound gate (chain/authn.py, which needs the TLS module and its
~10 MB of `cryptography`) so that the chain builder can import it plainly: the XFCC filter
is part of every inbound mTLS chain, and a missing module must stop the proxy at start
rather than leave the app trusting a header any caller could have sent.
"""

from __future__ import annotations

from typing import Any

from tollway.proxy.chain.filter import LocalReply
from tollway.snapshot import types

XFCC = "x-forwarded-client-cert"
XFCC_B = XFCC.encode()


class XfccFilter:
    """Removes any XFCC a caller sent; sets it from the peer certificate when there is one."""

    name = "xfcc"

    def __init__(self, server_spiffe_id: str) -> None:
        self.by = server_spiffe_id

    def value_for(self, principal: str, cert_hash: str) -> str:
        uri = principal if principal.startswith("spiffe://") else "spiffe://" + principal
        return f'By={self.by};Hash={cert_hash};Subject="";URI={uri}'

    def on_request(self, ex: Any) -> LocalReply | None:
        if ex.listener_kind == "outbound":
            return None
        if XFCC in ex.headers:
            del ex.headers[XFCC]
            ex.raw_headers[:] = [h for h in ex.raw_headers if h[0].lower() != XFCC_B]
        if ex.principal:
            value = self.value_for(ex.principal, ex.attrs.get("peer_cert_hash", ""))
            ex.headers[XFCC] = value
            ex.raw_headers.append((XFCC_B, value.encode("latin-1")))
        return None


def build_xfcc(node: types.Node) -> XfccFilter:
    sid = f"spiffe://{node.cluster_domain}/ns/{node.namespace}/sa/{node.service_account}"
    return XfccFilter(sid)
