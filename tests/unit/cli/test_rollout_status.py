"""kubectl's rollout status viewers for DaemonSets and StatefulSets, and target parsing."""

from __future__ import annotations

from typing import Any

import pytest

from kray.cli.common import CliError
from kray.cli.rollout import daemonset_status, parse_kind_target, parse_target, statefulset_status


def obj(name: str, generation: int, spec: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": name, "generation": generation}, "spec": spec, "status": status}


@pytest.mark.parametrize(
    ("status", "generation", "want"),
    [
        ({"observedGeneration": 1}, 2, ("Waiting for daemon set spec update to be observed...", False)),
        ({"observedGeneration": 2, "desiredNumberScheduled": 3, "updatedNumberScheduled": 1}, 2,
         ('Waiting for daemon set "agent" rollout to finish: 1 out of 3 new pods have been updated...', False)),
        ({"observedGeneration": 2, "desiredNumberScheduled": 3, "updatedNumberScheduled": 3, "numberAvailable": 2},
         2, ('Waiting for daemon set "agent" rollout to finish: 2 of 3 updated pods are available...', False)),
        ({"observedGeneration": 2, "desiredNumberScheduled": 3, "updatedNumberScheduled": 3, "numberAvailable": 3},
         2, ('daemon set "agent" successfully rolled out', True)),
    ],
)  # fmt: skip
def test_daemonset_status(status: dict[str, Any], generation: int, want: tuple[str, bool]) -> None:
    assert daemonset_status(obj("agent", generation, {}, status)) == want


@pytest.mark.parametrize(
    ("spec", "status", "want"),
    [
        ({"replicas": 3}, {}, ("Waiting for statefulset spec update to be observed...", False)),
        ({"replicas": 3}, {"observedGeneration": 1, "readyReplicas": 1}, ("Waiting for 2 pods to be ready...", False)),
        ({"replicas": 3, "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}},
         {"observedGeneration": 1, "readyReplicas": 3, "updatedReplicas": 0},
         ("Waiting for partitioned roll out to finish: 0 out of 1 new pods have been updated...", False)),
        ({"replicas": 3, "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}},
         {"observedGeneration": 1, "readyReplicas": 3, "updatedReplicas": 1},
         ("partitioned roll out complete: 1 new pods have been updated...", True)),
        ({"replicas": 2}, {"observedGeneration": 1, "readyReplicas": 2, "updatedReplicas": 1,
                           "currentRevision": "db-1", "updateRevision": "db-2"},
         ("waiting for statefulset rolling update to complete 1 pods at revision db-2...", False)),
        ({"replicas": 2}, {"observedGeneration": 1, "readyReplicas": 2, "currentReplicas": 2,
                           "currentRevision": "db-2", "updateRevision": "db-2"},
         ("statefulset rolling update complete 2 pods at revision db-2...", True)),
    ],
)  # fmt: skip
def test_statefulset_status(spec: dict[str, Any], status: dict[str, Any], want: tuple[str, bool]) -> None:
    assert statefulset_status(obj("db", 1, spec, status)) == want


def test_on_delete_has_no_rollout_status_and_targets_parse() -> None:
    for viewer in (daemonset_status, statefulset_status):
        with pytest.raises(CliError, match="only available for RollingUpdate"):
            viewer(obj("x", 1, {"updateStrategy": {"type": "OnDelete"}}, {"observedGeneration": 1}))
    assert parse_kind_target(("ds/agent",)) == ("daemonsets", "agent")
    assert parse_kind_target(("statefulset.apps", "db")) == ("statefulsets", "db")
    assert parse_target(("deploy/web",)) == "web"
    with pytest.raises(CliError, match="ReplicaSets"):
        parse_target(("sts/db",))
    with pytest.raises(CliError, match='not "pod"'):
        parse_kind_target(("pod/x",))
