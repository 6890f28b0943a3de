"""HTTP/2 downstream: h2c (prior knowledge and `Upgrade: h2c`) and h2 over TLS by ALPN.

`wire` (frames), `conn` (the server connection: streams, flow control), `headers` and
`guard` are sans-IO (header translation, abuse accounting); `server` is the asyncio edge
that feeds `conn` and hands each stream to the same chain the HTTP/1.1 listener uses.
The `h2` library serves the upstream HTTP/2 client (`client`) and is the tests' oracle.
"""
