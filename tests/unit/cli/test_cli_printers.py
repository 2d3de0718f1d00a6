"""Table printing without a server: columns, ages and statuses as kubectl shows them."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from kray.cli import printers
from kray.client import ResourceRef

PODS = ResourceRef("", "v1", "pods", True, "Pod", "pod", ("po",))
NODES = ResourceRef("", "v1", "nodes", False, "Node", "node", ("no",))
SERVICES = ResourceRef("", "v1", "services", True, "Service", "service", ("svc",))
WIDGETS = ResourceRef("example.com", "v1", "widgets", True, "Widget", "widget")


def ago(seconds: int) -> str:
    return (datetime.now(timezone.utc) - timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (5, "5s"),
        (119, "119s"),
        (150, "2m30s"),
        (600, "10m"),
        (3 * 3600 + 1200, "3h20m"),
        (30 * 3600, "30h"),
        (3 * 86400 + 5 * 3600, "3d5h"),
        (45 * 86400, "45d"),
        (800 * 86400, "2y70d"),
    ],
)
def test_human_duration(seconds: int, text: str) -> None:
    assert printers.human_duration(seconds) == text


def pod(name: str, **status: object) -> dict:
    return {
        "metadata": {"name": name, "namespace": "default", "creationTimestamp": ago(65)},
        "spec": {"containers": [{"name": "c"}, {"name": "d"}], "nodeName": "n1"},
        "status": status,
    }


def test_pod_table_ready_status_restarts_and_wide() -> None:
    running = pod(
        "web",
        phase="Running",
        podIP="10.0.0.5",
        containerStatuses=[
            {"name": "c", "ready": True, "restartCount": 2, "state": {"running": {}}},
            {
                "name": "d",
                "ready": False,
                "restartCount": 1,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            },
        ],
    )
    header, rows = printers.table_rows(PODS, [running, pod("new", phase="Pending")], wide=True)
    assert header == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"]
    assert rows[0] == ["web", "1/2", "CrashLoopBackOff", "3", "65s", "10.0.0.5", "n1"]
    assert rows[1][:3] == ["new", "0/2", "Pending"] and rows[1][5] == "<none>"
    terminating = pod("old", phase="Running")
    terminating["metadata"]["deletionTimestamp"] = ago(1)
    assert printers.pod_status(terminating) == "Terminating"


def test_table_is_aligned_like_kubectl() -> None:
    text = printers.format_table(["NAME", "AGE"], [["a", "1s"], ["longer-name", "2m"]])
    assert text.splitlines() == ["NAME          AGE", "a             1s", "longer-name   2m"]


def test_node_service_generic_and_namespace_columns() -> None:
    node = {
        "metadata": {
            "name": "n1",
            "labels": {"node-role.kubernetes.io/control-plane": ""},
            "creationTimestamp": ago(5),
        },
        "spec": {"unschedulable": True},
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}],
            "nodeInfo": {"kubeletVersion": "v1.31"},
        },
    }
    assert printers.table_rows(NODES, [node])[1] == [["n1", "Ready,SchedulingDisabled", "control-plane", "5s", "v1.31"]]
    svc = {
        "metadata": {"name": "web", "namespace": "prod", "creationTimestamp": ago(5)},
        "spec": {"type": "NodePort", "clusterIP": "10.96.0.10", "ports": [{"port": 80, "nodePort": 30080}]},
    }
    header, rows = printers.table_rows(SERVICES, [svc], with_namespace=True)
    assert header == ["NAMESPACE", "NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert rows == [["prod", "web", "NodePort", "10.96.0.10", "<none>", "80:30080/TCP", "5s"]]
    header, rows = printers.table_rows(WIDGETS, [{"metadata": {"name": "w"}}], kind_prefix=True)
    assert header == ["NAME", "AGE"] and rows == [["widget.example.com/w", "<unknown>"]]


def test_output_formats() -> None:
    obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"}}
    assert printers.object_name(PODS, obj) == "pod/web"
    assert printers.to_yaml(obj).splitlines()[0] == "apiVersion: v1"
    assert printers.as_list([obj])["kind"] == "List"


JOBS = ResourceRef("batch", "v1", "jobs", True, "Job", "job")
ENDPOINTS = ResourceRef("", "v1", "endpoints", True, "Endpoints", "endpoints", ("ep",))


def test_job_and_endpoints_columns() -> None:
    running = {
        "metadata": {"name": "j1", "creationTimestamp": ago(90)},
        "spec": {"completions": 3},
        "status": {"succeeded": 1, "startTime": ago(90)},
    }
    done = {
        "metadata": {"name": "j2", "creationTimestamp": ago(600)},
        "spec": {},
        "status": {
            "succeeded": 1,
            "startTime": ago(600),
            "completionTime": ago(570),
            "conditions": [{"type": "Complete", "status": "True"}],
        },
    }
    header, rows = printers.table_rows(JOBS, [running, done])
    assert header == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    assert rows == [["j1", "Running", "1/3", "90s", "90s"], ["j2", "Complete", "1/1", "30s", "10m"]]
    ep = {
        "metadata": {"name": "web", "creationTimestamp": ago(5)},
        "subsets": [{"addresses": [{"ip": f"10.0.0.{i}"} for i in range(1, 6)], "ports": [{"port": 80}]}],
    }
    empty = {"metadata": {"name": "idle", "creationTimestamp": ago(5)}}
    assert printers.table_rows(ENDPOINTS, [ep, empty])[1] == [
        ["web", "10.0.0.1:80,10.0.0.2:80,10.0.0.3:80 + 2 more...", "5s"],
        ["idle", "<none>", "5s"],
    ]


def test_server_table_rows_hide_wide_columns_and_format_dates() -> None:
    columns = [
        {"name": "Name", "type": "string"},
        {"name": "Holder", "type": "string"},
        {"name": "Detail", "type": "boolean", "priority": 1},
        {"name": "Age", "type": "date"},
    ]
    rows = [{"cells": ["l1", None, True, ago(5)], "object": {"metadata": {"name": "l1", "namespace": "ns1"}}}]
    assert printers.server_table_rows(WIDGETS, columns, rows) == (["NAME", "HOLDER", "AGE"], [["l1", "<none>", "5s"]])
    header, out = printers.server_table_rows(WIDGETS, columns, rows, wide=True, with_namespace=True, kind_prefix=True)
    assert header == ["NAMESPACE", "NAME", "HOLDER", "DETAIL", "AGE"]
    assert out == [["ns1", "widget.example.com/l1", "<none>", "true", "5s"]]
