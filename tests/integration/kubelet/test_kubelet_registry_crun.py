"""Registry pulls end to end: a real distribution registry with token auth (tests/registryserver),
the kubelet pulling through the CRI runtime service with the pod's imagePullSecrets, and the
pulled image running on crun. Also what a pod sees when the pull cannot happen: no credentials
(ErrImagePull, then ImagePullBackOff) and pull policy Never (ErrImageNeverPull)."""

from __future__ import annotations

import base64
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubelet_node import RunningKubelet, pod_body, wait_for

from kray.client import AsyncClient
from kray.crds import Pod
from kray.crds.core import Event, Secret
from tests.registryserver import Registry, start_registry

pytestmark = [pytest.mark.root]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, image_tar: Path) -> Iterator[Registry]:
    base = tmp_path_factory.mktemp("registry")
    layout = base / "layout"
    with tarfile.open(image_tar) as tf:
        tf.extractall(layout, filter="data")
    reg = start_registry(base / "server", auth="token")
    try:
        reg.push_layout(layout, "private/busybox", "1")
        reg.push_layout(layout, "team/busybox", "1")
        yield reg
    finally:
        reg.stop()


def waiting(pod: Pod) -> dict[str, str]:
    statuses = pod.status.to_dict().get("containerStatuses") or [] if pod.status else []
    return (statuses[0].get("state") or {}).get("waiting") or {} if statuses else {}


async def kubelet_events(client: AsyncClient, pod: str) -> list[Event]:
    evs = (await client.list(Event, "default")).items
    return [e for e in evs if e.involved_object.name == pod and e.source and e.source.component == "kubelet"]


async def test_pull_with_image_pull_secret_runs_the_image(
    client: AsyncClient, kubelet: RunningKubelet, registry: Registry
) -> None:
    auths = {registry.host: {"auth": base64.b64encode(b"alice:s3cret").decode()}}
    data = {".dockerconfigjson": base64.b64encode(json.dumps({"auths": auths}).encode()).decode()}
    body = {"metadata": {"name": "regcred", "namespace": "default"}, "data": data}
    await client.create(Secret.model_validate({**body, "type": "kubernetes.io/dockerconfigjson"}))
    image = f"{registry.host}/private/busybox:1"
    c = {"name": "main", "image": image, "command": ["sh", "-c", "echo pulled-and-ran"]}
    await client.create(pod_body("pulled", [c], restartPolicy="Never", imagePullSecrets=[{"name": "regcred"}]))

    async def succeeded() -> Pod | None:
        pod = await client.get(Pod, "pulled", "default")
        return pod if pod.status and pod.status.phase == "Succeeded" else None

    pod = await wait_for(succeeded, 60, "the pulled image's pod to succeed")
    assert pod.spec.containers[0].image_pull_policy == "IfNotPresent"
    assert [r for r in registry.token_requests if r["user"] == "alice"], registry.token_requests
    images = await kubelet.cri.list_images(image)
    assert images and images[0].repo_digests[0].startswith(f"{registry.host}/private/busybox@sha256:")
    assert not images[0].pinned  # pulled from a registry: it can be pulled again, so it is not pinned

    async def pulled_events() -> list[str] | None:
        reasons = [(e.reason, e.message or "") for e in await kubelet_events(client, "pulled")]
        return [m for r, m in reasons if r in ("Pulling", "Pulled")] if ("Pulled" in dict(reasons)) else None

    messages = await wait_for(pulled_events, 10, "Pulling and Pulled events")
    assert messages[0] == f'Pulling image "{image}"'
    assert messages[1].startswith(f'Successfully pulled image "{image}" in ') and "Image size: " in messages[1]
    await client.delete(Pod, "pulled", "default")
    await client.delete(Secret, "regcred", "default")


async def test_pull_without_credentials_backs_off(
    client: AsyncClient, kubelet: RunningKubelet, registry: Registry
) -> None:
    image = f"{registry.host}/private/busybox:1"
    await kubelet.cri.remove_image(image)  # the previous test's pull must not make this one pass
    c = {"name": "main", "image": image, "command": ["true"], "imagePullPolicy": "Always"}
    await client.create(pod_body("nocreds", [c], restartPolicy="Never"))

    async def reason_is(want: str) -> dict[str, str] | None:
        w = waiting(await client.get(Pod, "nocreds", "default"))
        return w if w.get("reason") == want else None

    w = await wait_for(lambda: reason_is("ImagePullBackOff"), 30, "ImagePullBackOff")
    assert w["message"].startswith(f'Back-off pulling image "{image}": ErrImagePull: '), w
    assert "401" in w["message"] and "imagePullSecrets" in w["message"], w

    async def failed_events() -> list[str] | None:
        msgs = [e.message or "" for e in await kubelet_events(client, "nocreds") if e.reason == "Failed"]
        return msgs if any(m.startswith(f'Failed to pull image "{image}": ') for m in msgs) else None

    await wait_for(failed_events, 10, "a Failed event")
    assert not await kubelet.cri.list_images(image)
    await client.delete(Pod, "nocreds", "default")


async def test_pull_policy_never_does_not_pull(
    client: AsyncClient, kubelet: RunningKubelet, registry: Registry
) -> None:
    image = f"{registry.host}/team/busybox:1"
    c = {"name": "main", "image": image, "command": ["true"], "imagePullPolicy": "Never"}
    await client.create(pod_body("never", [c], restartPolicy="Never"))

    async def never() -> dict[str, str] | None:
        w = waiting(await client.get(Pod, "never", "default"))
        return w if w.get("reason") == "ErrImageNeverPull" else None

    w = await wait_for(never, 30, "ErrImageNeverPull")
    assert w["message"] == f'Container image "{image}" is not present with pull policy of Never'
    assert not [r for r in registry.token_requests if "team/busybox" in r.get("scope", "")]
    assert not await kubelet.cri.list_images(image)
    await client.delete(Pod, "never", "default")
