"""The thin Ray wrapper: a controller manager as a named, detached, restartable actor.

Everything here is plumbing; the logic lives in the plain classes. The actor runs its
manager on a thread with its own event loop so it starts with the actor (also after Ray
restarts it) without waiting for a method call. A restart rebuilds everything from
list + watch: there is no other state to restore.

A spec is a ``"module:attr"`` string naming either
- a function ``build(manager) -> None`` that wires controllers with ``ControllerBuilder``, or
- a reconciler class with ``FOR`` (the kind it reconciles) and optionally ``OWNS`` (child
  kinds) class attributes, constructed as ``cls(manager)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from typing import Any

import ray

from kray.config import KrayConfig

from .builder import ControllerBuilder
from .leader import LeaderElector
from .manager import Manager
from .ports import ClientListWatcher

log = logging.getLogger(__name__)

RAY_NAMESPACE = "kray"
LEASE_NAMESPACE = "kube-system"


def actor_name(name: str, replica: int) -> str:
    return f"kray-controller-{name}-{replica}"


def resolve_spec(spec: str) -> Callable[[Manager], None]:
    """Turn ``"module:attr"`` into a ``build(manager)`` function (see the module docstring)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"controller spec {spec!r}: expected 'module:attr'")
    target: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part)
    if isinstance(target, type):
        cls = target
        for_kind = getattr(cls, "FOR", None)
        if for_kind is None:
            raise ValueError(f"{spec}: a reconciler class needs a FOR class attribute (the kind)")

        def build(manager: Manager) -> None:
            builder = ControllerBuilder(manager).for_(for_kind)
            for owned in getattr(cls, "OWNS", ()):
                builder.owns(owned)
            builder.complete(cls(manager))

        return build
    if callable(target):
        return target  # type: ignore[no-any-return]
    raise ValueError(f"{spec}: not a build function or a reconciler class")


class ControllerActor:
    """Runs one Manager; with leader election, only the replica holding the Lease reconciles."""

    def __init__(
        self,
        name: str,
        spec: str,
        config: KrayConfig,
        *,
        leader_elect: bool = True,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        lease_namespace: str = LEASE_NAMESPACE,
        setup_options: dict[str, Any] | None = None,
    ) -> None:
        import kray.crds  # noqa: F401  (registers the built-in kinds)

        self.name = name
        self.spec = spec
        self.setup_options = dict(setup_options or {})
        self.config = config
        self.leader_elect = leader_elect
        self.identity = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._timing = (lease_duration, renew_deadline, retry_period)
        self._lease_namespace = lease_namespace
        self.manager: Manager | None = None
        self.elector: LeaderElector | None = None
        self.error: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main: asyncio.Task[None] | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"kray-controller-{name}", daemon=True)
        self._thread.start()
        self._started.wait(30)

    # ---- the thread ----

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            self._main = loop.create_task(self._serve())
            loop.call_soon(self._started.set)
            loop.run_until_complete(self._main)
        except BaseException as exc:  # cancelled at stop(), or a build error
            if not isinstance(exc, asyncio.CancelledError):
                self.error = repr(exc)
                log.exception("controller %s failed", self.name)
        finally:
            self._started.set()
            loop.close()

    async def _serve(self) -> None:
        from kray.client.aio import AsyncClient

        async with AsyncClient(self.config) as client:
            manager = Manager(ClientListWatcher(client), client, name=self.name)
            build = resolve_spec(self.spec)
            if self.setup_options:  # only when given: a plain ``build(manager)`` keeps working
                build(manager, **self.setup_options)  # type: ignore[call-arg]
            else:
                build(manager)
            self.manager = manager
            if not self.leader_elect:
                await manager.run()
                return
            lease_duration, renew_deadline, retry_period = self._timing
            self.elector = LeaderElector(
                client,
                f"kray-controller-{self.name}",
                self._lease_namespace,
                self.identity,
                lease_duration=lease_duration,
                renew_deadline=renew_deadline,
                retry_period=retry_period,
                on_started_leading=self._lead,
                on_stopped_leading=manager.stop_controllers,
            )
            try:
                # Informers run on every replica (warm standby); workers only on the leader.
                await manager.start_informers(sync_timeout=None)
                await self.elector.run()
            finally:
                with contextlib.suppress(Exception):
                    await manager.stop()

    async def _lead(self) -> None:
        assert self.manager is not None
        await self.manager.wait_for_sync(None)
        self.manager.start_controllers()

    # ---- actor methods ----

    async def ready(self) -> bool:
        return self._main is not None and not self._main.done()

    async def status(self) -> dict[str, Any]:
        manager = self.manager
        controllers = dict(manager.controllers) if manager else {}
        return {
            "name": self.name,
            "identity": self.identity,
            "leader": self.elector.is_leader if self.elector else (manager is not None),
            "synced": manager.has_synced() if manager else False,
            "reconciles": {n: c.reconciles for n, c in controllers.items()},
            "errors": {n: c.errors for n, c in controllers.items()},
            "error": self.error,
        }

    async def stop(self) -> None:
        loop, main = self._loop, self._main
        if loop is not None and main is not None and not main.done():
            loop.call_soon_threadsafe(main.cancel)
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join, 10)


def deploy_controller(
    name: str,
    spec: str,
    config: KrayConfig,
    replicas: int = 1,
    leader_elect: bool = True,
    *,
    runtime_env: dict[str, Any] | None = None,
    **options: Any,
) -> list[Any]:
    """Create (or find) ``replicas`` detached controller actors in Ray namespace ``kray``.

    ``options`` go to ``ControllerActor`` (lease_duration, renew_deadline, retry_period,
    lease_namespace, and ``setup_options``: keyword arguments for a ``build(manager, **options)``).
    The spec is resolved here first, so a typo fails now, not in an actor.
    ``runtime_env`` is Ray's, for the actors only (pip packages, env vars, a remote working_dir
    URI); a local folder can only be shipped for the whole job: ``ray.init(runtime_env=...)``,
    whose actors inherit it (what ``kray controller run --path`` does).
    """
    if replicas < 1:
        raise ValueError("replicas must be >= 1")
    if replicas > 1 and not leader_elect:
        raise ValueError("more than one replica needs leader_elect=True")
    resolve_spec(spec)
    remote_cls = ray.remote(ControllerActor)
    extra: dict[str, Any] = {"runtime_env": runtime_env} if runtime_env else {}
    handles = []
    for i in range(replicas):
        handle = remote_cls.options(  # type: ignore[attr-defined]
            name=actor_name(name, i),
            namespace=RAY_NAMESPACE,
            lifetime="detached",
            max_restarts=-1,
            max_task_retries=-1,
            get_if_exists=True,
            num_cpus=0,
            max_concurrency=4,
            **extra,
        ).remote(name, spec, config, leader_elect=leader_elect, **options)
        handles.append(handle)
    return handles
