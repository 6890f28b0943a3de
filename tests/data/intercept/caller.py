"""A meshed client for the --intercept e2e: GET /call?n=N&url=URL makes N plain requests.

No proxy settings are read or set here: urllib takes the environment's, and the test
checks that there are none. Answers what it saw: versions, statuses, its proxy env.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

PROXY_VARS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY",
              "all_proxy", "NO_PROXY", "no_proxy")


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path != "/call":
            self._answer({"ok": True})
            return
        query = parse_qs(parts.query)
        n = int(query.get("n", ["1"])[0])
        url = query["url"][0]
        versions: Counter[str] = Counter()
        statuses: Counter[str] = Counter()
        for _ in range(n):
            try:
                with urllib.request.urlopen(url, timeout=10) as r:
                    statuses[str(r.status)] += 1
                    versions[json.loads(r.read())["version"]] += 1
            except urllib.error.HTTPError as exc:
                statuses[str(exc.code)] += 1
            except OSError as exc:
                statuses[type(exc).__name__ + ": " + str(exc)] += 1
        self._answer({"versions": versions, "statuses": statuses,
                      "proxy_env": {k: os.environ[k] for k in PROXY_VARS if k in os.environ},
                      "resolved": _resolve(urlsplit(url).hostname or "")})

    def _answer(self, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_: object) -> None:
        pass


def _resolve(host: str) -> str:
    import socket

    try:
        return socket.gethostbyname(host)
    except OSError as exc:
        return f"unresolved: {exc}"


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
