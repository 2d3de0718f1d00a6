"""Shared by the CLI integration tests: running ``kray`` in-process against the session's server."""

from __future__ import annotations

from click.testing import CliRunner, Result

from kray.cli.main import cli


def kray(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)
