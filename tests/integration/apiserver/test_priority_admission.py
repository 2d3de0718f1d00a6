"""Priority admission with the official ``kubernetes`` client against kray's API server on etcd."""

# The client's models type every field as optional.
# mypy: disable-error-code="union-attr"

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

import kray.crds  # noqa: F401
from kray.actors.apiserver import ApiServer, ServerThread
from kray.actors.store.etcd import EtcdKV
from kray.actors.store.objects import ObjectStore
from kray.crds.registry import REGISTRY

pytestmark = pytest.mark.etcd

kubernetes = pytest.importorskip("kubernetes")
from kubernetes import client as k8s  # noqa: E402

TOKEN = "priority-token"


@pytest.fixture(scope="module")
def api_client(etcd_endpoint: str) -> Iterator[k8s.ApiClient]:
    async def build() -> ApiServer:
        return ApiServer(ObjectStore(EtcdKV(etcd_endpoint), REGISTRY), REGISTRY, token=TOKEN)

    thread = ServerThread(build)
    thread.start()
    config = k8s.Configuration(host=thread.url, api_key={"authorization": f"Bearer {TOKEN}"})
    try:
        with k8s.ApiClient(config) as c:
            yield c
    finally:
        thread.stop()


def _pod(name: str, class_name: str | None = None, priority: int | None = None) -> k8s.V1Pod:
    spec = k8s.V1PodSpec(
        containers=[k8s.V1Container(name="main", image="busybox")], priority_class_name=class_name, priority=priority
    )
    return k8s.V1Pod(metadata=k8s.V1ObjectMeta(name=name), spec=spec)


def test_priority_classes_resolve_and_bad_ones_are_refused(api_client: k8s.ApiClient) -> None:
    v1, sched = k8s.CoreV1Api(api_client), k8s.SchedulingV1Api(api_client)
    suffix = uuid.uuid4().hex[:8]
    ns, cls = f"prio-{suffix}", f"training-{suffix}"
    v1.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=ns)))
    sched.create_priority_class(
        k8s.V1PriorityClass(metadata=k8s.V1ObjectMeta(name=cls), value=5000, preemption_policy="Never")
    )
    try:
        created = v1.create_namespaced_pod(ns, _pod("train", cls))
        assert (created.spec.priority, created.spec.preemption_policy) == (5000, "Never")
        critical = v1.create_namespaced_pod(ns, _pod("dns", "system-cluster-critical"))
        assert critical.spec.priority == 2_000_000_000
        with pytest.raises(k8s.ApiException) as unknown:
            v1.create_namespaced_pod(ns, _pod("ghost", f"missing-{suffix}"))
        assert unknown.value.status == 403
        assert "spec.priorityClassName" in json.loads(unknown.value.body)["message"]
        with pytest.raises(k8s.ApiException) as mismatch:
            v1.create_namespaced_pod(ns, _pod("liar", cls, priority=1))
        assert mismatch.value.status == 403
        assert "computed 5000" in json.loads(mismatch.value.body)["message"]
    finally:
        sched.delete_priority_class(cls)
        v1.delete_namespace(ns)
