"""Tollway on Kubernetes: the control plane with the API server as its store.

The only package that talks to the Kubernetes API through a client library (the proxy
never does: see .importlinter). Layout follows the data flow:
- `kinds`: what is watched (core kinds and the Tollway CRDs' groups) [pure];
- `informer`: list+watch bookkeeping per kind, resourceVersion, bookmarks, 410 [pure];
- `objects`: a Kubernetes object -> a validated Resource, a Pod -> a Replica, a
  condition [pure];
- `mirror`: events -> the same ConfigStore / ControlPlane `tollway up` feeds, and the
  Reconciled conditions to write back [pure over the store];
- `api`: the HTTP edge (list, watch, status patch) over lightkube's configured client;
- `run`: `tollway control-plane --kubernetes` wiring.
"""
