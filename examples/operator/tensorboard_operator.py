"""A complete custom operator: ``TensorBoard`` (example.kray.io/v1).

    apiVersion: example.kray.io/v1
    kind: TensorBoard
    metadata: {name: mnist, namespace: ml}
    spec: {logDir: /data/runs/mnist, replicas: 1}

For each TensorBoard the operator keeps
- a ReplicaSet ``<name>-<template hash>`` running ``tensorboard --logdir <logDir>`` (a host path
  is mounted read-only; ``gs://``/``s3://`` URLs are passed through); a spec change that alters
  the pod template makes a new ReplicaSet and deletes the old one (a "Recreate" rollout),
- a Service ``<name>`` in front of it,
- ``status``: phase, url, replicas/readyReplicas, observedGeneration and a ``Ready`` condition,
- Events for what it did, and a finalizer that removes the children before the TensorBoard goes.

Children carry a controller owner reference, so the garbage collector would delete them anyway;
the finalizer is where an operator cleans up what the collector cannot see (here it deletes the
children itself and says so in an Event). Everything is level-based: each pass re-reads the
cluster and converges it, so a deleted or hand-edited child is repaired on the next pass.

Run it with ``kray controller run tensorboard_operator:build --path examples/operator``.
"""

from __future__ import annotations

import hashlib
import json
from typing import ClassVar

from pydantic import Field

from kray.api import (
    Condition,
    ControllerBuilder,
    EventRecorder,
    KrayModel,
    Manager,
    NotFound,
    ObjectMeta,
    Reader,
    Request,
    Resource,
    Result,
    Writer,
    add_finalizer,
    has_finalizer,
    kind,
    owned_by,
    remove_finalizer,
    set_condition,
    set_controller_reference,
)
from kray.crds import LabelSelector
from kray.crds.apps import ReplicaSet, ReplicaSetSpec
from kray.crds.core import (
    Container,
    ContainerPort,
    HostPathVolumeSource,
    HTTPGetAction,
    PodSpec,
    PodTemplateSpec,
    Probe,
    Service,
    ServicePort,
    ServiceSpec,
    Volume,
    VolumeMount,
)

GROUP = "example.kray.io"
FINALIZER = f"{GROUP}/cleanup"
INSTANCE_LABEL = f"{GROUP}/tensorboard"  # which TensorBoard a child belongs to
HASH_ANNOTATION = f"{GROUP}/template-hash"
PORT = 6006
DEFAULT_IMAGE = "tensorflow/tensorflow:2.16.1"


# ---- the API: a pydantic model per kind (the CRD manifest says the same in OpenAPI) ----


class TensorBoardSpec(KrayModel):
    log_dir: str = Field(min_length=1)
    image: str = DEFAULT_IMAGE
    replicas: int = Field(default=1, ge=0, le=10)


class TensorBoardStatus(KrayModel):
    phase: str | None = None  # Pending | Running | Stopped
    url: str | None = None
    replicas: int | None = None
    ready_replicas: int | None = None
    observed_generation: int | None = None
    conditions: list[Condition] | None = None


@kind
class TensorBoard(Resource):
    GROUP: ClassVar[str] = GROUP
    VERSION: ClassVar[str] = "v1"
    KIND: ClassVar[str] = "TensorBoard"
    PLURAL: ClassVar[str] = "tensorboards"
    SINGULAR: ClassVar[str] = "tensorboard"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("tb",)
    HAS_STATUS_SUBRESOURCE: ClassVar[bool] = True

    spec: TensorBoardSpec
    status: TensorBoardStatus | None = None


# ---- desired state: pure functions of the TensorBoard ----


def pod_template(tb: TensorBoard) -> PodTemplateSpec:
    log_dir = tb.spec.log_dir
    volumes, mounts = None, None
    if log_dir.startswith("/"):  # a path on the node: mount it; URLs (gs://, s3://) need nothing
        volumes = [Volume(name="logs", host_path=HostPathVolumeSource(path=log_dir, type="DirectoryOrCreate"))]
        mounts = [VolumeMount(name="logs", mount_path=log_dir, read_only=True)]
    container = Container(
        name="tensorboard",
        image=tb.spec.image,
        command=["tensorboard", "--logdir", log_dir, "--host", "0.0.0.0", "--port", str(PORT)],
        ports=[ContainerPort(name="http", container_port=PORT)],
        readiness_probe=Probe(http_get=HTTPGetAction(path="/", port=PORT), period_seconds=5),
        volume_mounts=mounts,
    )
    return PodTemplateSpec(
        metadata=ObjectMeta(labels={INSTANCE_LABEL: tb.name}),
        spec=PodSpec(containers=[container], volumes=volumes),
    )


def template_hash(template: PodTemplateSpec) -> str:
    """Names the ReplicaSet for one template; the server defaults fields, so compare hashes, not specs."""
    return hashlib.sha256(json.dumps(template.to_dict(), sort_keys=True).encode()).hexdigest()[:10]


def desired_replicaset(tb: TensorBoard) -> ReplicaSet:
    template = pod_template(tb)
    digest = template_hash(template)
    rs = ReplicaSet(
        metadata=ObjectMeta(
            name=f"{tb.name}-{digest}",
            namespace=tb.namespace,
            labels={INSTANCE_LABEL: tb.name},
            annotations={HASH_ANNOTATION: digest},
        ),
        spec=ReplicaSetSpec(
            replicas=tb.spec.replicas,
            selector=LabelSelector(match_labels={INSTANCE_LABEL: tb.name}),
            template=template,
        ),
    )
    set_controller_reference(tb, rs)
    return rs


def desired_service(tb: TensorBoard) -> Service:
    svc = Service(
        metadata=ObjectMeta(name=tb.name, namespace=tb.namespace, labels={INSTANCE_LABEL: tb.name}),
        spec=ServiceSpec(
            selector={INSTANCE_LABEL: tb.name},
            ports=[ServicePort(name="http", port=PORT, target_port=PORT)],
        ),
    )
    set_controller_reference(tb, svc)
    return svc


def service_url(tb: TensorBoard) -> str:
    return f"http://{tb.name}.{tb.namespace}.svc.cluster.local:{PORT}"


# ---- the reconciler ----


class TensorBoardReconciler:
    """Converges one TensorBoard's children and status; every write may raise Conflict (requeued)."""

    def __init__(self, reader: Reader, writer: Writer, recorder: EventRecorder) -> None:
        self.reader = reader
        self.writer = writer
        self.recorder = recorder

    async def reconcile(self, request: Request) -> Result:
        try:
            tb = await self.reader.get(TensorBoard, request.name, request.namespace)
        except NotFound:
            return Result()  # gone (finalizer done): nothing left to do
        if tb.metadata.deletion_timestamp is not None:
            await self.finalize(tb)
            return Result()
        if not has_finalizer(tb, FINALIZER):
            # Cached objects are shared with the informer: change a copy, never the cache.
            tb = tb.model_copy(deep=True)
            add_finalizer(tb, FINALIZER)
            tb = await self.writer.update(tb)
        rs = await self.ensure_replicaset(tb)
        await self.ensure_service(tb)
        await self.update_status(tb, rs)
        return Result()

    async def owned_replicasets(self, tb: TensorBoard) -> list[ReplicaSet]:
        found = await self.reader.list(ReplicaSet, tb.namespace, label_selector=f"{INSTANCE_LABEL}={tb.name}")
        return [rs for rs in found if owned_by(rs, tb)]

    async def ensure_replicaset(self, tb: TensorBoard) -> ReplicaSet | None:
        want = desired_replicaset(tb)
        current: ReplicaSet | None = None
        for rs in await self.owned_replicasets(tb):
            if rs.name == want.name:
                current = rs
            elif rs.metadata.deletion_timestamp is None:
                # An old template (image or logDir changed): replace, don't edit in place.
                await _delete(self.writer, ReplicaSet, rs.name, tb.namespace)
                await self.recorder.event(tb, "Normal", "DeletedReplicaSet", f"deleted old ReplicaSet {rs.name}")
        if current is None:
            # AlreadyExists (a stale cache) is a Conflict: the controller requeues quietly.
            created = await self.writer.create(want)
            await self.recorder.event(tb, "Normal", "CreatedReplicaSet", f"created ReplicaSet {want.name}")
            return created
        if current.spec.replicas != tb.spec.replicas:
            updated = current.model_copy(deep=True)
            updated.spec.replicas = tb.spec.replicas
            current = await self.writer.update(updated)
            await self.recorder.event(tb, "Normal", "Scaled", f"scaled ReplicaSet {current.name} to {tb.spec.replicas}")
        return current

    async def ensure_service(self, tb: TensorBoard) -> Service:
        want = desired_service(tb)
        try:
            current = await self.reader.get(Service, want.name, tb.namespace)
        except NotFound:
            created = await self.writer.create(want)
            await self.recorder.event(tb, "Normal", "CreatedService", f"created Service {want.name}")
            return created
        if not owned_by(current, tb):
            # Someone else's Service: never take it over. Retrying cannot fix this; the status says so.
            await self.recorder.event(tb, "Warning", "ServiceConflict", f"Service {want.name} exists and is not ours")
            return current
        if _ports(current) != _ports(want) or current.spec.selector != want.spec.selector:
            repaired = current.model_copy(deep=True)  # keeps clusterIP, which the server assigned
            repaired.spec.selector = want.spec.selector
            repaired.spec.ports = want.spec.ports
            current = await self.writer.update(repaired)
            await self.recorder.event(tb, "Normal", "RepairedService", f"reset Service {want.name} to its spec")
        return current

    async def update_status(self, tb: TensorBoard, rs: ReplicaSet | None) -> None:
        desired = tb.spec.replicas
        ready = (rs.status.ready_replicas or 0) if rs is not None and rs.status else 0
        current = (rs.status.replicas or 0) if rs is not None and rs.status else 0
        old = tb.status or TensorBoardStatus()
        new = old.model_copy(deep=True)
        new.url, new.replicas, new.ready_replicas = service_url(tb), current, ready
        new.observed_generation = tb.metadata.generation
        if desired == 0:
            new.phase = "Stopped"
            set_condition(new, "Ready", "False", "Stopped", "spec.replicas is 0")
        elif ready >= desired:
            new.phase = "Running"
            set_condition(new, "Ready", "True", "ReplicasReady", f"{ready}/{desired} replicas ready")
        else:
            new.phase = "Pending"
            set_condition(new, "Ready", "False", "ReplicasNotReady", f"{ready}/{desired} replicas ready")
        if new.to_dict() == old.to_dict():
            return  # nothing changed: no write, so no watch event, so no reconcile loop
        changed = tb.model_copy(deep=True)
        changed.status = new
        await self.writer.update_status(changed)
        if new.phase != old.phase and new.phase == "Running":
            await self.recorder.event(tb, "Normal", "Ready", f"TensorBoard is serving at {new.url}")

    async def finalize(self, tb: TensorBoard) -> None:
        if not has_finalizer(tb, FINALIZER):
            return
        for rs in await self.owned_replicasets(tb):
            await _delete(self.writer, ReplicaSet, rs.name, tb.namespace)
        try:
            svc = await self.reader.get(Service, tb.name, tb.namespace)
            if owned_by(svc, tb):
                await _delete(self.writer, Service, svc.name, tb.namespace)
        except NotFound:
            pass
        await self.recorder.event(tb, "Normal", "CleanedUp", "deleted the ReplicaSet and Service")
        done = tb.model_copy(deep=True)
        remove_finalizer(done, FINALIZER)
        await self.writer.update(done)  # the last finalizer gone: the server deletes the object


async def _delete(writer: Writer, kind_: type[Resource], name: str, namespace: str | None) -> None:
    try:
        await writer.delete(kind_, name, namespace)
    except NotFound:
        pass  # already gone: what we wanted


def _ports(svc: Service) -> list[tuple[int, str]]:
    return sorted((p.port, str(p.target_port)) for p in svc.spec.ports or [])


def build(manager: Manager) -> None:
    """What ``kray controller run tensorboard_operator:build`` calls in each replica."""
    reconciler = TensorBoardReconciler(manager.reader, manager.writer, manager.event_recorder("tensorboard-operator"))
    (
        ControllerBuilder(manager)
        .named("tensorboard")
        .for_(TensorBoard)
        .owns(ReplicaSet)  # an RS change (readyReplicas, deletion) wakes its TensorBoard
        .owns(Service)
        .complete(reconciler)
    )
