"""The reconciler framework: informers, work queues, controllers, leader election.

Plain asyncio classes handed their ports (``ports.py``); Ray appears only in ``hosting.py``.
The public surface for extension authors is ``kray.api``.
"""

from .builder import BuilderError, ControllerBuilder
from .cache import NAMESPACE_INDEX, NODE_NAME_INDEX, OWNER_UID_INDEX, Indexer, key_of
from .controller import Controller
from .informer import EventHandler, FuncHandler, Informer
from .leader import LeaderElector
from .manager import CacheReader, Manager
from .ports import (
    ClientListWatcher,
    Clock,
    FakeClock,
    ListWatcher,
    Reader,
    ResourceExpired,
    StoreListWatcher,
    SystemClock,
    WatchEvent,
    Writer,
)
from .reconciler import (
    AlreadyOwnedError,
    EventRecorder,
    Reconciler,
    Request,
    Result,
    TerminalError,
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
from .workqueue import ExponentialBackoff, ShutDown, WorkQueue

__all__ = [
    "NAMESPACE_INDEX",
    "NODE_NAME_INDEX",
    "OWNER_UID_INDEX",
    "AlreadyOwnedError",
    "BuilderError",
    "CacheReader",
    "ClientListWatcher",
    "Clock",
    "Controller",
    "ControllerBuilder",
    "EventHandler",
    "EventRecorder",
    "ExponentialBackoff",
    "FakeClock",
    "FuncHandler",
    "Indexer",
    "Informer",
    "LeaderElector",
    "ListWatcher",
    "Manager",
    "Reader",
    "Reconciler",
    "Request",
    "ResourceExpired",
    "Result",
    "ShutDown",
    "StoreListWatcher",
    "SystemClock",
    "TerminalError",
    "WatchEvent",
    "WorkQueue",
    "Writer",
    "add_finalizer",
    "controller_of",
    "get_condition",
    "has_finalizer",
    "key_of",
    "owned_by",
    "owner_reference",
    "record_event",
    "remove_finalizer",
    "set_condition",
    "set_controller_reference",
]
