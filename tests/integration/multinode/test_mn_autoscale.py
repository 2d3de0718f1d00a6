"""Autoscaling through the node agent, with Ray's own autoscaler over ``FakeMultiNodeProvider``
(``mn_autoscale_driver.py``, a process of its own): a Pod too big for the only node is
Unschedulable, the agent's ``request_resources`` makes the autoscaler launch a worker, the
agent gives the new Ray node a kubelet, and the Pod is bound there. Nothing of the run is left.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.leftovers import session_prefix

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.etcd, pytest.mark.ray]
DRIVER = Path(__file__).with_name("mn_autoscale_driver.py")


def sh(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout


def test_unschedulable_pod_brings_a_node_with_a_kubelet(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: the new node's kubelet runs containers")
    prefix = session_prefix("ka", 2)  # bridges ka<id>h0 / ka<id>w0
    run_id = prefix[2:]
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "KRAY_SERVER", "KRAY_TOKEN")}
    proc = subprocess.Popen(
        [sys.executable, str(DRIVER), str(tmp_path), run_id, f"10.252.{4 * (int(run_id, 16) % 64)}.0/22"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True,
    )  # fmt: skip
    try:
        out, _ = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=90)
    print(out)
    assert proc.returncode == 0, out[-6000:]
    measured = json.loads(out.strip().splitlines()[-1])
    assert measured["pod_bound_s"] > 0
    links = [line.split()[0] for line in sh("ip", "-br", "link").splitlines() if line.startswith(prefix)]
    tables = re.findall(rf"table \S+ (kray-as-{run_id}-\S+)", sh("nft", "list", "tables"))
    assert not links and not tables, (links, tables)
