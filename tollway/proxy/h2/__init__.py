"""HTTP/2 downstream: h2c (prior knowledge and `Upgrade: h2c`) and h2 over TLS by ALPN.

`headers` and `guard` are sans-IO (header translation, abuse accounting); `server` is the
asyncio edge that feeds the `h2` library and hands each stream to the same chain the
HTTP/1.1 listener uses.
"""
