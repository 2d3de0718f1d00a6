"""The end-of-session leftover check (tests/leftovers.py) sees what a test prefix left, and
nothing of anyone else's."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.leftovers import leftovers, session_prefix

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]


def test_finds_a_netns_and_a_link_of_its_prefix_only() -> None:
    mine, other = session_prefix("kl"), "kl" + "0" * 6  # `other`: never registered
    made = []
    try:
        for ns in (mine + "ns", other + "ns"):
            subprocess.run(["ip", "netns", "add", ns], check=True)
            made.append(ns)
        subprocess.run(["ip", "link", "add", mine + "d", "type", "veth", "peer", "name", mine + "e"], check=True)
        made.append(mine + "d")
        found = leftovers({mine})
        assert f"netns {mine}ns" in found and f"link {mine}d" in found
        assert not [f for f in found if other in f]
    finally:
        for name in made:
            if name.endswith("ns"):
                subprocess.run(["ip", "netns", "del", name], capture_output=True)
            else:
                subprocess.run(["ip", "link", "del", name], capture_output=True)
    assert leftovers({mine}) == []
