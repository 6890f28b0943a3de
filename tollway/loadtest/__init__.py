"""The bundled load generator: hey's flags, used by Flagger load-test webhooks, the demo
and benchmarks."""
