"""`kray describe node` against a real API server: capacity, the node's pods with their requests,
the allocated sums as a share of allocatable, and each GPU from the node's NodeDevices."""

from __future__ import annotations

import uuid
from typing import Any

from click.testing import CliRunner

from kray.cli.main import cli
from kray.client import Client
from kray.crds import Node
from kray.crds.core.node import NodeStatus


def pod(name: str, ns: str, node: str, resources: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, **extra},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i", "resources": resources}]},
    }


def test_describe_node_shows_pods_allocation_and_gpus(cli_env: dict[str, str]) -> None:
    node, ns = f"gpu-{uuid.uuid4().hex[:6]}", f"t-{uuid.uuid4().hex[:8]}"
    uuids = [f"GPU-{node}-{i}" for i in range(4)]
    with Client(server=cli_env["KRAY_SERVER"], token=cli_env["KRAY_TOKEN"]) as c:
        c.create_raw({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        resources = {"cpu": "2", "memory": "8Gi", "nvidia.com/gpu": "4", "pods": "110"}
        created = c.create(Node.model_validate({
            "metadata": {"name": node, "labels": {"nvidia.com/gpu.product": "NVIDIA-H200"}},
            "spec": {"podCIDR": "10.251.9.0/24",
                     "taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]},
        }))  # fmt: skip
        created.status = NodeStatus.model_validate({
            "capacity": resources, "allocatable": resources,
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
        })  # fmt: skip
        c.update_status(created)
        c.create_raw(
            pod("train", ns, node, {"requests": {"cpu": "500m", "memory": "1Gi", "nvidia.com/gpu": "2"},
                                    "limits": {"nvidia.com/gpu": "2"}},
                annotations={"kray.io/gpu-devices": f"{uuids[0]},{uuids[1]}"})
        )  # fmt: skip
        c.create_raw(pod("web", ns, node, {"requests": {"cpu": "250m"}, "limits": {"cpu": "1"}}))
        c.create_raw(pod("elsewhere", ns, "other-node", {"requests": {"cpu": "1"}}))
        c.create_raw({
            "apiVersion": "kray.io/v1", "kind": "NodeDevices", "metadata": {"name": node},
            "spec": {"nodeName": node, "driver": "nvidia.com/gpu",
                     "devices": [{"name": u, "index": i, "model": "NVIDIA H200", "memoryBytes": 150754820096,
                                  "health": "Unhealthy" if i == 3 else "Healthy",
                                  **({"healthReason": "XID 79"} if i == 3 else {})} for i, u in enumerate(uuids)],
                     "topologyGroups": [{"name": "nvlink-0", "devices": uuids[:2]}]},
        })  # fmt: skip
    result = CliRunner().invoke(cli, ["describe", "node", node], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = result.output
    lines = [line.split() for line in out.splitlines()]
    assert f"Name:         {node}" in out
    assert "Taints:       nvidia.com/gpu=present:NoSchedule" in out
    assert "PodCIDR:      10.251.9.0/24" in out
    assert "Non-terminated Pods:  (2 in total)" in out and "elsewhere" not in out
    assert [ns, "train", "500m", "(25%)", "0", "(0%)", "1Gi", "(12%)", "0", "(0%)"] == next(
        row[:10] for row in lines if row[1:2] == ["train"]
    )
    assert ["cpu", "750m", "(37%)", "1", "(50%)"] in lines
    assert ["nvidia.com/gpu", "2", "(50%)", "2", "(50%)"] in lines
    assert "Devices (nvidia.com/gpu):" in out
    assert ["0", uuids[0], "NVIDIA", "H200", "143771", "MiB", "Healthy", "nvlink-0", f"{ns}/train"] in lines
    assert ["3", uuids[3], "NVIDIA", "H200", "143771", "MiB", "Unhealthy", "(XID", "79)", "<none>"] in lines
