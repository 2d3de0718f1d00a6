"""The scheduler as a cluster service: one named, detached, restartable Ray actor per shard.

Plumbing only; the logic is ``ShardCore``. Each actor runs its shard on a thread with its own
event loop so it starts with the actor (and after Ray restarts it) without waiting for a
method call. Watches come straight off etcd when ``etcd_endpoint`` is given (the direct bus,
measured faster than HTTP watches), through the API server otherwise; writes (bindings,
status, events, evictions) always go through the API server.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import ray

from kray.actors.framework.loopthread import LoopThread
from kray.config import KrayConfig

log = logging.getLogger(__name__)

RAY_NAMESPACE = "kray"
MAX_SHARDS = 64  # how far deploy_scheduler looks for surplus shards to retire


def actor_name(index: int) -> str:
    return f"kray-scheduler-{index}"


class SchedulerShardActor:
    def __init__(
        self,
        index: int,
        count: int,
        config: KrayConfig,
        etcd_endpoint: str | None = None,
        profile: dict[str, Any] | None = None,
        scheduler_config: dict[str, Any] | None = None,
    ) -> None:
        import kray.crds  # noqa: F401  (registers the built-in kinds)

        self.index, self.count = index, count
        self.config, self.etcd_endpoint, self.profile = config, etcd_endpoint, profile
        self.scheduler_config = scheduler_config  # a KubeSchedulerConfiguration dict: its profiles
        self.core: Any = None
        self._runner = LoopThread(self._serve, actor_name(index))

    async def _serve(self) -> None:
        from kray.actors.framework.ports import ClientListWatcher, ListWatcher, StoreListWatcher
        from kray.client.aio import AsyncClient

        from .binder import ApiBinder
        from .config import load_scheduler_config
        from .evictor import ApiEvictor
        from .profile import Profile
        from .reporter import ApiStatusReporter
        from .shard import ShardCore

        async with AsyncClient(self.config) as client:
            lw: ListWatcher
            kv: Any = None
            if self.etcd_endpoint:
                from kray.actors.store.etcd import EtcdKV
                from kray.actors.store.objects import ObjectStore

                kv = EtcdKV(self.etcd_endpoint)
                lw = StoreListWatcher(ObjectStore(kv))
            else:
                lw = ClientListWatcher(client)
            # kube-scheduler's "Scheduled" Event per bound pod, written off the binding path.
            reporter = ApiStatusReporter(client, instance=actor_name(self.index), scheduled_events=True)
            self.core = ShardCore(
                self.index,
                self.count,
                pods=lw,
                nodes=lw,
                pod_groups=lw,
                node_devices=lw,
                pvcs=lw,
                pvs=lw,
                storage_classes=lw,
                volume_client=client,
                binder=ApiBinder(client),
                reporter=reporter,
                evictor=ApiEvictor(client, reporter),
                profile=Profile.from_dict(self.profile) if self.profile else None,
                profiles=load_scheduler_config(self.scheduler_config) if self.scheduler_config else None,
            )
            try:
                await self.core.run()
            finally:
                if kv is not None:
                    with contextlib.suppress(Exception):
                        await kv.close()

    def _call(self, fn: Any) -> Any:
        """Run ``fn()`` on the shard's loop (the core is not thread-safe) and wait for it."""
        if self.core is None or not self._runner.running:
            return None

        async def wrapped() -> Any:
            return fn()

        return self._runner.call(wrapped())

    def ready(self) -> bool:
        return self._runner.running and self.core is not None

    def stats(self) -> dict[str, Any]:
        stats = self._call(lambda: self.core.stats()) or {}
        return {**stats, "error": self._runner.error}

    def settings(self) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """(profile, scheduler_config) this shard was created with."""
        return self.profile, self.scheduler_config

    def reshard(self, count: int) -> None:
        self.count = count
        self._call(lambda: self.core.reshard(count))

    def stop(self) -> None:
        self._runner.stop()


def deploy_scheduler(
    config: KrayConfig,
    shards: int,
    etcd_endpoint: str | None = None,
    profile: dict[str, Any] | None = None,
    scheduler_config: dict[str, Any] | None = None,
) -> list[Any]:
    """Create (or find) ``shards`` detached actors ``kray-scheduler-<i>`` in Ray namespace ``kray``.

    Existing shards are told the new count (their pending pods re-hash to the new owners);
    shards beyond the count are retired. A shard running another profile or scheduler config
    is replaced (Ray restarts an actor with its creation arguments, so telling it is not enough);
    the new one rebuilds from list + watch like any restarted shard.
    """
    if shards < 1:
        raise ValueError("shards must be >= 1")
    if profile:
        from .profile import Profile

        Profile.from_dict(profile)  # a bad profile fails here, not in an actor
    if scheduler_config:
        from .config import load_scheduler_config

        load_scheduler_config(scheduler_config)  # SchedulerConfigError names the bad field
    remote_cls = ray.remote(SchedulerShardActor)

    def create(i: int) -> Any:
        return remote_cls.options(  # type: ignore[attr-defined]
            name=actor_name(i),
            namespace=RAY_NAMESPACE,
            lifetime="detached",
            max_restarts=-1,
            max_task_retries=-1,
            get_if_exists=True,
            num_cpus=0,
            max_concurrency=4,
        ).remote(i, shards, config, etcd_endpoint, profile, scheduler_config)

    handles = [create(i) for i in range(shards)]
    wanted = (profile, scheduler_config)
    for i, current in enumerate(ray.get([h.settings.remote() for h in handles])):  # type: ignore[attr-defined]
        if tuple(current) != wanted:
            ray.kill(handles[i], no_restart=True)
            _wait_for_name_release(actor_name(i))
            handles[i] = create(i)
    ray.get([h.reshard.remote(shards) for h in handles])  # type: ignore[attr-defined]
    for i in range(shards, MAX_SHARDS):
        try:
            surplus = ray.get_actor(actor_name(i), namespace=RAY_NAMESPACE)
        except ValueError:
            break
        ray.kill(surplus, no_restart=True)
    return handles


def _wait_for_name_release(name: str, timeout: float = 30.0) -> None:
    """A killed detached actor's name is free only once the GCS has it dead."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            ray.get_actor(name, namespace=RAY_NAMESPACE)
        except ValueError:
            return
        time.sleep(0.1)
    raise TimeoutError(f"actor {name} still registered {timeout}s after it was killed")
