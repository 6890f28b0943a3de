"""The sidecar and the ingress gateway, in one program. Imports only snapshot and kit."""
