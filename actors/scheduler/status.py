"""Plugin outcomes: a code plus human-readable reasons, as kube-scheduler's framework.Status.

Plugins return a Status and never raise; the framework turns an exception into ERROR so one
bad plugin cannot kill the scheduling loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Code(IntEnum):
    SUCCESS = 0
    ERROR = 1
    # The pod does not fit now; preemption (PostFilter) may help.
    UNSCHEDULABLE = 2
    # The pod can never fit this node (wrong labels, node name): preemption would not help.
    UNSCHEDULABLE_AND_UNRESOLVABLE = 3
    # Permit only: hold the pod (reserved) until another plugin allows or rejects it.
    WAIT = 4
    # PreFilter/PreScore only: this plugin has nothing to do for this pod; skip its Filter/Score.
    SKIP = 5


@dataclass(frozen=True, slots=True)
class Status:
    code: Code = Code.SUCCESS
    reasons: tuple[str, ...] = ()
    plugin: str = ""

    @classmethod
    def unschedulable(cls, *reasons: str, plugin: str = "") -> Status:
        return cls(Code.UNSCHEDULABLE, reasons, plugin)

    @classmethod
    def unresolvable(cls, *reasons: str, plugin: str = "") -> Status:
        return cls(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, reasons, plugin)

    @classmethod
    def error(cls, *reasons: str, plugin: str = "") -> Status:
        return cls(Code.ERROR, reasons, plugin)

    @classmethod
    def wait(cls, *reasons: str, plugin: str = "") -> Status:
        return cls(Code.WAIT, reasons, plugin)

    @property
    def ok(self) -> bool:
        return self.code is Code.SUCCESS

    @property
    def rejected(self) -> bool:
        """Unschedulable either way (the pod goes back to the queue, not an error)."""
        return self.code in (Code.UNSCHEDULABLE, Code.UNSCHEDULABLE_AND_UNRESOLVABLE)

    @property
    def message(self) -> str:
        return ", ".join(self.reasons)

    def with_plugin(self, plugin: str) -> Status:
        return self if self.plugin else Status(self.code, self.reasons, plugin)


SUCCESS = Status()
SKIP = Status(Code.SKIP)
