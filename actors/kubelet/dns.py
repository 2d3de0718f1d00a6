"""A pod's resolv.conf, the kubelet's way: the CRI ``DNSConfig`` of its sandbox from ``dnsPolicy``
and ``dnsConfig``. The runtime writes it to the sandbox's /etc/resolv.conf (and, given none,
copies the node's, which is what ``Default`` means).

- ``ClusterFirst`` (the default): the cluster DNS server, search ``<ns>.svc.<domain>
  svc.<domain> <domain>``, ``ndots:5``; a hostNetwork pod falls back to ``Default``, as in
  Kubernetes, and so does every pod when the node has no cluster DNS configured.
- ``ClusterFirstWithHostNet``: the cluster DNS even for a hostNetwork pod.
- ``Default``: the node's resolv.conf.
- ``None``: only the pod's ``dnsConfig``.

A pod's ``dnsConfig`` is merged on top: nameservers and searches appended (duplicates dropped),
options overriding by name.
"""

from __future__ import annotations

from pathlib import Path

from kray.crds import Pod
from kray.runtime.cri import api_pb2 as pb

from .ports import KubeletConfig

NDOTS = "ndots:5"
HOST_RESOLV_CONF = Path("/etc/resolv.conf")


def parse_resolv_conf(text: str) -> tuple[list[str], list[str], list[str]]:
    """(nameservers, searches, options) of a resolv.conf; the last search/domain line wins."""
    servers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        key, rest = fields[0], fields[1:]
        if key == "nameserver" and rest:
            servers.append(rest[0])
        elif key in ("search", "domain"):
            searches = list(rest)
        elif key == "options":
            options += rest
    return servers, searches, options


def _host_config(path: Path) -> tuple[list[str], list[str], list[str]]:
    try:
        return parse_resolv_conf(path.read_text())
    except OSError:
        return [], [], []


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _merge_options(base: list[str], extra: list[str]) -> list[str]:
    by_name = {o.split(":", 1)[0]: o for o in base}
    for o in extra:
        by_name[o.split(":", 1)[0]] = o
    return list(by_name.values())


def pod_dns_config(pod: Pod, cfg: KubeletConfig, host_resolv: Path = HOST_RESOLV_CONF) -> pb.DNSConfig | None:
    """The sandbox's DNSConfig; None: the runtime copies the node's resolv.conf as it is."""
    spec = pod.spec
    policy = spec.dns_policy or "ClusterFirst"
    cluster = bool(cfg.cluster_dns) and (
        policy == "ClusterFirstWithHostNet" or (policy == "ClusterFirst" and not spec.host_network)
    )
    servers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    if cluster:
        domain = cfg.cluster_domain.strip(".")
        ns = pod.metadata.namespace or "default"
        servers = list(cfg.cluster_dns)
        searches = [f"{ns}.svc.{domain}", f"svc.{domain}", domain]
        options = [NDOTS]
    elif policy != "None":
        if spec.dns_config is None:
            return None
        servers, searches, options = _host_config(host_resolv)
    extra = spec.dns_config
    if extra is not None:
        servers = _unique(servers + list(extra.nameservers or []))
        searches = _unique(searches + list(extra.searches or []))
        opts = [f"{o['name']}:{o['value']}" if o.get("value") else str(o["name"]) for o in extra.options or []]
        options = _merge_options(options, opts)
    return pb.DNSConfig(servers=servers, searches=searches, options=options)
