"""controller-runtime's builder: each call only records; ``complete`` validates, then wires.

    ControllerBuilder(manager).named("x").for_(Kind).owns(Child).watches(Other, mapper) \
        .with_workers(2).complete(reconciler)

- ``for_(Kind)``: an event on a Kind object enqueues that object's own key.
- ``owns(Child)``: an event on a Child enqueues its controller owner's key (the
  ownerReference with controller=true whose kind and group are the For kind's).
- ``watches(Kind, mapper)``: ``mapper(obj)`` returns the keys to enqueue.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kray.crds.meta import Resource
from kray.crds.registry import KindInfo, UnknownKindError

from .controller import Controller
from .informer import FuncHandler
from .reconciler import Reconciler, Request

if TYPE_CHECKING:
    from .manager import Manager

Mapper = Callable[[Resource], Iterable[Request]]
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class BuilderError(ValueError):
    """The builder was given an inconsistent description; the message lists every problem."""


def _group(api_version: str) -> str:
    return api_version.rpartition("/")[0]


def owner_mapper(owner: KindInfo, *, owner_namespaced: bool | None = None) -> Mapper:
    """Map a dependent to its controller owner's key when the owner is of kind ``owner``."""
    namespaced = owner.namespaced if owner_namespaced is None else owner_namespaced

    def mapper(obj: Resource) -> list[Request]:
        for ref in obj.metadata.owner_references or ():
            if ref.controller and ref.kind == owner.kind and _group(ref.api_version) == owner.group:
                return [Request(obj.metadata.namespace if namespaced else None, ref.name)]
        return []

    return mapper


def self_mapper(obj: Resource) -> list[Request]:
    return [Request.for_object(obj)]


@dataclass
class _Watch:
    kind: object
    mapper: Mapper | None
    role: str  # "for" | "owns" | "watches"


@dataclass
class ControllerBuilder:
    manager: Manager
    _name: str | None = None
    _workers: object = 1
    _watches: list[_Watch] = field(default_factory=list)
    _completed: bool = False

    def named(self, name: str) -> ControllerBuilder:
        self._name = name
        return self

    def for_(self, kind: type[Resource]) -> ControllerBuilder:
        self._watches.append(_Watch(kind, None, "for"))
        return self

    def owns(self, kind: type[Resource]) -> ControllerBuilder:
        self._watches.append(_Watch(kind, None, "owns"))
        return self

    def watches(self, kind: type[Resource], mapper: Mapper) -> ControllerBuilder:
        self._watches.append(_Watch(kind, mapper, "watches"))
        return self

    def with_workers(self, workers: int) -> ControllerBuilder:
        self._workers = workers
        return self

    # ---- the end ----

    def _info(self, kind: object, role: str, problems: list[str]) -> KindInfo | None:
        if not (isinstance(kind, type) and issubclass(kind, Resource)):
            problems.append(f"{role}({kind!r}): expected a Resource subclass (a kind model)")
            return None
        try:
            return self.manager.info_for(kind)
        except UnknownKindError as exc:
            problems.append(f"{role}({kind.__name__}): {exc} (register it with @kind or REGISTRY.register)")
            return None

    def _validate(self, reconciler: object) -> tuple[str, KindInfo | None, list[tuple[_Watch, KindInfo]]]:
        problems: list[str] = []
        if self._completed:
            raise BuilderError("complete() was already called on this builder")
        fors = [w for w in self._watches if w.role == "for"]
        if len(fors) > 1:
            problems.append(f"for_() was called {len(fors)} times; a controller reconciles exactly one kind")
        resolved: list[tuple[_Watch, KindInfo]] = []
        for w in self._watches:
            info = self._info(w.kind, "for_" if w.role == "for" else w.role, problems)
            if info is not None:
                resolved.append((w, info))
            if w.role == "watches" and not callable(w.mapper):
                problems.append(f"watches({getattr(w.kind, '__name__', w.kind)}): the mapper must be callable")
        for_info = next((i for w, i in resolved if w.role == "for"), None)
        if not fors and any(w.role == "owns" for w in self._watches):
            problems.append("owns() needs for_(): owned objects map to keys of the For kind")
        if not fors and not self._name:
            problems.append("a controller without for_() needs named()")
        if not self._watches:
            problems.append("nothing to watch: call for_() (and optionally owns()/watches())")
        name = self._name or (for_info.kind.lower() if for_info else "")
        if self._name is not None and not _NAME.match(self._name):
            problems.append(f"named({self._name!r}): use lowercase letters, digits and '-'")
        if name and name in self.manager.controllers:
            problems.append(f"a controller named {name!r} already exists in this manager")
        workers = self._workers
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            problems.append(f"with_workers({workers!r}): must be an int >= 1")
        fn = getattr(reconciler, "reconcile", None)
        if fn is None or not inspect.iscoroutinefunction(fn):
            problems.append(f"{reconciler!r} has no `async def reconcile(self, request) -> Result`")
        if problems:
            raise BuilderError("invalid controller " + repr(name or "?") + ":\n  - " + "\n  - ".join(problems))
        return name, for_info, resolved

    def complete(self, reconciler: Reconciler) -> Controller:
        name, for_info, resolved = self._validate(reconciler)
        self._completed = True
        assert isinstance(self._workers, int)
        controller = Controller(name, reconciler, workers=self._workers, clock=self.manager.clock)
        for w, info in resolved:
            if w.role == "for":
                mapper: Mapper = self_mapper
            elif w.role == "owns":
                assert for_info is not None
                mapper = owner_mapper(for_info)
            else:
                assert w.mapper is not None
                mapper = w.mapper
            self.manager.informer_for(info).add_handler(_enqueue_handler(controller, mapper))
        self.manager.add_controller(controller)
        return controller


def _enqueue_handler(controller: Controller, mapper: Mapper) -> FuncHandler:
    def enqueue(obj: Resource) -> None:
        for request in mapper(obj):
            controller.enqueue(request)

    def update(old: Resource, new: Resource) -> None:
        # Both: a changed owner reference must wake the old owner as well as the new one.
        keys = set(mapper(new))
        if old is not new:
            keys.update(mapper(old))
        for request in sorted(keys, key=str):
            controller.enqueue(request)

    return FuncHandler(add=enqueue, update=update, delete=enqueue)
