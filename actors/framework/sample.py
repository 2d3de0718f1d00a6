"""A small, complete controller: the worked example for extension authors (and the tests).

For every Namespace labelled ``kray.dev/mirror=true`` it keeps a ConfigMap ``kray-mirror``
in that namespace whose data mirrors the Namespace's labels ('/' -> '_' in keys), owned by the
Namespace (so the garbage collector removes it with the Namespace). Removing the label removes the ConfigMap.

Deploy it with ``deploy_controller("namespace-mirror", "kray.actors.framework.sample:build", config)``.
"""

from __future__ import annotations

from kray.client.errors import NotFound
from kray.crds.core import ConfigMap, Namespace
from kray.crds.meta import ObjectMeta

from .builder import ControllerBuilder
from .manager import Manager
from .ports import Reader, Writer
from .reconciler import EventRecorder, Request, Result, owned_by, set_controller_reference

LABEL = "kray.dev/mirror"
CONFIGMAP = "kray-mirror"


def mirror_data(labels: dict[str, str]) -> dict[str, str]:
    """ConfigMap keys cannot hold '/', label keys often do."""
    return {k.replace("/", "_"): v for k, v in labels.items()}


class NamespaceMirror:
    def __init__(self, reader: Reader, writer: Writer, recorder: EventRecorder | None = None) -> None:
        self.reader = reader
        self.writer = writer
        self.recorder = recorder

    async def reconcile(self, request: Request) -> Result:
        try:
            ns = await self.reader.get(Namespace, request.name)
        except NotFound:
            return Result()  # gone: its ConfigMap goes with it (owner reference)
        if ns.metadata.deletion_timestamp is not None:
            return Result()
        labels = dict(ns.metadata.labels or {})
        try:
            cm: ConfigMap | None = await self.reader.get(ConfigMap, CONFIGMAP, ns.name)
        except NotFound:
            cm = None

        if labels.get(LABEL) != "true":
            if cm is not None and owned_by(cm, ns):
                await self.writer.delete(ConfigMap, CONFIGMAP, ns.name)
            return Result()

        if cm is None:
            cm = ConfigMap(metadata=ObjectMeta(name=CONFIGMAP, namespace=ns.name), data=mirror_data(labels))
            set_controller_reference(ns, cm)
            await self.writer.create(cm)  # AlreadyExists is a Conflict: requeued, not logged
            if self.recorder:
                await self.recorder.event(ns, "Normal", "MirrorCreated", f"created ConfigMap {CONFIGMAP}")
        elif cm.data != mirror_data(labels):
            # Cached objects are shared: change a copy. A stale resourceVersion gives a 409,
            # which the controller turns into a quiet requeue.
            updated = cm.model_copy(deep=True)
            updated.data = mirror_data(labels)
            await self.writer.update(updated)
        return Result()


def build(manager: Manager) -> None:
    """The factory ``deploy_controller`` resolves from ``"kray.actors.framework.sample:build"``."""
    reconciler = NamespaceMirror(manager.reader, manager.writer, manager.event_recorder("namespace-mirror"))
    ControllerBuilder(manager).named("namespace-mirror").for_(Namespace).owns(ConfigMap).complete(reconciler)
