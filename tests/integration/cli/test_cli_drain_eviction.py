"""``kray drain`` evicts through the eviction subresource, like kubectl: a PodDisruptionBudget
that has no disruption to spare makes it retry every 5 s (with kubectl's message) until
--timeout; one that allows it lets the drain finish; ``--disable-eviction`` deletes anyway.
``kray get pdb`` / ``kray describe pdb`` print the budget.

The CLI test server runs no disruption controller, so the tests write the PDB's status through
the status subresource, as the controller would.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
from cli_it import kray

from kray.client import Client
from kray.crds import Pod
from kray.crds.policy import PodDisruptionBudget

VIOLATION = "Cannot evict pod as it would violate the pod's disruption budget."


@pytest.fixture
def node(client: Client) -> str:
    name = f"n-{uuid.uuid4().hex[:8]}"
    client.create_raw({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})
    return name


def ready_pod(client: Client, ns: str, name: str, node: str, app: str = "zk") -> None:
    owner = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": str(uuid.uuid4()), "controller": True}
    meta = {"name": name, "namespace": ns, "labels": {"app": app}, "ownerReferences": [owner]}
    spec = {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}
    client.create_raw({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec})
    status = {"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}
    client.patch_raw(Pod, name, status, ns, subresource="status")


def budget(client: Client, ns: str, allowed: int) -> None:
    meta = {"name": "zk-pdb", "namespace": ns}
    spec = {"minAvailable": 2, "selector": {"matchLabels": {"app": "zk"}}}
    client.create_raw({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": meta, "spec": spec})
    set_allowed(client, ns, allowed)


def set_allowed(client: Client, ns: str, allowed: int) -> None:
    status: dict[str, Any] = {"observedGeneration": 1, "disruptionsAllowed": allowed, "currentHealthy": 2 + allowed,
                              "desiredHealthy": 2, "expectedPods": 2 + allowed}  # fmt: skip
    client.patch_raw(PodDisruptionBudget, "zk-pdb", {"status": status}, ns, subresource="status")


def pod_names(client: Client, ns: str) -> list[str]:
    return sorted(p["metadata"]["name"] for p in client.list_raw(Pod, ns).items)


def test_drain_retries_while_the_budget_blocks_then_times_out(client: Client, ns: str, node: str) -> None:
    ready_pod(client, ns, "zk-0", node)
    budget(client, ns, allowed=0)
    started = time.monotonic()
    r = kray("drain", node, "--timeout", "2s")
    assert 1.9 < time.monotonic() - started < 6
    assert r.exit_code == 1
    assert r.stdout.splitlines() == [f"node/{node} cordoned", f"evicting pod {ns}/zk-0", f"evicting pod {ns}/zk-0"]
    timeout = f'error when evicting pods/"zk-0" -n "{ns}": global timeout reached: 2s'
    assert r.stderr.splitlines() == [
        f'error when evicting pods/"zk-0" -n "{ns}" (will retry after 5s): {VIOLATION}',
        f'error: unable to drain node "{node}" due to error: {timeout}, continuing command...',
        "There are pending nodes to be drained:",
        f" {node}",
        f"error: {timeout}",
    ]
    assert pod_names(client, ns) == ["zk-0"]


def test_drain_evicts_what_the_budget_allows(client: Client, ns: str, node: str) -> None:
    ready_pod(client, ns, "zk-0", node)
    ready_pod(client, ns, "zk-1", "elsewhere")
    ready_pod(client, ns, "web", node, app="web")  # no budget selects it
    budget(client, ns, allowed=1)
    r = kray("drain", node, "--timeout", "10s")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.splitlines() == [
        f"node/{node} cordoned",
        f"evicting pod {ns}/web",
        f"evicting pod {ns}/zk-0",
        "pod/web evicted",
        "pod/zk-0 evicted",
        f"node/{node} drained",
    ]
    assert r.stderr == ""
    assert pod_names(client, ns) == ["zk-1"]
    status = client.get_raw(PodDisruptionBudget, "zk-pdb", ns)["status"]
    assert status["disruptionsAllowed"] == 0 and list(status["disruptedPods"]) == ["zk-0"]


def test_drain_goes_on_once_the_budget_allows(client: Client, ns: str, node: str) -> None:
    ready_pod(client, ns, "zk-0", node)
    budget(client, ns, allowed=0)
    # A replacement became ready elsewhere: the controller would raise disruptionsAllowed.
    later = threading.Timer(1.0, set_allowed, (client, ns, 1))
    later.start()
    try:
        r = kray("drain", node, "--timeout", "30s")
    finally:
        later.join()
    assert r.exit_code == 0, r.stderr
    assert r.stdout.splitlines() == [
        f"node/{node} cordoned",
        f"evicting pod {ns}/zk-0",
        f"evicting pod {ns}/zk-0",
        "pod/zk-0 evicted",
        f"node/{node} drained",
    ]
    assert r.stderr == f'error when evicting pods/"zk-0" -n "{ns}" (will retry after 5s): {VIOLATION}\n'


def test_disable_eviction_deletes_past_the_budget(client: Client, ns: str, node: str) -> None:
    ready_pod(client, ns, "zk-0", node)
    budget(client, ns, allowed=0)
    r = kray("drain", node, "--disable-eviction", "--timeout", "10s")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.splitlines() == [f"node/{node} cordoned", "pod/zk-0 deleted", f"node/{node} drained"]
    assert pod_names(client, ns) == []


def test_get_and_describe_pdb(client: Client, ns: str, node: str) -> None:
    budget(client, ns, allowed=1)
    r = kray("get", "pdb", "-n", ns)
    assert r.exit_code == 0, r.stderr
    header, row = r.stdout.splitlines()
    assert header.split() == ["NAME", "MIN", "AVAILABLE", "MAX", "UNAVAILABLE", "ALLOWED", "DISRUPTIONS", "AGE"]
    assert row.split()[:4] == ["zk-pdb", "2", "N/A", "1"]  # kubectl prints an unset bound as N/A
    r = kray("describe", "pdb", "zk-pdb", "-n", ns)
    assert r.exit_code == 0, r.stderr
    assert "Kind:         PodDisruptionBudget" in r.stdout
    assert "Min Available:" in r.stdout and "Disruptions Allowed:" in r.stdout
