"""`kray get quota` and `kray describe quota` without a server: kubectl's columns and page."""

from __future__ import annotations

from typing import Any

from kray.cli import printers
from kray.cli.describe_quota import render_quota
from kray.client import ResourceRef

QUOTAS = ResourceRef("", "v1", "resourcequotas", True, "ResourceQuota", "resourcequota", ("quota",))
HARD = {"requests.nvidia.com/gpu": "8", "pods": "20", "limits.memory": "256Gi", "requests.cpu": "64"}


def a_quota(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "team-a", "namespace": "ml", "creationTimestamp": "2024-01-01T00:00:00Z"},
        "spec": {"hard": HARD, **spec},
        "status": {"hard": HARD, "used": {"requests.nvidia.com/gpu": "4", "pods": "2", "requests.cpu": "8"}},
    }


def test_get_prints_request_and_limit_columns() -> None:
    header, [row] = printers.table_rows(QUOTAS, [a_quota()])
    assert header == ["NAME", "AGE", "REQUEST", "LIMIT"]
    assert row[0] == "team-a" and row[1].endswith(("d", "y"))
    assert row[2:] == ["pods: 2/20, requests.cpu: 8/64, requests.nvidia.com/gpu: 4/8", "limits.memory: 0/256Gi"]
    _, [fresh] = printers.table_rows(QUOTAS, [{"metadata": {"name": "new"}, "spec": {"hard": HARD}}])
    assert fresh[2:] == ["", ""]  # no status yet: kubectl prints the empty columns too


def test_describe_prints_the_used_hard_table() -> None:
    assert render_quota(a_quota()).splitlines() == [
        "Name:                    team-a",
        "Namespace:               ml",
        "Resource                 Used  Hard",
        "--------                 ----  ----",
        "limits.memory            0     256Gi",
        "pods                     2     20",
        "requests.cpu             8     64",
        "requests.nvidia.com/gpu  4     8",
    ]
    scoped = render_quota(a_quota(scopes=["NotBestEffort"])).splitlines()
    assert scoped[:4] == [
        "Name:       team-a",
        "Namespace:  ml",
        "Scopes:     NotBestEffort",
        " * Matches all pods that have at least one resource requirement set. These pods have a burstable or "
        "guaranteed quality of service.",
    ]
    assert scoped[4] == "Resource                 Used  Hard"
