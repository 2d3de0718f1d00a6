"""`kray describe pod` shows the scheduler's "Scheduled" Event; `kray describe podgroup` shows the
gang: minMember, the phase and what it waits for, counts, and each member with why it waits.
Against a real API server (over MemoryKV, on its own thread) through the CLI's sync client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kray.actors.apiserver import ApiServer, ServerThread
from kray.actors.scheduler.reporter import ApiStatusReporter
from kray.actors.store import MemoryKV, ObjectStore
from kray.cli.common import resolve_kind
from kray.cli.describe import describe
from kray.cli.describe_podgroup import podgroup_sections
from kray.client import AsyncClient, Client
from kray.crds import REGISTRY, Pod
from kray.crds.scheduling import POD_GROUP_LABEL

TOKEN = "describe-token"
UNSCHEDULABLE = "0/1 nodes are available: 1 Insufficient cpu."


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    async def build() -> ApiServer:
        return ApiServer(ObjectStore(MemoryKV(), REGISTRY), REGISTRY, token=TOKEN)

    thread = ServerThread(build)
    thread.start()
    yield thread
    thread.stop()


@pytest.fixture
def client(server: ServerThread) -> Iterator[Client]:
    with Client(server=server.url, token=TOKEN) as c:
        yield c


def member(name: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {POD_GROUP_LABEL: "gang"}},
        "spec": {"containers": [{"name": "c", "image": "x"}]},
    }


async def test_describe_pod_shows_the_scheduled_event(server: ServerThread, client: Client) -> None:
    pods = resolve_kind(client, "pod")
    client.create_raw({**member("solo"), "metadata": {"name": "solo", "namespace": "default"}}, pods)
    async with AsyncClient(server=server.url, token=TOKEN) as aio:
        reporter = ApiStatusReporter(aio)
        reporter.scheduled(await aio.get(Pod, "solo", "default"), "n1")
        await reporter.drain()
    page = describe(client, pods, client.get_raw(pods, "solo", "default"))
    events = page[page.index("Events:") :]
    assert "Normal" in events and "Scheduled" in events and "default-scheduler" in events, page
    assert "Successfully assigned default/solo to n1" in events, page


def test_describe_podgroup_shows_the_gang(client: Client) -> None:
    groups, pods = resolve_kind(client, "podgroup"), resolve_kind(client, "pod")
    assert groups.plural == "podgroups"
    body = {
        "apiVersion": "scheduling.kray.io/v1alpha1",
        "kind": "PodGroup",
        "metadata": {"name": "gang", "namespace": "default"},
        "spec": {"minMember": 2},
    }
    client.create_raw(body, groups)
    status = {"phase": "Scheduling", "scheduled": 0, "scheduleStartTime": "2024-01-01T00:00:00Z"}
    client.patch_raw(groups, "gang", {"status": status}, "default", subresource="status")
    for name in ("gang-0", "gang-1"):
        client.create_raw(member(name), pods)
    condition = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": UNSCHEDULABLE}
    patch = {"status": {"phase": "Pending", "conditions": [condition]}}
    client.patch_raw(pods, "gang-0", patch, "default", subresource="status")

    page = describe(client, groups, client.get_raw(groups, "gang", "default"))
    assert "Min Member:       2" in page, page
    assert "Schedule Timeout: <scheduler default>" in page, page
    assert "Phase:            Scheduling (waiting for the scheduler to place minMember pods at once)" in page, page
    assert "Members:          2 (scheduled 0, running 0, succeeded 0, failed 0)" in page, page
    rows = page[page.index("Pods:") : page.index("Events:")].splitlines()
    assert any("gang-0" in r and f"Unschedulable: {UNSCHEDULABLE}" in r for r in rows), page
    assert any("gang-1" in r and "<none>" in r for r in rows), page
    assert "Events:       <none>" in page, page


def test_podgroup_sections_without_members_or_status() -> None:
    lines = podgroup_sections({"minMember": 3, "scheduleTimeoutSeconds": 30}, {}, [])
    assert lines == [
        "Min Member:       3",
        "Schedule Timeout: 30s",
        "Phase:            <none>",
        "Members:          0 (scheduled 0, running 0, succeeded 0, failed 0)",
        "Pods:             <none>",
    ]
