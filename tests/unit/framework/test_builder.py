"""ControllerBuilder: records calls, validates once at complete(), with clear messages."""

from __future__ import annotations

import pytest

from kray.actors.framework import BuilderError, ControllerBuilder, FakeClock, Manager, Request, Result
from kray.actors.framework.builder import owner_mapper
from kray.crds import REGISTRY, ConfigMap, Namespace, ObjectMeta, OwnerReference, Pod, Resource
from kray.crds.core import Secret


class Noop:
    async def reconcile(self, request: Request) -> Result:
        return Result()


class NotAsync:
    def reconcile(self, request: Request) -> Result:
        return Result()


class Unregistered(Resource):
    KIND = "Unregistered"
    PLURAL = "unregistereds"


@pytest.fixture
def manager(lw, client) -> Manager:  # type: ignore[no-untyped-def]
    return Manager(lw, client, clock=FakeClock())


def test_complete_wires_informers_and_registers(manager: Manager) -> None:
    c = ControllerBuilder(manager).for_(Namespace).owns(ConfigMap).with_workers(3).complete(Noop())
    assert c.name == "namespace"
    assert c.workers == 3
    assert manager.controllers["namespace"] is c
    assert {k[1] for k in manager.informers} == {"Namespace", "ConfigMap"}


def test_informers_are_shared_between_controllers(manager: Manager) -> None:
    ControllerBuilder(manager).named("a").for_(ConfigMap).complete(Noop())
    ControllerBuilder(manager).named("b").for_(Secret).owns(ConfigMap).complete(Noop())
    assert sorted(k[1] for k in manager.informers) == ["ConfigMap", "Secret"]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda b: b.complete(Noop()), "nothing to watch"),
        (lambda b: b.for_(Pod).for_(ConfigMap).complete(Noop()), "for_() was called 2 times"),
        (lambda b: b.owns(Pod).complete(Noop()), "owns() needs for_()"),
        (lambda b: b.for_(Unregistered).complete(Noop()), "for_(Unregistered)"),
        (lambda b: b.for_(dict).complete(Noop()), "expected a Resource subclass"),
        (lambda b: b.for_(Pod).with_workers(0).complete(Noop()), "with_workers(0)"),
        (lambda b: b.for_(Pod).named("Bad_Name").complete(Noop()), "named('Bad_Name')"),
        (lambda b: b.for_(Pod).complete(NotAsync()), "async def reconcile"),
        (lambda b: b.for_(Pod).watches(ConfigMap, None).complete(Noop()), "mapper must be callable"),
        (lambda b: b.watches(ConfigMap, lambda o: []).complete(Noop()), "needs named()"),
    ],
)
def test_validation_errors(manager: Manager, build, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BuilderError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build(ControllerBuilder(manager))
    assert manager.controllers == {}, "nothing is wired when validation fails"
    assert manager.informers == {}


def test_all_problems_are_reported_together(manager: Manager) -> None:
    with pytest.raises(BuilderError) as err:
        ControllerBuilder(manager).owns(Pod).with_workers(-1).complete(NotAsync())  # type: ignore[arg-type]
    text = str(err.value)
    assert "owns() needs for_()" in text and "with_workers(-1)" in text and "async def reconcile" in text


def test_duplicate_name_and_double_complete(manager: Manager) -> None:
    b = ControllerBuilder(manager).for_(Pod)
    b.complete(Noop())
    with pytest.raises(BuilderError, match="already called"):
        b.complete(Noop())
    with pytest.raises(BuilderError, match="already exists"):
        ControllerBuilder(manager).for_(Pod).complete(Noop())


def test_owner_mapper_matches_controller_ref_of_the_for_kind() -> None:
    ns_info = REGISTRY.for_model(Namespace)
    pod_info = REGISTRY.for_model(Pod)
    cm = ConfigMap(metadata=ObjectMeta(name="c", namespace="team"))
    ref = OwnerReference(api_version="v1", kind="Namespace", name="team", uid="u1", controller=True)
    cm.metadata.owner_references = [ref]
    assert owner_mapper(ns_info)(cm) == [Request(None, "team")]  # cluster-scoped owner: no namespace
    ref.kind = "Pod"
    ref.name = "p"
    assert owner_mapper(pod_info)(cm) == [Request("team", "p")]
    ref.controller = False
    assert owner_mapper(pod_info)(cm) == [], "only the controller reference counts"
    ref.controller, ref.api_version = True, "apps/v1"
    assert owner_mapper(pod_info)(cm) == [], "same kind name in another group is not the owner"
