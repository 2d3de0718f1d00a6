"""scripts/cluster.yaml checked offline with Ray's own cluster-launcher code (prepare_config then
validate_config, what `ray up` runs first), plus configs it must reject."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("jsonschema")
from click import ClickException
from jsonschema import ValidationError
from ray.autoscaler._private.util import prepare_config, validate_config

CONFIG = Path(__file__).resolve().parents[3] / "scripts" / "cluster.yaml"


def load() -> dict[str, Any]:
    return yaml.safe_load(CONFIG.read_text())


def check(config: dict[str, Any]) -> dict[str, Any]:
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def test_cluster_yaml_is_valid_for_the_cluster_launcher() -> None:
    config = load()
    prepared = check(config)
    assert prepared["provider"]["type"] == "local"
    node_type = prepared["available_node_types"][prepared["head_node_type"]]
    assert node_type["min_workers"] == node_type["max_workers"] == len(config["provider"]["worker_ips"])
    head = " ".join(prepared["head_start_ray_commands"])
    assert "ray start --head --port=6379 --autoscaling-config=~/ray_bootstrap_config.yaml" in head
    assert "kray up --ray-address 127.0.0.1:6379" in head
    assert "ray start --address=$RAY_HEAD_IP:6379" in " ".join(prepared["worker_start_ray_commands"])
    every = [*prepared["setup_commands"], *prepared["head_start_ray_commands"], *prepared["worker_start_ray_commands"]]
    assert not any("ray stop" in c for c in every)  # it kills every Ray on the machine by name
    assert all("RAY_AUTH_MODE=disabled" in c for c in prepared["head_start_ray_commands"])
    assert any("scripts/install.sh" in c for c in prepared["setup_commands"])
    assert prepared["auth"]["ssh_user"]


def test_kray_up_accepts_the_flags_used() -> None:
    from kray.cli.cluster import up

    names = {opt for p in up.params for opt in getattr(p, "opts", [])}
    assert {"--ray-address", "--host"} <= names


@pytest.mark.parametrize(
    ("breakage", "error"),
    [
        pytest.param(lambda c: c.pop("provider"), KeyError, id="missing-provider"),
        pytest.param(lambda c: c["provider"].pop("type"), KeyError, id="provider-without-type"),
        pytest.param(
            lambda c: c["provider"].update(worker_ips="10.0.0.11"), ValidationError, id="worker-ips-not-a-list"
        ),
        pytest.param(lambda c: c["auth"].update(ssh_user=["root"]), ValidationError, id="ssh-user-not-a-string"),
        pytest.param(lambda c: c.update(max_workers="two"), TypeError, id="max-workers-not-a-number"),
        pytest.param(
            lambda c: c.update(head_start_ray_commands="ray start"), ValidationError, id="commands-not-a-list"
        ),
        pytest.param(lambda c: c.update(no_such_field=1), ValidationError, id="unknown-top-level-field"),
    ],
)
def test_broken_configs_are_rejected(breakage: Any, error: type[BaseException]) -> None:
    config = load()
    breakage(config)
    with pytest.raises(error):
        check(config)


def test_local_provider_needs_head_and_worker_ips() -> None:
    config = load()
    del config["provider"]["head_ip"]
    with pytest.raises(ClickException, match="head_ip"):  # the launcher's cli_logger.abort
        check(config)
