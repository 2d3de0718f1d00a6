"""Garbage collector and namespace controller over etcd + a real API server (HTTP list/watch):
a namespace with objects of several kinds is emptied and goes; Background, Foreground and Orphan
deletion through the real API."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from controllers_it import running, wait_for

from kray.actors.controllers import garbagecollector, job, namespace
from kray.actors.framework import owner_reference
from kray.client import AsyncClient, NotFound
from kray.config import KrayConfig
from kray.crds import ConfigMap, Namespace, ObjectMeta, Pod, Secret
from kray.crds.batch import Job

pytestmark = [pytest.mark.etcd]


@pytest.fixture
async def client(config: KrayConfig) -> AsyncIterator[AsyncClient]:
    async with running(
        config, garbagecollector.setup, namespace.setup, job.setup, namespace={"recheck_seconds": 0.2}
    ) as c:
        yield c


async def exists(client: AsyncClient, kind: type, name: str, ns: str | None = None) -> bool:
    try:
        await client.get(kind, name, ns)
        return True
    except NotFound:
        return False


async def new_namespace(client: AsyncClient) -> str:
    name = f"lc-{uuid.uuid4().hex[:8]}"
    await client.create(Namespace(metadata=ObjectMeta(name=name)))

    async def finalizer() -> bool:
        return "kubernetes" in ((await client.get(Namespace, name)).spec.finalizers or [])

    await wait_for(finalizer, "the namespace finalizer")
    return name


async def test_namespace_deletion_removes_everything(client: AsyncClient) -> None:
    ns = await new_namespace(client)
    await client.create(ConfigMap(metadata=ObjectMeta(name="cm", namespace=ns), data={"k": "v"}))
    await client.create(Secret(metadata=ObjectMeta(name="s", namespace=ns)))
    template = {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}
    await client.create(
        Job.model_validate({"metadata": {"name": "j", "namespace": ns}, "spec": {"template": template}})
    )

    async def job_pod() -> bool:
        return len((await client.list(Pod, ns)).items) == 1

    await wait_for(job_pod, "the Job's pod")
    await client.delete(Namespace, ns)

    async def gone() -> bool:
        return not await exists(client, Namespace, ns)

    await wait_for(gone, "the namespace to go")
    for kind in (ConfigMap, Secret, Job, Pod):
        assert (await client.list(kind, ns)).items == []


async def test_background_foreground_orphan(client: AsyncClient) -> None:
    ns = await new_namespace(client)

    async def chain(prefix: str) -> tuple[ConfigMap, ConfigMap, ConfigMap]:
        root = await client.create(ConfigMap(metadata=ObjectMeta(name=f"{prefix}-root", namespace=ns)))
        meta = ObjectMeta(name=f"{prefix}-child", namespace=ns, owner_references=[owner_reference(root)])
        child = await client.create(ConfigMap(metadata=meta))
        meta = ObjectMeta(name=f"{prefix}-grand", namespace=ns, owner_references=[owner_reference(child)])
        return root, child, await client.create(ConfigMap(metadata=meta))

    async def none_left(*names: str) -> bool:
        return not any([await exists(client, ConfigMap, n, ns) for n in names])

    # Background: the owner goes at once, the collector then removes the dependents.
    await chain("bg")
    await client.delete(ConfigMap, "bg-root", ns, propagation_policy="Background")
    assert not await exists(client, ConfigMap, "bg-root", ns)
    await wait_for(lambda: none_left("bg-child", "bg-grand"), "background deletion")

    # Foreground: the owner stays (deletionTimestamp, finalizer) until its dependents are gone.
    await chain("fg")
    await client.patch(ConfigMap, "fg-grand", {"metadata": {"finalizers": ["test/hold"]}}, ns)
    root = await client.delete(ConfigMap, "fg-root", ns, propagation_policy="Foreground")
    assert root is not None and root.metadata.finalizers == ["foregroundDeletion"]

    async def grand_deleting() -> bool:
        return (await client.get(ConfigMap, "fg-grand", ns)).metadata.deletion_timestamp is not None

    await wait_for(grand_deleting, "the grandchild to be deleted")
    assert await exists(client, ConfigMap, "fg-root", ns)
    await client.patch(ConfigMap, "fg-grand", {"metadata": {"finalizers": None}}, ns)
    await wait_for(lambda: none_left("fg-root", "fg-child", "fg-grand"), "foreground deletion")

    # Orphan: the owner goes, the dependents stay without the reference.
    _, child, _ = await chain("or")
    await client.delete(ConfigMap, "or-root", ns, propagation_policy="Orphan")

    async def orphaned() -> bool:
        if await exists(client, ConfigMap, "or-root", ns):
            return False
        return not (await client.get(ConfigMap, "or-child", ns)).metadata.owner_references

    await wait_for(orphaned, "orphan deletion")
    await asyncio.sleep(0.5)
    grand = await client.get(ConfigMap, "or-grand", ns)
    assert [r.uid for r in grand.metadata.owner_references or []] == [child.metadata.uid]
    await client.delete(Namespace, ns)
