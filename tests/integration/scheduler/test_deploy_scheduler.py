"""deploy_scheduler as `kray up` uses it: idempotent, and a new scheduler config replaces the shards."""

from __future__ import annotations

import pytest

from kray.config import KrayConfig

pytestmark = [pytest.mark.ray, pytest.mark.slow]

CONFIG_A = {"profiles": [{"schedulerName": "default-scheduler"}]}
CONFIG_B = {
    "profiles": [
        {"schedulerName": "default-scheduler"},
        {
            "schedulerName": "gpu-packer",
            "pluginConfig": [{"name": "NodeResourcesFit", "args": {"scoringStrategy": {"type": "MostAllocated"}}}],
        },
    ]
}


def test_redeploy_keeps_a_shard_with_the_same_config_and_replaces_one_with_another(ray_cluster: str) -> None:
    import ray

    from kray.actors.scheduler.actor import deploy_scheduler
    from kray.actors.scheduler.config import SchedulerConfigError

    # No API server behind it: the shard keeps retrying its list, which is fine for this test.
    config = KrayConfig(server="http://127.0.0.1:9", token="t")
    handles = deploy_scheduler(config, 1, scheduler_config=CONFIG_A)
    try:
        assert ray.get(handles[0].settings.remote(), timeout=60) == (None, CONFIG_A)
        again = deploy_scheduler(config, 1, scheduler_config=CONFIG_A)
        assert again[0]._actor_id == handles[0]._actor_id
        replaced = deploy_scheduler(config, 1, scheduler_config=CONFIG_B)
        assert replaced[0]._actor_id != handles[0]._actor_id
        assert ray.get(replaced[0].settings.remote(), timeout=60) == (None, CONFIG_B)
        handles = replaced
        with pytest.raises(SchedulerConfigError, match="unknown plugin"):
            deploy_scheduler(
                config, 1, scheduler_config={"profiles": [{"plugins": {"score": {"enabled": [{"name": "X"}]}}}]}
            )
    finally:
        for h in handles:
            ray.kill(h, no_restart=True)
