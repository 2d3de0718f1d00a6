"""`kray logs` target forms, decided offline before any request."""

from __future__ import annotations

import pytest

from kray.cli.common import CliError
from kray.cli.logs import _target


@pytest.mark.parametrize(
    ("target", "selector", "expected"),
    [
        ("web", None, ("web", None)),
        ("pod/web", None, ("web", None)),
        ("trainingjob/train", None, (None, "kray.io/job-name=train")),
        ("tj/train", None, (None, "kray.io/job-name=train")),
        (None, "app=web", (None, "app=web")),
    ],
)
def test_targets(target: str | None, selector: str | None, expected: tuple[str | None, str | None]) -> None:
    assert _target(target, selector) == expected


@pytest.mark.parametrize(
    ("target", "selector", "message"),
    [
        ("web", "app=web", "not both"),
        (None, None, "is required"),
        ("deploy/web", None, 'cannot get logs of "deploy"'),
    ],
)
def test_bad_targets(target: str | None, selector: str | None, message: str) -> None:
    with pytest.raises(CliError, match=message):
        _target(target, selector)
