"""devnode: a small kubelet stand-in that runs a real Kubernetes API's Pods as host processes.

Each pod gets its own network namespace (veth on a bridge, an IP from the node's podCIDR), its
containers' command/args/env run on the host filesystem inside that namespace (images are
recorded, never pulled), and status is written back the way a kubelet writes it. The pure
decisions (container lifecycle table, restart backoff, probe thresholds, pod status, env) live
in `lifecycle`, `probes`, `podstatus`, `envvars`, `ipam` and `nodeobj`; the IO edges (`netns`,
`runtime`, `worker`, `agent`, `logserver`, `cleanup`) only carry them out.
"""
