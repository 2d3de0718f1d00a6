"""Kubernetes' Priority admission plug-in.

On Pod CREATE, ``spec.priorityClassName`` is resolved to ``spec.priority`` and
``spec.preemptionPolicy``; with no name, the ``globalDefault: true`` class applies (and its name
is written into the pod), and with no default either the priority is 0. The two built-in classes
``system-cluster-critical`` and ``system-node-critical`` resolve whether or not they are stored.
Refused, as kube-apiserver does, with 403 Forbidden: an unknown class, and a client-set
``priority`` or ``preemptionPolicy`` that disagrees with the class. Also on PriorityClass CREATE
and UPDATE: at most one class may be the global default.

Classes are cached (as the real plug-in's informer does) so a pod create costs no store read:
the cache is written through by this server's own PriorityClass writes, so a class is usable the
moment its create returns; a name the cache lacks is read live, and the whole set is re-listed
after ``ttl`` seconds (writes that bypassed this server show up by then).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from kray.actors.store.kv import KeyNotFoundError
from kray.crds import Pod
from kray.crds.registry import KindInfo
from kray.crds.scheduling import PriorityClass

from .admission import AdmissionDenied, AdmissionRequest

if TYPE_CHECKING:
    from kray.actors.store.objects import ObjectStore

SYSTEM_CLUSTER_CRITICAL = "system-cluster-critical"
SYSTEM_NODE_CRITICAL = "system-node-critical"
# kube's scheduling.SystemCriticalPriority (2e9) and the node-critical class one thousand above.
SYSTEM_CRITICAL_PRIORITY = 2_000_000_000
BUILTIN_PRIORITY_CLASSES: dict[str, int] = {
    SYSTEM_CLUSTER_CRITICAL: SYSTEM_CRITICAL_PRIORITY,
    SYSTEM_NODE_CRITICAL: SYSTEM_CRITICAL_PRIORITY + 1000,
}
DEFAULT_PREEMPTION_POLICY: Final = "PreemptLowerPriority"


def builtin_class(name: str) -> PriorityClass:
    return PriorityClass.model_validate(
        {
            "metadata": {"name": name},
            "value": BUILTIN_PRIORITY_CLASSES[name],
            "description": "Used for system critical pods that must not be moved from their current node.",
        }
    )


class PriorityAdmission:
    def __init__(self, store: ObjectStore, class_info: Callable[[], KindInfo], ttl: float = 5.0) -> None:
        self._store = store
        self._class_info = class_info
        self._ttl = ttl
        self._classes: dict[str, PriorityClass] = {}
        self._listed_at: float | None = None  # monotonic time of the last full list

    def observe(self, name: str, obj: PriorityClass | None) -> None:
        """Record a class this server wrote (None: deleted)."""
        if obj is None:
            self._classes.pop(name, None)
        else:
            self._classes[name] = obj

    async def _cached(self) -> dict[str, PriorityClass]:
        now = time.monotonic()
        if self._listed_at is None or now - self._listed_at > self._ttl:
            classes, _ = await self._store.list(self._class_info())
            self._classes = {pc.metadata.name or "": pc for pc in classes if isinstance(pc, PriorityClass)}
            self._listed_at = now
        return self._classes

    async def admit(self, request: AdmissionRequest) -> None:
        info = request.kind
        if request.operation == "DELETE" or request.subresource:
            return
        if info.group == "" and info.kind == "Pod" and request.operation == "CREATE":
            assert isinstance(request.object, Pod)
            await self._admit_pod(request.object, request.name)
        elif info.group == PriorityClass.GROUP and info.kind == PriorityClass.KIND:
            assert isinstance(request.object, PriorityClass)
            await self._admit_class(request.object)

    async def _admit_pod(self, pod: Pod, name: str) -> None:
        spec = pod.spec
        if spec.priority_class_name:
            pc = await self._get(spec.priority_class_name)
            if pc is None:
                raise AdmissionDenied(
                    f'pods "{name}" is forbidden: spec.priorityClassName: Not found: '
                    f'"{spec.priority_class_name}": no PriorityClass with name {spec.priority_class_name} was found'
                )
        else:
            pc = await self._global_default()
        value = pc.value if pc is not None else 0
        policy = pc.preemption_policy if pc is not None else DEFAULT_PREEMPTION_POLICY
        if spec.priority is not None and spec.priority != value:
            raise AdmissionDenied(
                f'pods "{name}" is forbidden: spec.priority: the integer value of priority ({spec.priority}) '
                f"must not be provided in pod spec; priority admission controller computed {value} from the "
                "given PriorityClass name"
            )
        if spec.preemption_policy is not None and spec.preemption_policy != policy:
            raise AdmissionDenied(
                f'pods "{name}" is forbidden: spec.preemptionPolicy: the string value of PreemptionPolicy '
                f"({spec.preemption_policy}) must not be provided in pod spec; priority admission controller "
                f"computed {policy} from the given PriorityClass name"
            )
        spec.priority, spec.preemption_policy = value, policy
        if pc is not None:
            spec.priority_class_name = pc.metadata.name

    async def _admit_class(self, pc: PriorityClass) -> None:
        if not pc.global_default:
            return
        other = await self._global_default()
        if other is not None and other.metadata.name != pc.metadata.name:
            raise AdmissionDenied(
                f'priorityclasses.scheduling.k8s.io "{pc.metadata.name}" is forbidden: PriorityClass '
                f"{other.metadata.name} is already marked as default. Only one default can exist"
            )

    async def _get(self, name: str) -> PriorityClass | None:
        cached = (await self._cached()).get(name)
        if cached is not None:
            return cached
        try:  # not seen yet (written around this server): read it live
            pc = await self._store.get(self._class_info(), None, name)
        except KeyNotFoundError:
            return builtin_class(name) if name in BUILTIN_PRIORITY_CLASSES else None
        assert isinstance(pc, PriorityClass)
        self._classes[name] = pc
        return pc

    async def _global_default(self) -> PriorityClass | None:
        """The default class; with several (made before this check existed), the lowest value, as kube."""
        defaults = [pc for pc in (await self._cached()).values() if pc.global_default]
        return min(defaults, key=lambda pc: (pc.value, pc.metadata.name or ""), default=None)
