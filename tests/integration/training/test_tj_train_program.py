"""examples/train/train.py for real: master + 2 workers as local processes over gloo.

The test plays the operator's part, setting the env a TrainingJob's pods get (MASTER_ADDR,
MASTER_PORT, WORLD_SIZE, RANK, ...), so this checks the program, not the cluster.
"""

from __future__ import annotations

import importlib.util
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed (pip install torch)"),
]

TRAIN = Path(__file__).resolve().parents[3] / "examples" / "train" / "train.py"
STEP = re.compile(r"^(final )?step (\d+) loss ([0-9.]+) rank (\d+)$")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_three_ranks_train_together() -> None:
    port, world = free_port(), 3
    procs = []
    for rank in range(world):
        env = {
            **os.environ,
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "WORLD_SIZE": str(world),
            "RANK": str(rank),
            "NODE_RANK": str(rank),
            "LOCAL_RANK": "0",
            "STEPS": "50",
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, str(TRAIN)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
        )
    outputs = []
    try:
        for p in procs:
            out, _ = p.communicate(timeout=120)
            outputs.append(out)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for rank, (p, out) in enumerate(zip(procs, outputs, strict=True)):
        assert p.returncode == 0, f"rank {rank} exited {p.returncode}:\n{out}"

    finals: dict[int, tuple[int, float]] = {}
    for rank, out in enumerate(outputs):
        losses = []
        for line in out.splitlines():
            m = STEP.match(line.strip())
            if m is None:
                continue
            assert int(m.group(4)) == rank, line
            if m.group(1):
                finals[rank] = (int(m.group(2)), float(m.group(3)))
            else:
                losses.append(float(m.group(3)))
        assert len(losses) >= 2, out
        assert losses[-1] < losses[0] / 4, f"rank {rank}: the loss did not fall: {losses}"
    assert sorted(finals) == [0, 1, 2]
    assert len(set(finals.values())) == 1, finals  # the same step and the same (all-reduced) loss
