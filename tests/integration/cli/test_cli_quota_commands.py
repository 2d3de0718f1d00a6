"""``kray get quota`` and ``kray describe quota`` against a real API server over HTTP: kubectl's
columns and table. The CLI test server runs no resourcequota controller, so the test writes the
status through the status subresource, as the controller would."""

from __future__ import annotations

import uuid

from cli_it import kray

from kray.client import Client
from kray.crds.core.quota import ResourceQuota


def test_get_and_describe_quota(client: Client) -> None:
    ns = f"q-{uuid.uuid4().hex[:8]}"
    client.create_raw({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    hard = {"requests.nvidia.com/gpu": "8", "pods": "20", "limits.memory": "256Gi"}
    meta = {"name": "team-a", "namespace": ns}
    client.create_raw({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": meta, "spec": {"hard": hard}})
    used = {"requests.nvidia.com/gpu": "4", "pods": "2", "limits.memory": "0"}
    client.patch_raw(ResourceQuota, "team-a", {"status": {"hard": hard, "used": used}}, ns, subresource="status")

    r = kray("get", "quota", "-n", ns)
    assert r.exit_code == 0, r.output
    header, row = r.output.splitlines()
    assert header.split() == ["NAME", "AGE", "REQUEST", "LIMIT"]
    assert row.startswith("team-a")
    assert row.endswith("pods: 2/20, requests.nvidia.com/gpu: 4/8   limits.memory: 0/256Gi")

    r = kray("describe", "quota", "team-a", "-n", ns)
    assert r.exit_code == 0, r.output
    assert r.output.splitlines() == [
        "Name:                    team-a",
        f"Namespace:               {ns}",
        "Resource                 Used  Hard",
        "--------                 ----  ----",
        "limits.memory            0     256Gi",
        "pods                     2     20",
        "requests.nvidia.com/gpu  4     8",
    ]
    r = kray("get", "resourcequotas", "-n", ns, "-o", "jsonpath={.items[0].status.used.pods}")
    assert (r.exit_code, r.output.strip()) == (0, "2")
