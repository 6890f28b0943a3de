"""Transparent interception, as Istio's `istio-init` installs it in a pod's network namespace.

- `rules`: settings (flags, a pod's `traffic.sidecar.istio.io/*` annotations) -> the
  iptables-restore text of the nat table [pure];
- `apply`: hands that text to `iptables-restore` (the IO edge; fails closed).
The proxy recovers each redirected connection's destination with SO_ORIGINAL_DST
(`tollway.proxy.origdst`).
"""
