"""`tollway dev cluster`: a real Kubernetes control plane on one machine, without containers.

The binaries are the upstream ones built from the Go module proxy (build.sh); this package
plans their flags (plan.py, pure), mints the PKI (pki.py), plumbs the host side of the pod
network (hostnet.py), supervises the processes (supervise.py) and tears everything down
(teardown.py). The node agent that runs pods lives in tollway.devnode.
"""
