"""StatefulSet end to end on etcd and a real API server over HTTP: the controller (HTTP list/watch)
and a kubelet stand-in bring up ``web-0..2`` strictly in order with a claim per ordinal, every
observed pod set is a prefix of the ordinals, status reports 3/3 ready, and a scale-down to 1
removes ``web-2`` then ``web-1`` while their claims are retained."""

# mypy: disable-error-code="union-attr"

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest
from controllers_it import running, wait_for

from kray.actors.controllers import statefulset
from kray.actors.controllers.teststandin import KubeletStandIn, fake_nodes
from kray.actors.framework import ClientListWatcher
from kray.client import AsyncClient
from kray.config import KrayConfig
from kray.crds import Namespace, ObjectMeta, Pod
from kray.crds.apps_statefulset import StatefulSet
from kray.crds.core.storage import PersistentVolumeClaim

pytestmark = [pytest.mark.etcd]


@pytest.fixture
async def client(config: KrayConfig) -> AsyncIterator[AsyncClient]:
    async with running(config, statefulset.setup) as c:
        yield c


def web(ns: str, replicas: int) -> StatefulSet:
    labels = {"app": "web"}
    claim = {
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    return StatefulSet.model_validate(
        {
            "metadata": {"name": "web", "namespace": ns},
            "spec": {
                "replicas": replicas,
                "serviceName": "web",
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
                "volumeClaimTemplates": [claim],
            },
        }
    )


async def test_ordered_bring_up_and_scale_down(client: AsyncClient, config: KrayConfig) -> None:
    ns = f"sts-{uuid.uuid4().hex[:8]}"
    await client.create(Namespace(metadata=ObjectMeta(name=ns)))
    async with AsyncClient(config) as kubelet_client:
        standin = KubeletStandIn(
            ClientListWatcher(kubelet_client), kubelet_client, nodes=fake_nodes(2), ready_delay=1.1, namespace=ns
        )
        kubelet = asyncio.ensure_future(standin.run(interval=0.05))
        try:
            await client.create(web(ns, 3))
            seen: list[list[str]] = []

            async def all_ready() -> bool:
                names = sorted(p.name for p in (await client.list(Pod, ns)).items)
                seen.append(names)
                sts = await client.get(StatefulSet, "web", ns)
                return bool(sts.status and sts.status.ready_replicas == 3 and sts.status.replicas == 3)

            await wait_for(all_ready, "3 ready replicas", 30)
            prefixes = {tuple(f"web-{i}" for i in range(k)) for k in range(4)}
            assert all(tuple(s) in prefixes for s in seen), seen  # never web-1 before web-0 ...
            assert len({tuple(s) for s in seen}) >= 3  # and the steps were observed
            pods = {p.name: p for p in (await client.list(Pod, ns)).items}
            for k in (1, 2):  # web-k was created only once web-(k-1) was Ready (whole seconds)
                ready = pods[f"web-{k - 1}"].status.condition("Ready")
                assert pods[f"web-{k}"].metadata.creation_timestamp >= ready.last_transition_time.replace(microsecond=0)
            assert pods["web-1"].spec.hostname == "web-1" and pods["web-1"].spec.subdomain == "web"
            vol = next(v for v in pods["web-1"].spec.volumes or () if v.name == "data")
            assert vol.persistent_volume_claim.claim_name == "data-web-1"
            claims = {c.name for c in (await client.list(PersistentVolumeClaim, ns)).items}
            assert claims == {"data-web-0", "data-web-1", "data-web-2"}

            await client.patch(StatefulSet, "web", {"spec": {"replicas": 1}}, ns)
            order: list[str] = []

            async def one_left() -> bool:
                names = {p.name for p in (await client.list(Pod, ns)).items}
                for gone in ("web-2", "web-1"):
                    if gone not in names and gone not in order:
                        order.append(gone)
                return names == {"web-0"}

            await wait_for(one_left, "scale down to web-0", 30)
            assert order == ["web-2", "web-1"]
            claims = {c.name for c in (await client.list(PersistentVolumeClaim, ns)).items}
            assert claims == {"data-web-0", "data-web-1", "data-web-2"}  # whenScaled: Retain
        finally:
            kubelet.cancel()
            with contextlib.suppress(BaseException):
                await kubelet
