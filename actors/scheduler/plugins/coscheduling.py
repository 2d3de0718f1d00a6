"""Coscheduling: gang scheduling with PodGroups (all of a gang's pods bind, or none do).

- PreFilter: a member of a group with fewer than minMember known pods cannot start; nor can one
  whose PodGroup does not exist.
- Permit: reserved members WAIT until minMember of the group are placed (assumed or bound), then
  the last one allows every waiting sibling at once.
- Unreserve (a member rejected or timed out) and PostFilter (a member fits nowhere) reject every
  waiting sibling, so a gang that cannot complete gives its reservations back instead of holding
  them until timeout (two half-placed gangs would otherwise deadlock each other).
"""

from __future__ import annotations

from typing import Any

from kray.crds.scheduling import PodGroup

from ..cycle_state import CycleState
from ..framework import Handle, PostFilterResult
from ..pod_info import PodInfo
from ..queue import POD_ADD, POD_DELETE, POD_GROUP_ADD, UNSCHEDULED_POD_ADD, ClusterEvent
from ..status import SKIP, SUCCESS, Status

NAME = "Coscheduling"
DEFAULT_TIMEOUT = 60.0


class Coscheduling:
    name = NAME

    def __init__(self, args: dict[str, Any] | None = None, handle: Handle | None = None) -> None:
        if handle is None:
            raise ValueError("Coscheduling needs a handle (cache and waiting pods)")
        self.handle = handle
        self.default_timeout = float((args or {}).get("permitWaitingTimeSeconds", DEFAULT_TIMEOUT))

    def _group(self, pod: PodInfo) -> PodGroup | None:
        return self.handle.cache.pod_groups.get(pod.group_key) if pod.group_key else None

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status:
        if not pod.group_key:
            return SKIP
        pg = self._group(pod)
        if pg is None:
            return Status.unresolvable(f'PodGroup "{pod.group_key}" not found')
        known = len(self.handle.cache.group_members.get(pod.group_key, ()))
        if known < pg.spec.min_member:
            return Status.unresolvable(
                f"pre-filter pod {pod.name} cannot find enough sibling pods, "
                f"current pods number: {known}, minMember of group: {pg.spec.min_member}"
            )
        return SKIP  # nothing to check per node

    def post_filter(
        self, state: CycleState, pod: PodInfo, statuses: dict[str, Status]
    ) -> tuple[PostFilterResult | None, Status]:
        if not pod.group_key:
            return None, Status.unschedulable()
        rejected = self._reject_siblings(pod, f"sibling {pod.name} of PodGroup {pod.group_key} is unschedulable")
        return None, Status.unschedulable(
            f"PodGroup {pod.group_key} gets rejected due to Pod {pod.name} is unschedulable "
            f"({rejected} waiting member(s) released)"
        )

    def reserve(self, state: CycleState, pod: PodInfo, node_name: str) -> Status:
        return SUCCESS

    def unreserve(self, state: CycleState, pod: PodInfo, node_name: str) -> None:
        if pod.group_key:
            self._reject_siblings(pod, f"sibling {pod.name} of PodGroup {pod.group_key} was unreserved")

    def permit(self, state: CycleState, pod: PodInfo, node_name: str) -> tuple[Status, float]:
        pg = self._group(pod)
        if pg is None or pod.group_key is None:
            return SUCCESS, 0.0
        placed = len(self.handle.cache.group_placed.get(pod.group_key, ()))
        if placed >= pg.spec.min_member:
            for wp in self.handle.waiting_pods():
                if wp.pod.group_key == pod.group_key:
                    wp.allow(NAME)
            return SUCCESS, 0.0
        timeout = float(pg.spec.schedule_timeout_seconds or self.default_timeout)
        return Status.wait(f"waiting for {pg.spec.min_member - placed} more member(s) of {pod.group_key}"), timeout

    def _reject_siblings(self, pod: PodInfo, message: str) -> int:
        n = 0
        for wp in self.handle.waiting_pods():
            if wp.pod.group_key == pod.group_key and wp.pod.key != pod.key and wp.rejection is None:
                wp.reject(NAME, message)
                n += 1
        return n

    def events_to_register(self) -> list[ClusterEvent]:
        return [POD_ADD, POD_DELETE, POD_GROUP_ADD, UNSCHEDULED_POD_ADD]
