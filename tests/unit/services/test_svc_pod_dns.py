"""A pod's DNS config from dnsPolicy/dnsConfig, as the kubelet hands it to the runtime."""

from __future__ import annotations

from pathlib import Path

import kray.crds  # noqa: F401
from kray.actors.kubelet.dns import parse_resolv_conf, pod_dns_config
from kray.actors.kubelet.ports import KubeletConfig
from kray.crds import Pod


def pod(ns: str = "team", **spec: object) -> Pod:
    body = {"containers": [{"name": "c", "image": "i"}], **spec}
    return Pod.model_validate({"metadata": {"name": "p", "namespace": ns}, "spec": body})


CFG = KubeletConfig(cluster_dns=["10.244.3.1"])


def test_cluster_first_points_at_the_node_dns_with_kubernetes_search_path() -> None:
    dns = pod_dns_config(pod(), CFG)
    assert dns is not None
    assert list(dns.servers) == ["10.244.3.1"]
    assert list(dns.searches) == ["team.svc.cluster.local", "svc.cluster.local", "cluster.local"]
    assert list(dns.options) == ["ndots:5"]


def test_host_network_and_no_cluster_dns_fall_back_to_the_node(tmp_path: Path) -> None:
    assert pod_dns_config(pod(hostNetwork=True), CFG) is None
    assert pod_dns_config(pod(), KubeletConfig()) is None
    assert pod_dns_config(pod(dnsPolicy="Default"), CFG) is None
    with_host_net = pod_dns_config(pod(hostNetwork=True, dnsPolicy="ClusterFirstWithHostNet"), CFG)
    assert with_host_net is not None and list(with_host_net.servers) == ["10.244.3.1"]
    # Default + dnsConfig: the node's resolv.conf, merged.
    host = tmp_path / "resolv.conf"
    host.write_text("# comment\nnameserver 192.0.2.53\nsearch corp.example\noptions timeout:2\n")
    merged = pod_dns_config(
        pod(
            dnsPolicy="Default",
            dnsConfig={"nameservers": ["192.0.2.54"], "options": [{"name": "timeout", "value": "5"}]},
        ),
        CFG,
        host,
    )
    assert merged is not None
    assert (list(merged.servers), list(merged.searches), list(merged.options)) == (
        ["192.0.2.53", "192.0.2.54"],
        ["corp.example"],
        ["timeout:5"],
    )


def test_policy_none_takes_only_the_pods_config() -> None:
    cfg = {"nameservers": ["1.1.1.1"], "searches": ["a.example"], "options": [{"name": "ndots", "value": "2"}]}
    dns = pod_dns_config(pod(dnsPolicy="None", dnsConfig=cfg), CFG)
    assert dns is not None
    assert (list(dns.servers), list(dns.searches), list(dns.options)) == (["1.1.1.1"], ["a.example"], ["ndots:2"])


def test_parse_resolv_conf() -> None:
    assert parse_resolv_conf("nameserver 1.2.3.4\ndomain a\nsearch b c\noptions ndots:1 rotate\n") == (
        ["1.2.3.4"],
        ["b", "c"],
        ["ndots:1", "rotate"],
    )
