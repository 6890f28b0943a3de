"""The files a pod sees over the host's: resolv.conf (per dnsPolicy/dnsConfig), hosts, hostname.

Mirrors kubelet `dns.go`: ClusterFirst (the default) uses the cluster DNS with the search path
`<ns>.svc.<domain> svc.<domain> <domain>` and ndots:5; Default copies the node's resolver;
None uses dnsConfig alone; dnsConfig always merges in (nameservers and searches appended,
options overriding by name). hostNetwork pods with ClusterFirst fall back to Default, as on
Kubernetes unless ClusterFirstWithHostNet is asked for.
"""

from __future__ import annotations

from lightkube.models.core_v1 import PodDNSConfig, PodSpec


class DnsError(ValueError):
    """dnsPolicy/dnsConfig that produce no usable resolver."""


def hostname(pod_name: str, spec: PodSpec) -> str:
    return (spec.hostname or pod_name)[:63]


def _parse_host(text: str) -> tuple[list[str], list[str], list[str]]:
    ns: list[str] = []
    search: list[str] = []
    opts: list[str] = []
    for line in text.splitlines():
        parts = line.split("#", 1)[0].split()
        if not parts:
            continue
        if parts[0] == "nameserver" and len(parts) > 1:
            ns.append(parts[1])
        elif parts[0] in ("search", "domain"):
            search = parts[1:]
        elif parts[0] == "options":
            opts.extend(parts[1:])
    return ns, search, opts


def _merge_options(base: list[str], extra: PodDNSConfig | None) -> list[str]:
    out: dict[str, str] = {}
    for o in base:
        name, _, _value = o.partition(":")
        out[name] = o
    for opt in extra.options if extra and extra.options else []:
        if opt.name:
            out[opt.name] = f"{opt.name}:{opt.value}" if opt.value else opt.name
    return list(out.values())


def resolv_conf(
    spec: PodSpec, *, namespace: str, domain: str, cluster_dns: str, host_resolv: str
) -> str:
    policy = spec.dnsPolicy or "ClusterFirst"
    if policy == "ClusterFirst" and spec.hostNetwork:
        policy = "Default"
    if policy in ("ClusterFirst", "ClusterFirstWithHostNet"):
        servers = [cluster_dns]
        search = [f"{namespace}.svc.{domain}", f"svc.{domain}", domain]
        opts = ["ndots:5"]
    elif policy == "Default":
        servers, search, opts = _parse_host(host_resolv)
    elif policy == "None":
        servers, search, opts = [], [], []
    else:
        raise DnsError(f"spec.dnsPolicy {policy!r} is unknown; use ClusterFirst, Default or None")
    cfg = spec.dnsConfig
    if cfg is not None:
        servers += [s for s in cfg.nameservers or [] if s not in servers]
        search += [s for s in cfg.searches or [] if s not in search]
    opts = _merge_options(opts, cfg)
    if not servers:
        raise DnsError("spec.dnsPolicy None needs spec.dnsConfig.nameservers; add at least one")
    lines = ["# written by devnode for this pod"]
    lines += [f"nameserver {s}" for s in servers[:3]]
    if search:
        lines.append("search " + " ".join(search[:32]))
    if opts:
        lines.append("options " + " ".join(opts))
    return "\n".join(lines) + "\n"


def hosts_file(spec: PodSpec, *, pod_name: str, pod_ip: str, namespace: str, domain: str) -> str:
    """Kubelet's managed /etc/hosts: localhost lines, the pod's own name(s), then hostAliases."""
    name = hostname(pod_name, spec)
    own = name
    if spec.subdomain:
        own = f"{name}.{spec.subdomain}.{namespace}.svc.{domain}\t{name}"
    lines = [
        "# Kubernetes-managed hosts file (devnode).",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "fe00::0\tip6-localnet",
        "fe00::0\tip6-mcastprefix",
        "fe00::1\tip6-allnodes",
        "fe00::2\tip6-allrouters",
        f"{pod_ip}\t{own}",
    ]
    for alias in spec.hostAliases or []:
        if alias.ip and alias.hostnames:
            lines.append(f"{alias.ip}\t" + "\t".join(alias.hostnames))
    return "\n".join(lines) + "\n"
