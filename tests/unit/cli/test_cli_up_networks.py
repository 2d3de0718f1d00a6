"""`kray up` checks its address ranges before it starts anything: a clear error naming the flag."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--service-cidr", "10.96.0.0/33"], "Invalid value for '--service-cidr'"),
        (["--service-cidr", "10.96.0.1/16"], "has host bits set"),
        (["--service-cidr", "10.96.0.0/31"], "too small for Services"),
        (["--cluster-cidr", "nonsense"], "Invalid value for '--cluster-cidr'"),
        (["--pod-cidr", "10.251.0.0/240"], "Invalid value for '--pod-cidr'"),
        (["--service-cidr", "10.244.128.0/20"], "10.244.128.0/20 overlaps --cluster-cidr 10.244.0.0/16"),
        (
            ["--service-cidr", "10.251.3.0/24", "--pod-cidr", "10.251.0.0/16"],
            "10.251.3.0/24 overlaps --pod-cidr 10.251.0.0/16",
        ),
    ],
)
def test_kray_up_refuses_bad_networks_before_starting_anything(tmp_path: Path, args: list[str], message: str) -> None:
    from kray.cli.main import cli

    state = tmp_path / "state"
    result = CliRunner().invoke(cli, ["up", "--state-dir", str(state), *args])
    assert result.exit_code == 2, result.output  # click's usage error
    assert message in result.output
    assert not state.exists()  # no etcd, no Ray, no state written
