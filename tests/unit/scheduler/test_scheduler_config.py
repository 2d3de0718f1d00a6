"""KubeSchedulerConfiguration: validation with field-named errors, profiles per schedulerName,
and ``kray up --scheduler-config`` refusing a bad file before starting anything."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from kray.actors.scheduler.config import SchedulerConfigError, load_scheduler_config
from kray.actors.scheduler.framework import FilterPlugin, ScorePlugin
from kray.actors.scheduler.scheduler import Scheduler

from .builders import make_scheduler, node, pod

PACKER = """
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
leaderElection: {leaderElect: false}
profiles:
  - schedulerName: default-scheduler
  - schedulerName: gpu-packer
    percentageOfNodesToScore: 100
    plugins:
      score:
        enabled: [{name: NodeResourcesFit, weight: 10}]
        disabled: [{name: PodTopologySpread}]
    pluginConfig:
      - name: NodeResourcesFit
        args: {scoringStrategy: {type: MostAllocated}}
"""


def profile_dict(**plugins: Any) -> dict[str, Any]:
    return {"profiles": [{"schedulerName": "x", "plugins": plugins}]}


def test_profiles_build_with_per_point_enable_disable() -> None:
    profiles = load_scheduler_config(PACKER)
    assert [p.scheduler_name for p in profiles] == ["default-scheduler", "gpu-packer"]
    s = Scheduler(make_scheduler()[1], profiles=profiles)
    packer = s.frameworks["gpu-packer"]
    assert packer.weights["NodeResourcesFit"] == 10
    assert packer.plugin("NodeResourcesFit").strategy == "MostAllocated"
    spread = packer.plugin("PodTopologySpread")
    assert spread in packer.points(FilterPlugin) and spread not in packer.points(ScorePlugin)
    default = s.frameworks["default-scheduler"]
    assert default.plugin("PodTopologySpread") in default.points(ScorePlugin)
    assert default.plugin("NodeResourcesFit").strategy == "LeastAllocated"


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        (
            profile_dict(score={"enabled": [{"name": "NodeResourcesFitt"}]}),
            'profiles[0].plugins.score.enabled[0].name: Unsupported value: "NodeResourcesFitt": unknown plugin',
        ),
        (
            profile_dict(score={"enabled": [{"name": "NodeResourcesFit", "weight": 0}]}),
            "score.enabled[0].weight: Invalid value: 0",
        ),
        (
            profile_dict(score={"enabled": [{"name": "NodeResourcesFit", "weight": 101}]}),
            "weight: Invalid value: 101: must be in 1..100",
        ),
        (
            profile_dict(filter={"enabled": [{"name": "NodeResourcesFit", "weight": 2}]}),
            "filter.enabled[0].weight: Forbidden",
        ),
        (profile_dict(score={"enabled": [{"name": "DefaultBinder"}]}), '"DefaultBinder": does not implement score'),
        (profile_dict(scor={"enabled": []}), "profiles[0].plugins.scor: Extra inputs are not permitted"),
        (
            {
                "profiles": [
                    {"pluginConfig": [{"name": "NodeResourcesFit", "args": {"scoringStrategy": {"type": "Most"}}}]}
                ]
            },
            "profiles[0].pluginConfig[0].args: Invalid value: NodeResourcesFit: "
            "NodeResourcesFit: unknown scoring strategy 'Most'",
        ),
        (
            {"profiles": [{"schedulerName": "a"}, {"schedulerName": "a"}]},
            'profiles[1].schedulerName: Duplicate value: "a"',
        ),
        (
            {"profiles": [{"percentageOfNodesToScore": 150}]},
            "profiles[0].percentageOfNodesToScore: Input should be less than or equal to 100",
        ),
        ({"kind": "Pod"}, 'kind: Unsupported value: "Pod"'),
    ],
)
def test_errors_name_the_field(config: dict[str, Any], problem: str) -> None:
    with pytest.raises(SchedulerConfigError) as err:
        load_scheduler_config(config)
    assert any(problem in p for p in err.value.problems), err.value.problems


async def test_pods_pick_their_profile_and_other_schedulers_pods_are_left_alone() -> None:
    profiles = load_scheduler_config(PACKER)
    s, binder, reporter, _ = make_scheduler(nodes=[node("busy", cpu=8), node("idle", cpu=8)], profiles=profiles)
    await binder.bind(pod("load", cpu=4, node_name="busy"), "busy")
    s.on_pod_add(pod("spread", cpu=1))
    s.on_pod_add(pod("packed", cpu=1, schedulerName="gpu-packer"))
    s.on_pod_add(pod("foreign", cpu=1, schedulerName="volcano"))
    await s.run_until_idle()
    assert binder.bound["default/spread"] == "idle"  # LeastAllocated
    assert binder.bound["default/packed"] == "busy"  # MostAllocated
    assert "default/foreign" not in binder.bound and "default/foreign" not in reporter.unschedulable_messages


def test_kray_up_refuses_a_bad_config_before_starting_anything(tmp_path: Path) -> None:
    from kray.cli.main import cli

    bad = tmp_path / "sched.yaml"
    bad.write_text("profiles:\n  - plugins:\n      score:\n        enabled: [{name: Nope, weight: -1}]\n")
    state = tmp_path / "state"
    result = CliRunner().invoke(cli, ["up", "--scheduler-config", str(bad), "--state-dir", str(state)])
    assert result.exit_code != 0
    assert f"invalid scheduler config {bad}" in result.output
    assert 'profiles[0].plugins.score.enabled[0].name: Unsupported value: "Nope"' in result.output
    assert not state.exists()  # no etcd, no Ray, no state written
