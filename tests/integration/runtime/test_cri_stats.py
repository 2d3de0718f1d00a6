"""ListContainerStats on real crun: CPU time and rate from the container's cgroup, memory working
set, and the filters (root only)."""

from __future__ import annotations

import asyncio
import time

import pytest
from cri_harness import ctr_config, run_pod

from kray.runtime.cri import api_pb2 as pb
from kray.runtime.cri.client import RuntimeClient

pytestmark = [pytest.mark.root]

MiB = 1 << 20


async def test_cpu_and_memory_of_running_containers(cri: RuntimeClient) -> None:
    # 64 MiB written to the pod's /dev/shm (tmpfs: memory charged to the container's cgroup, and
    # not file cache the working set leaves out) stays held while the container sleeps.
    sandbox, [spinner, holder] = await run_pod(
        cri, "st",
        ctr_config("spin", ["sh", "-c", "while :; do :; done"]),
        ctr_config("hold", ["sh", "-c", "head -c 67108864 /dev/zero > /dev/shm/held; sleep 1000"]),
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        stats = {s.attributes.metadata.name: s for s in await cri.list_container_stats()}
        held = stats["hold"].memory.working_set_bytes.value if "hold" in stats else 0
        if held > 60 * MiB or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.3)
    assert held > 60 * MiB, held
    first = stats["spin"].cpu
    await asyncio.sleep(1.0)
    [spin] = await cri.list_container_stats(pb.ContainerStatsFilter(id=spinner))
    assert spin.attributes.id == spinner and spin.attributes.metadata.name == "spin"
    assert spin.cpu.usage_core_nano_seconds.value > first.usage_core_nano_seconds.value
    # One busy loop is about one core (two cores here, shared with whatever else runs).
    assert 0.2e9 < spin.cpu.usage_nano_cores.value < 1.3e9, spin.cpu.usage_nano_cores.value
    assert spin.memory.working_set_bytes.value < 16 * MiB
    by_sandbox = await cri.list_container_stats(pb.ContainerStatsFilter(pod_sandbox_id=sandbox))
    assert {s.attributes.id for s in by_sandbox} == {spinner, holder}
    assert await cri.list_container_stats(pb.ContainerStatsFilter(label_selector={"ctr": "hold"})) != []
    await cri.stop_container(spinner, timeout=0)
    assert [s.attributes.id for s in await cri.list_container_stats()] == [holder]  # running ones only
