"""PyNvml and the GPU plugin core through the real pynvml ctypes bindings, over a mock NVML.

``tests/nvmlmock/mock_nvml.c`` is built into a libnvidia-ml.so.1 that implements the NVML C calls
PyNvml makes, with nvml.h's symbol versions and struct layouts, so the code path a GPU node runs
(pynvml -> ctypes -> libnvidia-ml) runs here without a GPU. pynvml keeps its loaded library and
init count in module globals and dlopen caches the library for the process, so every scenario
runs in a fresh interpreter: the test picks the library (``LD_LIBRARY_PATH``) and the GPUs
(``KRAY_MOCK_NVML_CONFIG``), and the child calls one ``scenario_*`` function of this module and
prints its JSON result.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.nvmlmock.build import (
    CONFIG_ENV,
    HOSTBRIDGE,
    NODE,
    SINGLE,
    SYSTEM,
    MockLayout,
    build_mock_nvml,
    inject_xid,
    set_lost,
    set_utilization,
    two_islands,
)
from tests.nvmlmock.build import nvswitch as nvswitch_layout

REPO = Path(__file__).resolve().parents[3]

# Loads this file by path (tests/integration is not a package), runs one scenario, prints JSON.
_CHILD = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("dp_real_pynvml_child", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print(json.dumps(getattr(module, sys.argv[2])(*json.loads(sys.argv[3]))))
"""


def run_scenario(name: str, *args: Any, lib_dir: Path, config: Path | None) -> Any:
    env = {k: v for k, v in os.environ.items() if k != CONFIG_ENV}
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(lib_dir), os.environ.get("LD_LIBRARY_PATH")) if p)
    if config is not None:
        env[CONFIG_ENV] = str(config)
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, __file__, name, json.dumps(args)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, f"scenario {name} failed:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def mock_lib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory holding the mock libnvidia-ml.so.1 (built once per test module)."""
    lib_dir = tmp_path_factory.mktemp("nvmlmock")
    build_mock_nvml(lib_dir)
    return lib_dir


@pytest.fixture
def islands(tmp_path: Path) -> tuple[MockLayout, Path]:
    """The two-island 8-GPU server, and its config file (fault files go next to it)."""
    layout = two_islands()
    return layout, layout.write(tmp_path / "nvml.conf")


def _real_nvml_installed() -> bool:
    """Whether the dynamic linker knows a real libnvidia-ml (then it cannot be made to be missing)."""
    try:
        cache = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, timeout=10).stdout
    except OSError:
        return False
    return "libnvidia-ml.so.1" in cache


def _uuids(layout: MockLayout) -> list[str]:
    return [g.uuid for g in layout.gpus]


# ---------------------------------------------------------------------------------------------
# scenarios: run in the child interpreter, over the mock library; they return JSON-able values


def scenario_discover(config: str, sysfs: str, lost_uuid: str) -> dict[str, Any]:
    import pynvml

    from kray.deviceplugins.nvml import PyNvml, discover

    nvml = PyNvml(sysfs=sysfs)
    first = discover(nvml)
    driver = pynvml.nvmlSystemGetDriverVersion()
    set_lost(Path(config), [lost_uuid])  # fell off the bus: the next discovery skips it
    second = discover(nvml)
    nvml.shutdown()
    nvml.shutdown()  # one per init, as NVML counts them
    assert isinstance(first, list) and isinstance(second, list)
    return {
        "gpus": [dataclasses.asdict(g) for g in first],
        "after_loss": [g.uuid for g in second],
        "driver": driver,
        # NVMLError's message for a code pynvml has no text of its own comes from nvmlErrorString.
        "error_text": [pynvml.nvmlErrorString(pynvml.NVML_ERROR_GPU_IS_LOST), str(pynvml.NVMLError(25))],
    }


def scenario_topology(sysfs: str, pairs: list[list[int]]) -> list[list[int]]:
    from kray.deviceplugins.nvml import PyNvml

    nvml = PyNvml(sysfs=sysfs)
    nvml.init()
    out = []
    for a, b in pairs:
        t = nvml.topology(a, b)
        out.append([t.nvlinks, t.ancestor])
    nvml.shutdown()
    return out


def scenario_no_gpus() -> dict[str, str]:
    from kray.deviceplugins.nvidia import local_gpus
    from kray.deviceplugins.nvml import NoGPUs, PyNvml, discover

    found, local = discover(PyNvml()), local_gpus()
    assert isinstance(found, NoGPUs) and isinstance(local, NoGPUs)
    return {"discover": found.reason, "local_gpus": local.reason}


def scenario_events(config: str, uuids: list[str]) -> dict[str, Any]:
    from kray.deviceplugins.nvml import PyNvml

    nvml = PyNvml()
    nvml.init()
    inject_xid(Path(config), uuids[0], 48)  # before the set exists: history, never delivered
    events = nvml.event_set([0, 1, 2, 3])  # GPU 4 and up are not registered

    start = time.monotonic()
    quiet = events.wait(0.2)
    quiet_s = time.monotonic() - start

    # An event that arrives while wait() blocks in C: the call must see it long before 5 s.
    later = threading.Timer(0.3, inject_xid, args=(Path(config), uuids[1], 79))
    start = time.monotonic()
    later.start()
    woken = events.wait(5.0)
    woken_s = time.monotonic() - start
    later.join()

    inject_xid(Path(config), uuids[5], 79)  # not registered: skipped
    inject_xid(Path(config), uuids[2], 13)
    inject_xid(Path(config), None, 31)  # NVML could not tell which GPU
    queued = [events.wait(1.0), events.wait(1.0)]
    after = events.wait(0)
    events.close()
    nvml.shutdown()
    return {
        "quiet": quiet,
        "quiet_s": quiet_s,
        "woken": dataclasses.asdict(woken) if woken else None,
        "woken_s": woken_s,
        "queued": [dataclasses.asdict(e) if e else None for e in queued],
        "after": after,
    }


def scenario_probe(config: str, uuid: str, index: int) -> list[Any]:
    from kray.deviceplugins.nvml import DeviceGoneError, PyNvml

    nvml = PyNvml()
    nvml.init()
    seen: list[Any] = [nvml.probe(uuid)]
    set_lost(Path(config), [uuid])
    seen.append(nvml.probe(uuid))
    try:
        nvml.device(index)
        seen.append("answered")
    except DeviceGoneError as e:
        seen.append(str(e))
    set_lost(Path(config), [])  # back on the bus (a reset, a re-seat)
    seen.append(nvml.probe(uuid))
    seen.append(nvml.device(index).uuid)
    seen.append(nvml.probe("GPU-not-on-this-host"))
    nvml.shutdown()
    return seen


class ManualClock:
    """The health monitor's clock, moved by hand so back-off expiry is not a matter of sleeping."""

    def __init__(self) -> None:
        self.t = 0.0

    def monotonic(self) -> float:
        return self.t


def scenario_plugin_core(config: str, sysfs: str) -> dict[str, Any]:
    from kray.deviceplugins.api import HEALTHY
    from kray.deviceplugins.nvidia import GpuPluginConfig, GpuPluginCore
    from kray.deviceplugins.nvml import PyNvml

    clock = ManualClock()
    settings = GpuPluginConfig(device_nodes=False, health_tick_s=0.05, backoff_s=10.0)
    core = GpuPluginCore(PyNvml(sysfs=sysfs), settings, clock=clock)
    ids = [d.ID for d in core.devices()]
    result: dict[str, Any] = {
        "no_gpus": core.no_gpus is not None,
        "ids": ids,
        "numa": [[n.ID for n in d.topology.nodes] for d in core.devices()],
        "islands": core.topology.islands(),
        "preferred": core.preferred(ids, [], 4),
        "visible": core.allocate(core.preferred(ids, [], 2)).envs["NVIDIA_VISIBLE_DEVICES"],
        "polling": core.health.polling,  # opens the XID event set now, before the thread runs
    }
    core.start()  # the real health thread, waiting in nvmlEventSetWait_v2
    try:
        seen = core.wait_changed(-1, 0)
        inject_xid(Path(config), ids[1], 13)  # an application error: the GPU stays
        inject_xid(Path(config), ids[2], 79)  # fell off the bus: the GPU goes
        seen = core.wait_changed(seen, 10.0)
        result["health_after_xids"] = [d.health == HEALTHY for d in core.devices()]
        result["unhealthy"] = core.health.unhealthy()
        result["preferred_after_xids"] = core.preferred(ids, [], 4)
        clock.t = 10.0  # back-off over: the thread re-probes GPU 2, which answers again
        core.wait_changed(seen, 10.0)
        result["health_after_reprobe"] = [d.health == HEALTHY for d in core.devices()]
    finally:
        core.stop()
    return result


def scenario_lost_before_health_starts(config: str, sysfs: str, lost_uuid: str) -> dict[str, Any]:
    from kray.deviceplugins.nvidia import GpuPluginConfig, GpuPluginCore
    from kray.deviceplugins.nvml import PyNvml

    core = GpuPluginCore(PyNvml(sysfs=sysfs), GpuPluginConfig(device_nodes=False), clock=ManualClock())
    set_lost(Path(config), [lost_uuid])  # between discovery and the first health round
    try:
        polling: Any = core.health.polling
        changed = core.health.step()
    except Exception as e:  # what escapes instead of the fallback
        return {"error": repr(e)}
    finally:
        core.stop()
    return {"polling": polling, "changed": changed, "unhealthy": sorted(core.health.unhealthy())}


def scenario_xid_from_a_lost_gpu(config: str, uuid: str) -> dict[str, Any] | None:
    from kray.deviceplugins.nvml import PyNvml

    nvml = PyNvml()
    nvml.init()
    events = nvml.event_set(list(range(nvml.device_count())))
    set_lost(Path(config), [uuid])  # XID 79: the GPU fell off the bus and answers nothing now
    inject_xid(Path(config), uuid, 79)
    event = events.wait(2.0)
    events.close()
    nvml.shutdown()
    return dataclasses.asdict(event) if event else None


def scenario_utilization(config: str, uuids: list[str]) -> dict[str, Any]:
    from kray.deviceplugins.nvidia import GpuPluginConfig, GpuPluginCore
    from kray.deviceplugins.nvml import DeviceGoneError, PyNvml

    nvml = PyNvml()
    core = GpuPluginCore(nvml, GpuPluginConfig(device_nodes=False), clock=ManualClock())
    seen: dict[str, Any] = {"configured": [dataclasses.asdict(nvml.utilization(i)) for i in range(3)]}
    # A training step starts on GPU 1 while the process runs; GPU 0 asks for more than it has.
    set_utilization(Path(config), {uuids[1]: (97, 60 * 1024**3), uuids[0]: (5, 10**15)})
    seen["changed"] = [dataclasses.asdict(nvml.utilization(i)) for i in range(2)]
    set_lost(Path(config), [uuids[1]])
    try:
        nvml.utilization(1)
        seen["lost"] = "answered"
    except DeviceGoneError as e:
        seen["lost"] = str(e)
    # The plugin's DeviceUsage answer: a lost GPU listed without figures, NOT_SUPPORTED left unset.
    seen["plugin"] = [{f.name: v for f, v in entry.ListFields()} for entry in core.usage()[:3]]
    core.stop()
    return seen


# ---------------------------------------------------------------------------------------------
# tests


def test_discovery_reads_every_field_through_the_real_bindings(mock_lib: Path, tmp_path: Path) -> None:
    base = two_islands()
    # GPU 6 runs MIG, GPU 7 predates MIG (NVML answers NOT_SUPPORTED): both must read as expected.
    gpus = list(base.gpus)
    gpus[6] = dataclasses.replace(gpus[6], mig=1)
    gpus[7] = dataclasses.replace(gpus[7], mig=-1, name="NVIDIA A10", compute_capability="8.6", links=0)
    nvlinks = [link for link in base.nvlinks if 7 not in link[:2]]  # a PCIe card: no NVLink at all
    layout = dataclasses.replace(base, gpus=gpus, nvlinks=nvlinks)
    config = layout.write(tmp_path / "nvml.conf")
    sysfs = layout.write_sysfs(tmp_path / "sysfs")

    got = run_scenario("scenario_discover", str(config), str(sysfs), gpus[5].uuid, lib_dir=mock_lib, config=config)

    expected = [
        {
            "index": i,
            "uuid": g.uuid,
            "name": g.name,
            "memory_bytes": g.memory_bytes,
            "compute_capability": g.compute_capability,
            "pci_bus_id": g.bus_id,
            "mig_enabled": g.mig == 1,
            "minor": g.minor,
            "numa_node": g.numa_node,
        }
        for i, g in enumerate(gpus)
    ]
    assert got["gpus"] == expected
    assert got["gpus"][0]["pci_bus_id"] == "00000000:18:00.0" and got["gpus"][4]["numa_node"] == 1
    assert got["after_loss"] == [g.uuid for i, g in enumerate(gpus) if i != 5]
    assert got["driver"] == layout.driver
    assert got["error_text"] == ["GPU is lost", "Argument version mismatch"]


def test_topology_of_two_nvlink_islands(mock_lib: Path, islands: tuple[MockLayout, Path], tmp_path: Path) -> None:
    _, config = islands
    pairs = [[0, 1], [0, 2], [2, 3], [5, 7], [0, 4], [3, 7]]
    got = run_scenario("scenario_topology", str(tmp_path), pairs, lib_dir=mock_lib, config=config)
    assert got == [
        [4, SINGLE],  # 4 direct links; the PCIe level still comes from NVML
        [4, NODE],
        [4, SINGLE],
        [4, NODE],
        [0, SYSTEM],  # across islands: no NVLink, and the sockets' SMP link
        [0, SYSTEM],
    ]


def test_across_islands_the_ancestor_level_is_nvmls_answer(mock_lib: Path, tmp_path: Path) -> None:
    # A one-socket variant, so the level differs from PyNvml's fallback when NVML fails (SYSTEM).
    layout = two_islands()
    layout.ancestors.update({(a, b): HOSTBRIDGE for a in range(4) for b in range(4, 8)})
    config = layout.write(tmp_path / "nvml.conf")
    got = run_scenario("scenario_topology", str(tmp_path), [[0, 4], [3, 6]], lib_dir=mock_lib, config=config)
    assert got == [[0, HOSTBRIDGE], [0, HOSTBRIDGE]]


def test_topology_behind_nvswitches(mock_lib: Path, tmp_path: Path) -> None:
    config = nvswitch_layout().write(tmp_path / "nvml.conf")
    got = run_scenario("scenario_topology", str(tmp_path), [[0, 1], [0, 7], [3, 4]], lib_dir=mock_lib, config=config)
    # Every GPU reaches the four switches over all 18 of its links: any two share all 18.
    assert got == [[18, SINGLE], [18, SYSTEM], [18, SYSTEM]]


def test_driver_not_loaded_means_no_gpus(mock_lib: Path) -> None:
    got = run_scenario("scenario_no_gpus", lib_dir=mock_lib, config=None)
    assert "Driver Not Loaded" in got["discover"] and "Driver Not Loaded" in got["local_gpus"]


def test_missing_library_means_no_gpus(tmp_path: Path) -> None:
    if _real_nvml_installed():
        pytest.skip("a real libnvidia-ml is installed here: the library cannot be made to be missing")
    empty = tmp_path / "no-nvml"
    empty.mkdir()
    got = run_scenario("scenario_no_gpus", lib_dir=empty, config=None)
    assert "Library Not Found" in got["discover"] and "Library Not Found" in got["local_gpus"]


def test_xid_events_arrive_in_order_and_waits_time_out(mock_lib: Path, islands: tuple[MockLayout, Path]) -> None:
    layout, config = islands
    uuids = _uuids(layout)
    got = run_scenario("scenario_events", str(config), uuids, lib_dir=mock_lib, config=config)
    assert got["quiet"] is None and 0.15 <= got["quiet_s"] < 2.0  # the timeout is honoured
    assert got["woken"] == {"uuid": uuids[1], "xid": 79}
    assert 0.25 <= got["woken_s"] < 2.0  # woke when the event came, not at the 5 s timeout
    assert got["queued"] == [{"uuid": uuids[2], "xid": 13}, {"uuid": None, "xid": 31}]
    assert got["after"] is None


def test_a_lost_gpu_fails_its_probe_until_it_is_back(mock_lib: Path, islands: tuple[MockLayout, Path]) -> None:
    layout, config = islands
    uuid = layout.gpus[3].uuid
    got = run_scenario("scenario_probe", str(config), uuid, 3, lib_dir=mock_lib, config=config)
    assert got[0] is True and got[1] is False
    assert got[2] == "GPU 3: GPU is lost"
    assert got[3:] == [True, uuid, False]


def test_gpu_plugin_core_over_real_pynvml(mock_lib: Path, islands: tuple[MockLayout, Path], tmp_path: Path) -> None:
    layout, config = islands
    uuids = _uuids(layout)
    sysfs = layout.write_sysfs(tmp_path / "sysfs")
    got = run_scenario("scenario_plugin_core", str(config), str(sysfs), lib_dir=mock_lib, config=config)

    assert got["no_gpus"] is False and got["ids"] == uuids
    assert got["numa"] == [[0]] * 4 + [[1]] * 4
    assert got["islands"] == [uuids[:4], uuids[4:]]
    assert sorted(got["preferred"]) == sorted(uuids[:4])  # one whole island, not a mix
    assert got["visible"] in {f"{uuids[0]},{uuids[1]}", f"{uuids[1]},{uuids[0]}"}  # two GPUs of one island
    assert got["polling"] is False  # XID events work through the mock

    # XID 79 on GPU 2 took it out; XID 13 on GPU 1 (the workload's fault) did not.
    assert got["health_after_xids"] == [i != 2 for i in range(8)]
    assert list(got["unhealthy"]) == [uuids[2]] and "fallen off the bus" in got["unhealthy"][uuids[2]]
    # Island 0-3 is broken now, so four GPUs come from the other island, whole.
    assert sorted(got["preferred_after_xids"]) == sorted(uuids[4:])
    assert got["health_after_reprobe"] == [True] * 8


# Two faults in deviceplugins/nvml.py that only the real NVML error paths showed (now fixed).


def test_a_gpu_lost_before_health_starts_falls_back_to_polling(
    mock_lib: Path, islands: tuple[MockLayout, Path], tmp_path: Path
) -> None:
    layout, config = islands
    lost = layout.gpus[5].uuid
    got = run_scenario(
        "scenario_lost_before_health_starts", str(config), str(tmp_path), lost, lib_dir=mock_lib, config=config
    )
    # NVML cannot register the lost GPU for events: health falls back to polling, which finds it.
    assert got == {"polling": True, "changed": True, "unhealthy": [lost]}


def test_xid_79_from_a_lost_gpu_names_that_gpu(mock_lib: Path, islands: tuple[MockLayout, Path]) -> None:
    layout, config = islands
    uuid = layout.gpus[3].uuid
    got = run_scenario("scenario_xid_from_a_lost_gpu", str(config), uuid, lib_dir=mock_lib, config=config)
    assert got == {"uuid": uuid, "xid": 79}


def test_utilization_through_the_real_bindings(mock_lib: Path, tmp_path: Path) -> None:
    base = two_islands()
    gpus = list(base.gpus)
    gpus[0] = dataclasses.replace(gpus[0], util=35, used=20 * 1024**3)
    gpus[2] = dataclasses.replace(gpus[2], util=-1, name="NVIDIA GeForce RTX 4090")  # no utilization counter
    config = dataclasses.replace(base, gpus=gpus).write(tmp_path / "nvml.conf")
    uuids = [g.uuid for g in gpus]
    total = gpus[0].memory_bytes

    got = run_scenario("scenario_utilization", str(config), uuids, lib_dir=mock_lib, config=config)

    assert got["configured"] == [
        {"gpu_percent": 35, "memory_used_bytes": 20 * 1024**3, "memory_total_bytes": total},
        {"gpu_percent": 0, "memory_used_bytes": 0, "memory_total_bytes": total},  # idle by default
        {"gpu_percent": None, "memory_used_bytes": 0, "memory_total_bytes": total},  # NOT_SUPPORTED: unknown
    ]
    assert got["changed"] == [
        {"gpu_percent": 5, "memory_used_bytes": total, "memory_total_bytes": total},  # used never exceeds total
        {"gpu_percent": 97, "memory_used_bytes": 60 * 1024**3, "memory_total_bytes": total},
    ]
    assert got["lost"] == "GPU 1: GPU is lost"
    assert got["plugin"] == [
        {
            "id": uuids[0],
            "model": gpus[0].name,
            "gpu_percent": 5,
            "memory_used_bytes": total,
            "memory_total_bytes": total,
        },
        {"id": uuids[1], "model": gpus[1].name},
        {"id": uuids[2], "model": "NVIDIA GeForce RTX 4090", "memory_used_bytes": 0, "memory_total_bytes": total},
    ]
