"""`kray describe trainingjob`: the sections between the header and the conditions, built from
the job's spec and status and its pods (pure functions; the real node test runs the command)."""

from __future__ import annotations

import re
from typing import Any

from kray.cli.describe_training import job_state, training_sections

SPEC: dict[str, Any] = {
    "runPolicy": {"backoffLimit": 2, "cleanPodPolicy": "None", "activeDeadlineSeconds": 600},
    "replicaSpecs": {
        "Master": {
            "replicas": 1,
            "restartPolicy": "OnFailure",
            "template": {
                "spec": {
                    "containers": [
                        {"name": "sidecar", "image": "busybox"},
                        {
                            "name": "pytorch",
                            "image": "host",
                            "command": ["sh", "-c", "exec python3 /opt/train/train.py"],
                            "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}},
                        },
                    ]
                }
            },
        },
        "Worker": {
            "replicas": 2,
            "restartPolicy": "ExitCode",
            "template": {"spec": {"containers": [{"name": "main", "image": "trainer:1", "args": ["--epochs", "3"]}]}},
        },
    },
}


def condition(type_: str, status: str, at: str) -> dict[str, str]:
    return {"type": type_, "status": status, "lastTransitionTime": at}


def pod(name: str, attempt: str, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"kray.io/job-attempt": attempt}},
        "spec": {"nodeName": status.pop("node", None)},
        "status": status,
    }


def test_state_is_the_condition_that_changed_last() -> None:
    assert job_state({}) == ""
    conditions = [
        condition("Created", "True", "2024-01-01T00:00:00Z"),
        condition("Running", "False", "2024-01-01T00:00:09Z"),
        condition("Restarting", "True", "2024-01-01T00:00:09Z"),
    ]
    assert job_state({"conditions": conditions}) == "Restarting"
    conditions.append(condition("Succeeded", "True", "2024-01-01T00:00:09Z"))  # same second: the later kind
    assert job_state({"conditions": conditions}) == "Succeeded"


def test_replicas_policy_restarts_counts_and_pods() -> None:
    status = {
        "conditions": [condition("Created", "True", "t0"), condition("Running", "True", "t1")],
        "restarts": 1,
        "startTime": "2024-01-01T00:00:00Z",
        "masterAddr": "10.0.0.10",
        "replicaStatuses": {"Master": {"active": 1}, "Worker": {"active": 1, "failed": 1}},
    }
    pods = [
        pod(
            "j-master-0",
            "1",
            phase="Running",
            node="n1",
            containerStatuses=[{"name": "pytorch", "state": {"running": {}}}],
        ),
        pod(
            "j-worker-0",
            "1",
            phase="Failed",
            node="n1",
            containerStatuses=[{"name": "main", "state": {"terminated": {"exitCode": 137, "reason": "Error"}}}],
        ),
        pod(
            "j-worker-1",
            "1",
            phase="Pending",
            conditions=[
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/1 nodes: cpu"}
            ],
        ),
    ]
    text = "\n".join(training_sections(SPEC, status, pods))
    # One row per replica type: the main container (named "pytorch", else the first) and its requests.
    assert re.search(r"Master\s+1\s+OnFailure\s+host\s+cpu=500m,memory=512Mi\s+sh -c 'exec python3", text), text
    assert re.search(r"Worker\s+2\s+ExitCode\s+trainer:1\s+<none>\s+--epochs 3", text), text
    assert "backoffLimit=2 cleanPodPolicy=None activeDeadlineSeconds=600" in text
    assert re.search(r"State:\s+Running", text) and re.search(r"Restarts:\s+1 \(backoffLimit 2\)", text), text
    assert re.search(r"Master Addr:\s+10\.0\.0\.10", text), text
    assert re.search(r"Master\s+1\s+0\s+0\n\s+Worker\s+1\s+0\s+1", text), text
    assert re.search(r"j-master-0\s+Running\s+n1\s+1", text), text
    assert re.search(r"j-worker-0\s+Error\s+n1\s+1\s+main: exit code 137 \(Error\)", text), text
    assert re.search(r"j-worker-1\s+Pending\s+<none>\s+1\s+Unschedulable: 0/1 nodes: cpu", text), text


def test_a_job_with_no_status_yet() -> None:
    text = "\n".join(training_sections(SPEC, {}, []))
    assert re.search(r"State:\s+<none>", text) and re.search(r"Restarts:\s+0 \(backoffLimit 2\)", text)
    assert "Replica Statuses" not in text and re.search(r"Pods:\s+<none>", text)
