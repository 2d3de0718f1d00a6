"""The plugin framework: one small Protocol per extension point, and the runner that calls them.

Mirrors kube-scheduler's framework: plugins return a Status (the runner turns exceptions into
ERROR), keep per-pod state in the CycleState, and get a Handle to the scheduler's shared state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from .cache import SchedulerCache, Snapshot
from .cycle_state import CycleState
from .node_info import NodeInfo
from .pod_info import PodInfo
from .ports import Binder, Clock
from .queue import ClusterEvent
from .status import SUCCESS, Code, Status
from .volumes import VolumeClient

log = logging.getLogger(__name__)

MAX_NODE_SCORE = 100
MAX_PERMIT_WAIT = 15 * 60.0  # kube-scheduler's cap on any Permit timeout


@runtime_checkable
class PreFilterPlugin(Protocol):
    name: str

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status: ...


@runtime_checkable
class FilterPlugin(Protocol):
    name: str

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status: ...


@dataclass
class PostFilterResult:
    nominated_node: str | None = None
    victims: list[PodInfo] = field(default_factory=list)


@runtime_checkable
class PostFilterPlugin(Protocol):
    name: str

    def post_filter(
        self, state: CycleState, pod: PodInfo, statuses: dict[str, Status]
    ) -> tuple[PostFilterResult | None, Status]: ...


@runtime_checkable
class PreScorePlugin(Protocol):
    name: str

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status: ...


@runtime_checkable
class ScorePlugin(Protocol):
    name: str

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int: ...


@runtime_checkable
class ScoreExtensions(Protocol):
    def normalize_score(self, state: CycleState, pod: PodInfo, scores: dict[str, int]) -> None: ...


@runtime_checkable
class ReservePlugin(Protocol):
    name: str

    def reserve(self, state: CycleState, pod: PodInfo, node_name: str) -> Status: ...

    def unreserve(self, state: CycleState, pod: PodInfo, node_name: str) -> None: ...


@runtime_checkable
class PermitPlugin(Protocol):
    name: str

    def permit(self, state: CycleState, pod: PodInfo, node_name: str) -> tuple[Status, float]: ...


@runtime_checkable
class PreBindPlugin(Protocol):
    name: str

    async def pre_bind(self, state: CycleState, pod: PodInfo, node_name: str) -> Status: ...


@runtime_checkable
class BindPlugin(Protocol):
    name: str

    async def bind(self, state: CycleState, pod: PodInfo, node_name: str) -> Status: ...


@runtime_checkable
class EnqueueExtensions(Protocol):
    def events_to_register(self) -> list[ClusterEvent]: ...


# KubeSchedulerConfiguration's names for the extension points (profiles enable and disable
# plugins per point), in the order a pod passes them.
EXTENSION_POINTS: dict[str, type] = {
    "preFilter": PreFilterPlugin,
    "filter": FilterPlugin,
    "postFilter": PostFilterPlugin,
    "preScore": PreScorePlugin,
    "score": ScorePlugin,
    "reserve": ReservePlugin,
    "permit": PermitPlugin,
    "preBind": PreBindPlugin,
    "bind": BindPlugin,
}


class WaitingPod:
    """A reserved pod held at Permit until every waiting plugin allows it, one rejects, or time runs out."""

    def __init__(self, pod: PodInfo, node_name: str, state: CycleState, pending: dict[str, float]) -> None:
        self.pod, self.node_name, self.state = pod, node_name, state
        self.pending = pending  # plugin -> deadline
        self.rejection: Status | None = None

    def allow(self, plugin: str) -> None:
        self.pending.pop(plugin, None)

    def reject(self, plugin: str, message: str) -> None:
        if self.rejection is None:
            self.rejection = Status.unschedulable(message, plugin=plugin)

    @property
    def done(self) -> bool:
        return self.rejection is not None or not self.pending


class Handle(Protocol):
    """What plugins may use of the scheduler (kube's framework.Handle)."""

    cache: SchedulerCache
    snapshot: Snapshot
    clock: Clock
    binder: Binder | None
    # Writes PVCs and PVs for VolumeBinding's PreBind (None: pods with unbound claims cannot bind).
    volume_client: VolumeClient | None

    def waiting_pods(self) -> Iterable[WaitingPod]: ...

    def get_waiting_pod(self, key: str) -> WaitingPod | None: ...

    def filters(self, state: CycleState) -> list[Any]: ...

    def run_filters(self, filters: list[Any], state: CycleState, pod: PodInfo, node: NodeInfo) -> Status: ...


PluginFactory = Callable[[dict[str, Any], Handle], Any]


def plugin_name(plugin: Any) -> str:
    return str(plugin.name)


def _call(plugin: Any, method: str, *args: Any) -> Any:
    try:
        return getattr(plugin, method)(*args)
    except Exception as exc:  # a plugin bug must not kill the loop: it becomes ERROR
        log.exception("plugin %s.%s failed", plugin.name, method)
        return Status.error(f"plugin {plugin.name} {method}: {exc!r}", plugin=plugin.name)


class Framework:
    """Runs a profile's plugins at each extension point. Also the Handle plugins are given."""

    def __init__(
        self,
        cache: SchedulerCache,
        snapshot: Snapshot,
        clock: Clock,
        binder: Binder | None = None,
        volume_client: VolumeClient | None = None,
    ) -> None:
        self.cache, self.snapshot, self.clock, self.binder = cache, snapshot, clock, binder
        self.volume_client = volume_client
        self.plugins: list[Any] = []
        self.weights: dict[str, int] = {}
        self.waiting: dict[str, WaitingPod] = {}
        self.by_point: dict[type, list[Any]] = {}
        self._points: dict[str, frozenset[str] | None] = {}

    def add_plugin(self, plugin: Any, weight: int = 1, points: frozenset[str] | None = None) -> None:
        """Run ``plugin`` at every extension point it implements, or only at ``points`` (names
        as in KubeSchedulerConfiguration: "filter", "score", ...)."""
        self.plugins.append(plugin)
        self.weights[plugin.name] = weight
        self._points[plugin.name] = points
        self.by_point = {
            kind: [p for p in self.plugins if isinstance(p, kind) and self._runs_at(plugin_name(p), point)]
            for point, kind in EXTENSION_POINTS.items()
        }

    def _runs_at(self, plugin: str, point: str) -> bool:
        allowed = self._points.get(plugin)
        return allowed is None or point in allowed

    def points(self, kind: type) -> list[Any]:
        return self.by_point.get(kind, [])

    def plugin(self, name: str) -> Any:
        return next((p for p in self.plugins if p.name == name), None)

    def events_to_register(self) -> dict[str, list[ClusterEvent]]:
        return {p.name: p.events_to_register() for p in self.plugins if isinstance(p, EnqueueExtensions)}  # type: ignore[attr-defined]

    # --- Handle -----------------------------------------------------------------------------
    def waiting_pods(self) -> Iterable[WaitingPod]:
        return list(self.waiting.values())

    def get_waiting_pod(self, key: str) -> WaitingPod | None:
        return self.waiting.get(key)

    # --- scheduling cycle -------------------------------------------------------------------
    def run_pre_filter(self, state: CycleState, pod: PodInfo) -> Status:
        for p in self.points(PreFilterPlugin):
            s: Status = _call(p, "pre_filter", state, pod)
            if s.code is Code.SKIP:
                state.skip_filter.add(p.name)
            elif not s.ok:
                return s.with_plugin(p.name)
        return SUCCESS

    def filters(self, state: CycleState) -> list[Any]:
        return [p for p in self.points(FilterPlugin) if p.name not in state.skip_filter]

    @staticmethod
    def run_filters(filters: list[Any], state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        for p in filters:
            try:
                s: Status = p.filter(state, pod, node)
            except Exception as exc:
                log.exception("plugin %s.filter failed", p.name)
                return Status.error(f"plugin {p.name} filter: {exc!r}", plugin=p.name)
            if s.code is not Code.SUCCESS:
                return s.with_plugin(p.name)
        return SUCCESS

    def run_post_filter(
        self, state: CycleState, pod: PodInfo, statuses: dict[str, Status]
    ) -> tuple[PostFilterResult | None, Status]:
        last = Status.unschedulable()
        for p in self.points(PostFilterPlugin):
            out = _call(p, "post_filter", state, pod, statuses)
            if isinstance(out, Status):
                return None, out
            result, s = out
            if s.ok:
                return result, s
            if s.code is Code.ERROR:
                return None, s.with_plugin(p.name)
            last = s.with_plugin(p.name)
        return None, last

    def run_pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status:
        for p in self.points(PreScorePlugin):
            s: Status = _call(p, "pre_score", state, pod, nodes)
            if s.code is Code.SKIP:
                state.skip_score.add(p.name)
            elif not s.ok:
                return s.with_plugin(p.name)
        return SUCCESS

    def run_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> dict[str, int] | Status:
        totals = dict.fromkeys((n.name for n in nodes), 0)
        for p in self.points(ScorePlugin):
            if p.name in state.skip_score:
                continue
            try:
                scores = {n.name: p.score(state, pod, n) for n in nodes}
                if isinstance(p, ScoreExtensions):
                    p.normalize_score(state, pod, scores)
            except Exception as exc:
                log.exception("plugin %s.score failed", p.name)
                return Status.error(f"plugin {p.name} score: {exc!r}", plugin=p.name)
            weight = self.weights.get(p.name, 1)
            for name, v in scores.items():
                totals[name] += v * weight
        return totals

    def run_reserve(self, state: CycleState, pod: PodInfo, node_name: str) -> Status:
        for p in self.points(ReservePlugin):
            s: Status = _call(p, "reserve", state, pod, node_name)
            if not s.ok:
                return s.with_plugin(p.name)
        return SUCCESS

    def run_unreserve(self, state: CycleState, pod: PodInfo, node_name: str) -> None:
        # Every Reserve plugin, in reverse, whether or not its reserve ran: unreserve is idempotent.
        for p in reversed(self.points(ReservePlugin)):
            _call(p, "unreserve", state, pod, node_name)

    def run_permit(self, state: CycleState, pod: PodInfo, node_name: str) -> Status:
        pending: dict[str, float] = {}
        now = self.clock.now()
        for p in self.points(PermitPlugin):
            out = _call(p, "permit", state, pod, node_name)
            s, timeout = (out, 0.0) if isinstance(out, Status) else out
            if s.code is Code.WAIT:
                pending[p.name] = now + min(timeout, MAX_PERMIT_WAIT)
            elif not s.ok:
                return s.with_plugin(p.name)
        if pending:
            self.waiting[pod.key] = WaitingPod(pod, node_name, state, pending)
            return Status.wait(plugin=next(iter(pending)))
        return SUCCESS

    def take_finished_waiting(self) -> list[WaitingPod]:
        """Waiting pods now allowed or rejected (timeouts become rejections), removed from the set."""
        now = self.clock.now()
        done = []
        for key, wp in list(self.waiting.items()):
            for plugin, deadline in list(wp.pending.items()):
                if deadline <= now and wp.rejection is None:
                    wp.reject(plugin, f"rejected due to timeout after waiting at plugin {plugin}")
            if wp.done:
                done.append(wp)
                del self.waiting[key]
        return done

    # --- binding cycle ----------------------------------------------------------------------
    async def run_pre_bind(self, state: CycleState, pod: PodInfo, node_name: str) -> Status:
        for p in self.points(PreBindPlugin):
            try:
                s: Status = await p.pre_bind(state, pod, node_name)
            except Exception as exc:
                return Status.error(f"plugin {p.name} pre_bind: {exc!r}", plugin=p.name)
            if not s.ok:
                return s.with_plugin(p.name)
        return SUCCESS

    async def run_bind(self, state: CycleState, pod: PodInfo, node_name: str) -> Status:
        for p in self.points(BindPlugin):
            try:
                s: Status = await p.bind(state, pod, node_name)
            except Exception as exc:
                return Status.error(f"plugin {p.name} bind: {exc!r}", plugin=p.name)
            if s.code is not Code.SKIP:
                return s.with_plugin(p.name)
        return Status.error("no bind plugin bound the pod")
