"""kray's public extension surface: what you need to write and run your own controllers.

    from kray.api import ControllerBuilder, Manager, Request, Result, deploy_controller

    class MyReconciler:
        def __init__(self, manager: Manager) -> None:
            self.reader, self.writer = manager.reader, manager.writer

        async def reconcile(self, request: Request) -> Result:
            ...  # read desired state, converge, return Result() (or requeue_after=...)

    def build(manager: Manager) -> None:
        ControllerBuilder(manager).for_(MyKind).owns(Pod).complete(MyReconciler(manager))

    deploy_controller("my-controller", "mypkg.controllers:build", config, replicas=2)

A kind of your own is a ``Resource`` subclass decorated with ``@kind`` (see
``examples/operator/tensorboard_operator.py``); the CLI equivalent of ``deploy_controller`` is
``kray controller run mypkg.controllers:build --path DIR``.

The machinery lives in ``kray.actors.framework``; this module only re-exports it. Importing
it does not import Ray (``deploy_controller`` loads it on first call).
"""

from __future__ import annotations

from typing import Any

from kray.actors.framework import (
    AlreadyOwnedError,
    BuilderError,
    CacheReader,
    ClientListWatcher,
    Clock,
    Controller,
    ControllerBuilder,
    EventHandler,
    EventRecorder,
    ExponentialBackoff,
    FakeClock,
    FuncHandler,
    Indexer,
    Informer,
    LeaderElector,
    ListWatcher,
    Manager,
    Reader,
    Reconciler,
    Request,
    ResourceExpired,
    Result,
    StoreListWatcher,
    SystemClock,
    TerminalError,
    WorkQueue,
    Writer,
    add_finalizer,
    controller_of,
    get_condition,
    has_finalizer,
    owned_by,
    owner_reference,
    record_event,
    remove_finalizer,
    set_condition,
    set_controller_reference,
)
from kray.client.errors import AlreadyExists, Conflict, NotFound
from kray.config import KrayConfig
from kray.crds.meta import Condition, KrayModel, ObjectMeta, Resource
from kray.crds.registry import kind


def deploy_controller(
    name: str, spec: str, config: KrayConfig, replicas: int = 1, leader_elect: bool = True, **options: Any
) -> list[Any]:
    """Run a controller as ``replicas`` detached Ray actors (see ``actors.framework.hosting``)."""
    from kray.actors.framework.hosting import deploy_controller as deploy

    return deploy(name, spec, config, replicas, leader_elect, **options)


__all__ = [
    "AlreadyExists",
    "AlreadyOwnedError",
    "BuilderError",
    "CacheReader",
    "ClientListWatcher",
    "Clock",
    "Condition",
    "Conflict",
    "Controller",
    "ControllerBuilder",
    "EventHandler",
    "EventRecorder",
    "ExponentialBackoff",
    "FakeClock",
    "FuncHandler",
    "Indexer",
    "Informer",
    "KrayConfig",
    "KrayModel",
    "LeaderElector",
    "ListWatcher",
    "Manager",
    "NotFound",
    "ObjectMeta",
    "Reader",
    "Reconciler",
    "Request",
    "Resource",
    "ResourceExpired",
    "Result",
    "StoreListWatcher",
    "SystemClock",
    "TerminalError",
    "WorkQueue",
    "Writer",
    "add_finalizer",
    "controller_of",
    "deploy_controller",
    "get_condition",
    "has_finalizer",
    "kind",
    "owned_by",
    "owner_reference",
    "record_event",
    "remove_finalizer",
    "set_condition",
    "set_controller_reference",
]
