"""Fixtures of the device-plugin end-to-end tests."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def node_root() -> Iterator[Path]:
    """The node's root: short, since device-plugin sockets live under it and unix socket paths
    stop at 107 bytes."""
    root = Path(tempfile.mkdtemp(prefix="kg-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)
