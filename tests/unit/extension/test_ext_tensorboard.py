"""The example TensorBoard operator on the in-memory cluster (ApiServer over MemoryKV, via ASGI):
children, status, events, repair of deleted/edited children, spec changes, the finalizer, a
stale-cache conflict, and its CRD manifest agreeing with its pydantic model."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
import yaml

import kray.crds  # noqa: F401  (registers the built-in kinds)
from kray.actors.apiserver import ApiServer
from kray.actors.framework import FakeClock, Manager, Request, StoreListWatcher, set_condition
from kray.actors.store import MemoryKV, ObjectStore
from kray.client import AsyncClient, NotFound
from kray.crds import Event, ObjectMeta, Service
from kray.crds.apiextensions import model_from_crd
from kray.crds.apps import ReplicaSet, ReplicaSetStatus
from kray.crds.core import ServicePort, ServiceSpec
from kray.crds.registry import REGISTRY

OPERATOR_DIR = Path(__file__).resolve().parents[3] / "examples" / "operator"
sys.path.insert(0, str(OPERATOR_DIR))
import tensorboard_operator as tbo  # noqa: E402
from tensorboard_operator import FINALIZER, INSTANCE_LABEL, TensorBoard  # noqa: E402

TOKEN = "ext-token"
NOW = datetime(2024, 1, 1, tzinfo=timezone.utc)
NS = "default"


@pytest.fixture
async def client() -> AsyncIterator[tuple[AsyncClient, ObjectStore]]:
    kv = MemoryKV()
    store = ObjectStore(kv, REGISTRY)
    api = ApiServer(store, REGISTRY, token=TOKEN, clock=lambda: NOW)
    await api.start()
    transport = httpx.ASGITransport(app=api.app)
    async with AsyncClient(server="http://kray.test", token=TOKEN, transport=transport) as c:
        yield c, store
    await kv.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
async def manager(client: tuple[AsyncClient, ObjectStore], clock: FakeClock) -> AsyncIterator[Manager]:
    c, store = client
    m = Manager(StoreListWatcher(store), c, clock=clock)
    tbo.build(m)
    assert await m.start_informers(2)
    yield m
    await m.stop()


@pytest.fixture
def api(client: tuple[AsyncClient, ObjectStore]) -> AsyncClient:
    return client[0]


async def drive(manager: Manager, cond: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    """Step the controllers (letting watches deliver in between) until ``cond`` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await cond():
        if loop.time() > deadline:
            raise AssertionError("the operator did not converge in time")
        await manager.step()
        await asyncio.sleep(0.005)


def tensorboard(name: str, **spec: object) -> TensorBoard:
    return TensorBoard.model_validate(
        {"metadata": {"name": name, "namespace": NS}, "spec": {"logDir": "/runs/x", **spec}}
    )


async def get_or_none(api: AsyncClient, kind: type, name: str) -> object | None:
    try:
        return await api.get(kind, name, NS)
    except NotFound:
        return None


async def replicasets(api: AsyncClient, name: str) -> list[ReplicaSet]:
    items = (await api.list(ReplicaSet, NS, label_selector=f"{INSTANCE_LABEL}={name}")).items
    return [rs for rs in items if rs.metadata.deletion_timestamp is None]


async def reasons(api: AsyncClient, name: str) -> list[str]:
    return [e.reason or "" for e in (await api.list(Event, NS)).items if e.involved_object.name == name]


async def test_children_status_repair_and_cleanup(manager: Manager, api: AsyncClient) -> None:
    tb = await api.create(tensorboard("mnist"))

    async def phase_is(phase: str) -> bool:
        got = await api.get(TensorBoard, "mnist", NS)
        return got.status is not None and got.status.phase == phase

    await drive(manager, lambda: phase_is("Pending"))
    live = await api.get(TensorBoard, "mnist", NS)
    assert live.metadata.finalizers == [FINALIZER]
    (rs,) = await replicasets(api, "mnist")
    svc = await api.get(Service, "mnist", NS)
    for child in (rs, svc):
        (ref,) = child.metadata.owner_references or []
        assert (ref.kind, ref.name, ref.uid, ref.controller) == ("TensorBoard", "mnist", tb.metadata.uid, True)
    assert rs.spec.replicas == 1 and rs.spec.template is not None
    container = rs.spec.template.spec.containers[0]
    assert container.command == ["tensorboard", "--logdir", "/runs/x", "--host", "0.0.0.0", "--port", "6006"]
    assert (rs.spec.template.spec.volumes or [])[0].host_path.path == "/runs/x"  # type: ignore[union-attr]
    assert [(p.port, p.target_port) for p in svc.spec.ports or []] == [(6006, 6006)]
    assert live.status is not None and live.status.url == "http://mnist.default.svc.cluster.local:6006"
    assert live.status.observed_generation == live.metadata.generation
    (ready,) = live.status.conditions or []
    assert (ready.type, ready.status, ready.reason) == ("Ready", "False", "ReplicasNotReady")
    assert {"CreatedReplicaSet", "CreatedService"} <= set(await reasons(api, "mnist"))

    # The ReplicaSet controller (not running here) would report its pods ready: do it by hand.
    rs.status = ReplicaSetStatus(replicas=1, ready_replicas=1)
    await api.update_status(rs)
    await drive(manager, lambda: phase_is("Running"))
    assert "Ready" in await reasons(api, "mnist")

    # Level-based: a deleted child comes back, an edited one is put right.
    await api.delete(Service, "mnist", NS)

    async def service_back() -> bool:
        got = await get_or_none(api, Service, "mnist")
        return got is not None and got.metadata.uid != svc.metadata.uid  # type: ignore[attr-defined]

    await drive(manager, service_back)
    svc = await api.get(Service, "mnist", NS)
    svc.spec.ports = [ServicePort(port=80, target_port=8080)]
    await api.update(svc)

    async def service_repaired() -> bool:
        got = await api.get(Service, "mnist", NS)
        return [(p.port, p.target_port) for p in got.spec.ports or []] == [(6006, 6006)]

    await drive(manager, service_repaired)
    await api.delete(ReplicaSet, rs.name, NS)

    async def rs_back() -> bool:
        found = await replicasets(api, "mnist")
        return len(found) == 1 and found[0].metadata.uid != rs.metadata.uid

    await drive(manager, rs_back)

    # Spec changes: replicas scale the ReplicaSet; a new image replaces it.
    await api.patch(TensorBoard, "mnist", {"spec": {"replicas": 3}}, NS)

    async def scaled() -> bool:
        found = await replicasets(api, "mnist")
        return len(found) == 1 and found[0].spec.replicas == 3

    await drive(manager, scaled)
    old_name = (await replicasets(api, "mnist"))[0].name
    await api.patch(TensorBoard, "mnist", {"spec": {"image": "tensorflow/tensorflow:2.17.0"}}, NS)

    async def replaced() -> bool:
        found = await replicasets(api, "mnist")
        return [r.name != old_name for r in found] == [True]

    await drive(manager, replaced)
    (new_rs,) = await replicasets(api, "mnist")
    assert new_rs.spec.template is not None
    assert new_rs.spec.template.spec.containers[0].image == "tensorflow/tensorflow:2.17.0"

    # Deletion: the finalizer holds the object until the children are gone, then lets go.
    await api.delete(TensorBoard, "mnist", NS)

    async def all_gone() -> bool:
        return (
            await get_or_none(api, TensorBoard, "mnist") is None
            and await get_or_none(api, Service, "mnist") is None
            and not await replicasets(api, "mnist")
        )

    await drive(manager, all_gone)
    assert "CleanedUp" in await reasons(api, "mnist")
    assert manager.controllers["tensorboard"].errors == 0


async def test_stale_cache_conflict_requeues_then_converges(
    manager: Manager, api: AsyncClient, clock: FakeClock
) -> None:
    controller = manager.controllers["tensorboard"]
    await api.create(tensorboard("cifar"))

    async def has_rs() -> bool:
        return len(await replicasets(api, "cifar")) == 1

    await drive(manager, has_rs)
    await drive(manager, lambda: _no_work(manager))

    # Freeze the ReplicaSet cache and change the ReplicaSet behind its back; then ask for a scale:
    # the operator's update carries a stale resourceVersion and gets a 409.
    rs_informer = manager.informer_for(ReplicaSet)
    await rs_informer.stop()
    (rs,) = await replicasets(api, "cifar")
    rs.metadata.labels = {**(rs.metadata.labels or {}), "touched": "yes"}
    await api.update(rs)
    changed = await api.patch(TensorBoard, "cifar", {"spec": {"replicas": 2}}, NS)
    await manager.informer_for(TensorBoard).wait_for_version(changed.metadata.resource_version or "")

    assert await manager.step() == 1
    assert controller.conflicts == 1 and controller.errors == 0
    assert controller.queue.num_requeues(Request(NS, "cifar")) == 1

    rs_informer.start()
    await rs_informer.wait_for_sync(2)
    clock.advance(1)

    async def scaled() -> bool:
        found = await replicasets(api, "cifar")
        return len(found) == 1 and found[0].spec.replicas == 2

    await drive(manager, scaled)
    assert controller.errors == 0


async def _no_work(manager: Manager) -> bool:
    return await manager.step() == 0


async def test_never_takes_over_a_service_it_does_not_own(manager: Manager, api: AsyncClient) -> None:
    foreign = Service(
        metadata=ObjectMeta(name="shared", namespace=NS),
        spec=ServiceSpec(selector={"app": "other"}, ports=[ServicePort(port=80)]),
    )
    await api.create(foreign)
    await api.create(tensorboard("shared"))

    async def warned() -> bool:
        return "ServiceConflict" in await reasons(api, "shared")

    await drive(manager, warned)
    svc = await api.get(Service, "shared", NS)
    assert svc.spec.selector == {"app": "other"} and not svc.metadata.owner_references


def test_crd_manifest_agrees_with_the_model() -> None:
    crd = yaml.safe_load((OPERATOR_DIR / "tensorboard-crd.yaml").read_text())
    model = model_from_crd(crd)
    assert (model.GROUP, model.VERSION, model.KIND, model.PLURAL) == (
        TensorBoard.GROUP,
        TensorBoard.VERSION,
        TensorBoard.KIND,
        TensorBoard.PLURAL,
    )
    assert model.HAS_STATUS_SUBRESOURCE and model.SHORT_NAMES == TensorBoard.SHORT_NAMES
    sample = yaml.safe_load((OPERATOR_DIR / "sample.yaml").read_text())
    # Defaults: the API server (CRD schema) and the operator (pydantic) fill in the same values.
    served = model.model_validate(sample).to_dict()
    assert served["spec"] == TensorBoard.model_validate(sample).to_dict()["spec"]

    # A status the operator writes survives the CRD schema unpruned (else it would rewrite forever).
    tb = TensorBoard.model_validate({**sample, "metadata": {**sample["metadata"], "generation": 1}})
    status = tbo.TensorBoardStatus(phase="Running", url=tbo.service_url(tb), replicas=1, ready_replicas=1)
    set_condition(status, "Ready", "True", "ReplicasReady", "1/1 replicas ready", observed_generation=1)
    wire = {**sample, "status": status.to_dict()}
    assert model.model_validate(wire).to_dict()["status"] == wire["status"]
    with pytest.raises(ValueError, match=r"spec\.logDir"):
        model.model_validate({**sample, "spec": {}})
