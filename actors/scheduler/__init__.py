"""kray's scheduler core: kube-scheduler's framework, cache, queue and plugins, in pure Python.

No Ray and no I/O here: the shard actor wraps ``Scheduler`` and feeds it watch events; bindings
and status updates leave through the ports in ``ports.py``.
"""

from .cache import SchedulerCache, Snapshot
from .cycle_state import CycleState
from .fakes import FakeBinder, RecordingReporter
from .framework import Framework, PostFilterResult, WaitingPod
from .node_info import NodeInfo
from .pod_info import PodInfo
from .ports import Binder, Clock, Evictor, FakeClock, StatusReporter, SystemClock
from .profile import PluginSpec, Profile
from .queue import ClusterEvent, QueuedPodInfo, SchedulingQueue
from .scheduler import Binding, Scheduler, fit_error_message
from .sharding import Shard, shard_of
from .status import Code, Status

__all__ = [
    "Binder",
    "Binding",
    "Clock",
    "ClusterEvent",
    "Code",
    "CycleState",
    "Evictor",
    "FakeBinder",
    "FakeClock",
    "Framework",
    "NodeInfo",
    "PluginSpec",
    "PodInfo",
    "PostFilterResult",
    "Profile",
    "QueuedPodInfo",
    "RecordingReporter",
    "Scheduler",
    "SchedulerCache",
    "SchedulingQueue",
    "Shard",
    "Snapshot",
    "Status",
    "StatusReporter",
    "SystemClock",
    "WaitingPod",
    "fit_error_message",
    "shard_of",
]
