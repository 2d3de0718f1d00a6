"""The scheduling loop end to end, in memory: messages, shards sharing a binder, gangs, preemption."""

from __future__ import annotations

import random

import pytest

from kray.actors.scheduler.fakes import FakeBinder
from kray.actors.scheduler.pod_info import PodInfo
from kray.actors.scheduler.ports import FakeClock
from kray.actors.scheduler.profile import Profile
from kray.actors.scheduler.scheduler import Scheduler
from kray.actors.scheduler.sharding import Shard, shard_of
from kray.crds import Pod

from .builders import GPU, connect, make_scheduler, node, pod, pod_group

BAD = [{"key": "gpu", "value": "bad", "effect": "NoSchedule"}]


async def test_unschedulable_message_groups_reasons() -> None:
    nodes = [node(f"ok{i}", gpu=1) for i in range(3)] + [node(f"bad{i}", gpu=8, taints=BAD) for i in range(2)]
    s, binder, reporter, _ = make_scheduler(nodes=nodes)
    s.on_pod_add(pod("big", gpu=2))
    await s.run_until_idle()
    assert reporter.unschedulable_messages["default/big"] == (
        "0/5 nodes are available: 3 Insufficient nvidia.com/gpu, 2 node(s) had untolerated taint {gpu: bad}."
    )
    assert not binder.bound


async def test_unschedulable_pod_is_retried_when_a_node_arrives() -> None:
    s, binder, reporter, clock = make_scheduler(nodes=[node("small", gpu=1)])
    s.on_pod_add(pod("big", gpu=4))
    await s.run_until_idle()
    assert "default/big" in reporter.unschedulable_messages
    big = node("big", gpu=8)
    binder.add_node(big)
    s.on_node_add(big)
    clock.advance(1)
    await s.run_until_idle()
    assert binder.bound == {"default/big": "big"}
    assert "default/big" not in reporter.unschedulable_messages


async def test_four_shards_share_a_binder_without_overcommit() -> None:
    rng = random.Random(7)
    binder = FakeBinder(auto_deliver=False)  # shards run on stale caches between deliveries
    clock = FakeClock()
    nodes = [node(f"n{i}", cpu=32, memory="64Gi", gpu=8, pods=60) for i in range(50)]
    schedulers = []
    for i in range(4):
        s, *_ = make_scheduler(binder=binder, clock=clock, shard=Shard(i, 4), seed=i)
        schedulers.append(s)
    for n in nodes:
        binder.add_node(n)
        for s in schedulers:
            s.on_node_add(n)
    pods = [
        pod(f"p{i}", cpu=rng.choice(["250m", "500m", "1"]), gpu=rng.choice([0, 0, 0, 0, 0, 1])) for i in range(2000)
    ]
    for p in pods:
        for s in schedulers:
            s.on_pod_add(p)
    total_gpu = sum(1 for p in pods if PodInfo.of(p).requests.get(GPU))
    for _ in range(200):
        busy = False
        for _ in range(20):
            for s in schedulers:
                busy = await s.step() or busy
        binder.deliver()
        clock.advance(1)
        if not busy and all(not s.queue.active and not s.queue.backoff for s in schedulers):
            break
    assert binder.overcommitted() == []
    # 50 nodes x (8 GPUs, 32 cpus, 60 pods): everything fits (~330 GPUs, ~1,170 cpus asked).
    assert total_gpu <= 400
    assert len(binder.bound) == len(pods)
    assert binder.conflicts > 0  # the race really happened and the binder refused it


def _gang_pods(name: str, n: int) -> list[Pod]:
    return [pod(f"{name}-{i}", gpu=1, group=name) for i in range(n)]


@pytest.mark.parametrize("seed", range(20))
async def test_two_gangs_that_cannot_both_fit_one_binds_whole(seed: int) -> None:
    rng = random.Random(seed)
    s, binder, _, clock = make_scheduler(nodes=[node(f"n{i}", gpu=2) for i in range(3)], seed=seed)  # 6 GPUs
    for g in ("a", "b"):
        s.on_pod_group_add(pod_group(g, min_member=4, timeout=30))
    pods = _gang_pods("a", 4) + _gang_pods("b", 4)
    rng.shuffle(pods)
    for p in pods:
        s.on_pod_add(p)
    for _ in range(200):
        await s.run_until_idle()
        clock.advance(rng.choice([0.5, 2, 11]))
    bound = {k.split("/")[1].split("-")[0] for k in binder.bound}
    assert len(binder.bound) == 4 and len(bound) == 1, binder.bound
    loser = ({"a", "b"} - bound).pop()
    assert not [k for k in s.cache.pods if k.startswith(f"default/{loser}-")]  # nothing held
    assert not s.framework.waiting
    assert binder.overcommitted() == []


async def test_gang_times_out_and_releases_reservations() -> None:
    s, binder, reporter, clock = make_scheduler(nodes=[node("n0", gpu=8)])
    s.on_pod_group_add(pod_group("g", min_member=3, timeout=30))
    for p in _gang_pods("g", 3)[:2]:
        s.on_pod_add(p)
    await s.run_until_idle()
    # Two known members < minMember: PreFilter refuses them, nothing is reserved.
    assert "cannot find enough sibling pods" in reporter.unschedulable_messages["default/g-0"]
    assert not binder.bound and not s.cache.pods
    # All three known, but only two fit: the two wait, then time out together.
    s.on_pod_add(pod("g-2", gpu=9, group="g"))
    clock.advance(11)
    await s.run_until_idle()
    assert len(s.framework.waiting) == 2 and not binder.bound
    clock.advance(31)
    await s.run_until_idle()
    assert not s.framework.waiting and not s.cache.pods and not binder.bound


async def test_preemption_evicts_lower_priority_pods() -> None:
    s, binder, _, clock = make_scheduler(nodes=[node("n0", gpu=2), node("n1", gpu=2)])
    for i, prio in enumerate([1, 5, 5, 5]):
        s.on_pod_add(pod(f"low{i}", gpu=1, priority=prio))
    await s.run_until_idle()
    assert len(binder.bound) == 4
    s.on_pod_add(pod("urgent", gpu=2, priority=100))
    await s.run_until_idle()
    node_of_low0 = "n0" if binder.bound.get("default/low0") == "n0" else "n1"
    # The node holding the priority-1 pod loses both its pods; the other node is untouched.
    clock.advance(2)
    await s.run_until_idle()
    assert binder.bound["default/urgent"] == node_of_low0
    assert "default/low0" not in binder.bound
    assert binder.overcommitted() == []


async def test_bind_failure_unreserves_forgets_and_requeues() -> None:
    binder = FakeBinder()
    clock = FakeClock()
    s = Scheduler(binder, clock=clock, seed=0)
    connect(binder, s)
    n = node("n0", gpu=1)
    s.on_node_add(n)  # the binder does not know the node yet: binds fail
    s.on_pod_add(pod("a", gpu=1))
    await s.run_until_idle()
    assert not binder.bound and not s.cache.pods and "default/a" in s.queue
    binder.add_node(n)
    clock.advance(2)
    await s.run_until_idle()
    assert binder.bound == {"default/a": "n0"}


def test_cache_assume_forget_confirm_and_expire() -> None:
    s, *_ = make_scheduler(nodes=[node("n0", cpu=4)])
    cache, clock = s.cache, s.clock
    pi = PodInfo.of(pod("a", cpu=3))
    cache.assume_pod(pi, "n0")
    assert cache.nodes["n0"].requested == {"cpu": 3000}
    cache.forget_pod(pi.key)
    assert cache.nodes["n0"].requested == {}
    cache.assume_pod(pi, "n0")
    cache.finish_binding(pi.key)
    cache.add_pod(pod("a", cpu=3, node_name="n0"))  # confirmed: never expires
    clock.advance(60)  # type: ignore[attr-defined]
    assert cache.cleanup_expired() == [] and cache.nodes["n0"].requested == {"cpu": 3000}
    pb = PodInfo.of(pod("b", cpu=1))
    cache.assume_pod(pb, "n0")
    cache.finish_binding(pb.key)
    clock.advance(31)  # type: ignore[attr-defined]
    assert cache.cleanup_expired() == ["default/b"]
    assert cache.nodes["n0"].requested == {"cpu": 3000}


def test_snapshot_clones_only_changed_nodes() -> None:
    s, *_ = make_scheduler(nodes=[node(f"n{i}") for i in range(3)])
    s.cache.update_snapshot(s.snapshot)
    before = list(s.snapshot.node_list)
    s.cache.assume_pod(PodInfo.of(pod("a", cpu=1)), "n1")
    s.cache.update_snapshot(s.snapshot)
    after = s.snapshot.node_list
    assert after[0] is before[0] and after[2] is before[2] and after[1] is not before[1]
    assert before[1].requested == {} and after[1].requested == {"cpu": 1000}


def test_profile_from_dict() -> None:
    profile = Profile.from_dict(
        {
            "schedulerName": "gpu-packer",
            "percentageOfNodesToScore": 30,
            "plugins": {
                "disabled": [{"name": "PodTopologySpread"}],
                "enabled": [{"name": "NodeResourcesFit", "weight": 5}],
            },
            "pluginConfig": [{"name": "NodeResourcesFit", "args": {"scoringStrategy": {"type": "MostAllocated"}}}],
        }
    )
    names = [p.name for p in profile.plugins]
    assert "PodTopologySpread" not in names and profile.percentage_of_nodes_to_score == 30
    s = Scheduler(FakeBinder(), profile=profile)
    assert s.framework.weights["NodeResourcesFit"] == 5
    assert s.framework.plugin("NodeResourcesFit").strategy == "MostAllocated"
    assert s.num_feasible_to_find(5000) == 1500
    with pytest.raises(ValueError, match="unknown plugin"):
        Scheduler(FakeBinder(), profile=Profile.from_dict({"plugins": {"enabled": [{"name": "Nope"}]}}))


def test_adaptive_percentage_of_nodes_to_score() -> None:
    s = Scheduler(FakeBinder())
    assert [s.num_feasible_to_find(n) for n in (50, 100, 1000, 5000, 10000)] == [50, 100, 420, 500, 500]


def test_sharding_is_stable_disjoint_and_keeps_gangs_together() -> None:
    pods = [pod(f"p{i}") for i in range(400)]
    owners = [shard_of(p, 4) for p in pods]
    assert owners == [shard_of(p, 4) for p in pods]
    assert all(owners.count(i) > 60 for i in range(4))
    assert len({shard_of(p, 4) for p in _gang_pods("g", 8)}) == 1
    assert sum(Shard(i, 4).owns(pods[0]) for i in range(4)) == 1
