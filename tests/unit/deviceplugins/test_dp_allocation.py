"""Preferred allocation on DGX-like and PCIe topologies, and the Allocate answer."""

from __future__ import annotations

from pathlib import Path

from kray.deviceplugins.allocation import (
    SHARING_ANNOTATION,
    DevicePaths,
    Topology,
    advertised_ids,
    allocate_response,
    base_uuid,
    preferred_allocation,
)
from kray.deviceplugins.fake_nvml import FakeNvml
from kray.deviceplugins.nvidia import GpuPluginConfig, GpuPluginCore


def _dgx(n: int = 8) -> tuple[list[str], Topology]:
    nvml = FakeNvml.dgx(n)
    nvml.init()
    gpus = [nvml.device(i) for i in range(n)]
    return [g.uuid for g in gpus], Topology.from_nvml(nvml, gpus)


def test_islands() -> None:
    uuids, topo = _dgx()
    assert topo.islands() == [uuids[:4], uuids[4:]]


def test_four_gets_one_whole_island() -> None:
    uuids, topo = _dgx()
    got = preferred_allocation(uuids, [], 4, topo)
    assert set(got) in (set(uuids[:4]), set(uuids[4:]))


def test_four_gets_the_free_whole_island_when_the_other_is_broken() -> None:
    uuids, topo = _dgx()
    available = [u for u in uuids if u != uuids[1]]  # island 0 has 3 free
    assert set(preferred_allocation(available, [], 4, topo)) == set(uuids[4:])


def test_two_stay_on_one_island() -> None:
    uuids, topo = _dgx()
    got = preferred_allocation(uuids, [], 2, topo)
    assert len(got) == 2 and topo.island_of(got[0]) == topo.island_of(got[1])


def test_two_come_from_the_broken_island_to_keep_the_other_whole() -> None:
    uuids, topo = _dgx()
    available = uuids[2:]  # island 0: 2 free, island 1: 4 free
    assert set(preferred_allocation(available, [], 2, topo)) == set(uuids[2:4])
    available = uuids[1:]  # island 0: 3 free
    got = preferred_allocation(available, [], 2, topo)
    assert {topo.island_of(u) for u in got} == {0}


def test_must_include_is_honoured_and_completed_on_its_island() -> None:
    uuids, topo = _dgx()
    got = preferred_allocation(uuids, [uuids[5]], 2, topo)
    assert got[0] == uuids[5] and topo.island_of(got[1]) == 1


def test_six_takes_a_whole_island_plus_a_pair() -> None:
    uuids, topo = _dgx()
    got = preferred_allocation(uuids, [], 6, topo)
    per_island = sorted(sum(1 for u in got if topo.island_of(u) == i) for i in (0, 1))
    assert per_island == [2, 4]


def test_pcie_prefers_gpus_behind_one_switch() -> None:
    nvml = FakeNvml.pcie(4)
    nvml.init()
    gpus = [nvml.device(i) for i in range(4)]
    topo = Topology.from_nvml(nvml, gpus)
    uuids = [g.uuid for g in gpus]
    got = preferred_allocation(uuids[1:], [], 2, topo)  # 1 is alone behind its switch now
    assert set(got) == set(uuids[2:4])


def test_large_boxes_fall_back_to_greedy() -> None:
    uuids, topo = _dgx(32)
    got = preferred_allocation(uuids, [], 8, topo)
    assert len(set(got)) == 8
    assert len({topo.island_of(u) for u in got}) == 2  # islands of 4: two whole ones


def test_allocate_response_env_and_existing_device_nodes(tmp_path: Path) -> None:
    for name in ("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm"):  # no nvidia-uvm-tools here
        (tmp_path / name).touch()
    nvml = FakeNvml.pcie(2)
    nvml.init()
    gpus = [nvml.device(i) for i in range(2)]
    resp = allocate_response([gpus[1].uuid], gpus, DevicePaths(dev_root=str(tmp_path)))
    assert resp.envs["NVIDIA_VISIBLE_DEVICES"] == gpus[1].uuid
    assert resp.envs["CUDA_VISIBLE_DEVICES"] == gpus[1].uuid
    assert [d.container_path for d in resp.devices] == ["/dev/nvidia1", "/dev/nvidiactl", "/dev/nvidia-uvm"]
    assert resp.devices[0].host_path == str(tmp_path / "nvidia1")
    assert SHARING_ANNOTATION not in resp.annotations


def test_time_slicing_replicas(tmp_path: Path) -> None:
    nvml = FakeNvml.pcie(2)
    core = GpuPluginCore(nvml, GpuPluginConfig(replicas=3, dev_root=str(tmp_path)))
    ids = [d.ID for d in core.devices()]
    assert len(ids) == 6 and ids[0] == f"{nvml.gpus[0].uuid}::0"
    assert advertised_ids(core.gpus, 3) == ids
    got = core.preferred(ids, [], 2)
    assert len({base_uuid(i) for i in got}) == 2  # spread over both GPUs
    resp = core.allocate([ids[0], ids[1]])  # two replicas of GPU 0 name it once
    assert resp.envs["NVIDIA_VISIBLE_DEVICES"] == nvml.gpus[0].uuid
    assert "unisolated" in resp.annotations[SHARING_ANNOTATION]


def test_preferred_skips_unhealthy_gpus() -> None:
    nvml = FakeNvml.dgx(8)
    core = GpuPluginCore(nvml)
    core.health.step()
    nvml.inject_xid(0, 79)
    core.health.step()
    got = core.preferred([g.uuid for g in core.gpus], [], 4)
    assert nvml.gpus[0].uuid not in got and set(got) == {g.uuid for g in nvml.gpus[4:]}


def test_inventory_reports_devices_health_and_islands() -> None:
    nvml = FakeNvml.dgx(8)
    core = GpuPluginCore(nvml)
    core.health.step()
    nvml.inject_xid(3, 48)
    core.health.step()
    nd = core.inventory("node-a")
    assert nd.metadata.name == "node-a" and nd.spec.node_name == "node-a"
    assert len(nd.spec.devices) == 8
    assert [d.health for d in nd.spec.devices].count("Unhealthy") == 1
    assert nd.spec.devices[3].health_reason and "48" in nd.spec.devices[3].health_reason
    assert [g.devices for g in nd.spec.topology_groups] == [
        [g.uuid for g in nvml.gpus[:4]],
        [g.uuid for g in nvml.gpus[4:]],
    ]
    assert nd.spec.links is not None and nd.spec.links[0][1] == "NVLink" and nd.spec.links[0][4] == "SYS"
    wire = nd.to_dict()
    assert wire["apiVersion"] == "kray.io/v1" and wire["kind"] == "NodeDevices"
    assert wire["spec"]["devices"][0]["memoryBytes"] == 80 * 1024**3


def test_real_gpus_reach_the_oci_spec_as_device_nodes_and_cgroup_rules(tmp_path: Path) -> None:
    """Allocate -> the kubelet's CRI devices -> the runtime's OCI spec. /dev/null stands in for
    /dev/nvidia0 (a real character device; the host has no GPU)."""
    from kray.deviceplugins.checkpoint import ContainerDevices
    from kray.runtime.cri import api_pb2 as cri
    from kray.runtime.cri.ocispec import _devices
    from kray.runtime.oci import ContainerConfig, build_spec

    dev = tmp_path / "dev"
    dev.mkdir()
    (dev / "nvidia0").symlink_to("/dev/null")
    nvml = FakeNvml.dgx(2)
    core = GpuPluginCore(nvml, GpuPluginConfig(dev_root=str(dev)))
    got = ContainerDevices.from_response("nvidia.com/gpu", [nvml.gpus[0].uuid], core.allocate([nvml.gpus[0].uuid]))
    assert [d["containerPath"] for d in got.devices] == ["/dev/nvidia0"]
    cfg = cri.ContainerConfig(devices=[cri.Device(container_path=d["containerPath"], host_path=d["hostPath"],
                                                  permissions=d["permissions"]) for d in got.devices])  # fmt: skip
    spec = build_spec(ContainerConfig(args=["true"], rootfs="/r", hostname="p", devices=_devices(cfg)))
    assert spec["linux"]["devices"][0]["path"] == "/dev/nvidia0"
    rules = spec["linux"]["resources"]["devices"]
    assert {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"} in rules

    # Fake GPUs: the same answer without device nodes, so the container still starts.
    fake = GpuPluginCore(nvml, GpuPluginConfig(dev_root=str(dev), device_nodes=False))
    resp = fake.allocate([nvml.gpus[0].uuid])
    assert not resp.devices and resp.envs["NVIDIA_VISIBLE_DEVICES"] == nvml.gpus[0].uuid
