"""A small distributed PyTorch program: a tiny MLP learns y = sin(x0) + 0.5 * x1 * x2 on CPU.

Every rank generates its own shard of synthetic data from a fixed seed (nothing to download),
wraps the model in DistributedDataParallel over the gloo backend, and reads the topology the
way any torch.distributed program does (``init_method="env://"``): MASTER_ADDR, MASTER_PORT,
WORLD_SIZE and RANK, which the TrainingJob operator injects (or torchrun, or a test).

Prints ``step N loss L rank R`` every few steps and ``final step N loss L rank R`` at the end.
The loss printed is averaged over all ranks (an all_reduce), so every rank prints the same.

Knobs (env): STEPS (default 50), BATCH (64), LR (0.05), LOG_EVERY (10), SEED (0), STEP_SLEEP
(seconds each step idles, default 0: makes a run long enough to interrupt, e.g. in a test).
"""

from __future__ import annotations

import os
import signal
import sys
import time
import warnings
from datetime import timedelta

# torch works without NumPy (this program never converts to it) but warns at import.
warnings.filterwarnings("ignore", message="Failed to initialize NumPy")

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn.parallel import DistributedDataParallel  # noqa: E402


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def make_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, generator=g) * 4 - 2
    y = torch.sin(x[:, :1]) + 0.5 * x[:, 1:2] * x[:, 2:3]
    return x, y


def main() -> int:
    steps = env_int("STEPS", 50)
    batch = env_int("BATCH", 64)
    log_every = env_int("LOG_EVERY", 10)
    seed = env_int("SEED", 0)
    lr = float(os.environ.get("LR", "0.05"))
    step_sleep = float(os.environ.get("STEP_SLEEP", "0"))

    # Two cores shared by all ranks: one thread each keeps them from fighting over the CPU.
    torch.set_num_threads(1)
    started = time.monotonic()
    dist.init_process_group("gloo", init_method="env://", timeout=timedelta(seconds=120))
    rank, world = dist.get_rank(), dist.get_world_size()

    torch.manual_seed(seed)  # same initial weights everywhere (DDP also broadcasts rank 0's)
    model = DistributedDataParallel(nn.Sequential(nn.Linear(3, 32), nn.Tanh(), nn.Linear(32, 1)))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    x, y = make_data(batch * 16, seed * 1000 + rank + 1)  # each rank its own shard
    loss_fn = nn.MSELoss()

    print(f"rank {rank} of {world} joined (master {os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')})")
    mean_loss = float("nan")
    for step in range(1, steps + 1):
        i = (step * batch) % len(x)
        xb, yb = x[i : i + batch], y[i : i + batch]
        optimizer.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()  # DDP all-reduces the gradients here
        optimizer.step()
        reduced = loss.detach().clone()
        dist.all_reduce(reduced)
        mean_loss = reduced.item() / world
        if step % log_every == 0 or step == 1:
            print(f"step {step} loss {mean_loss:.4f} rank {rank}", flush=True)
        if step_sleep:
            time.sleep(step_sleep)
    print(f"final step {steps} loss {mean_loss:.4f} rank {rank}", flush=True)
    print(f"rank {rank} done in {time.monotonic() - started:.1f}s", flush=True)
    dist.barrier()
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    # In a container this program is PID 1, and the kernel drops a signal PID 1 has no handler
    # for: without one, deleting a running rank (a gang restart, cleanPodPolicy, suspend) would
    # wait out the whole grace period before the SIGKILL.
    signal.signal(signal.SIGTERM, lambda *_: os._exit(128 + signal.SIGTERM))
    code = main()
    # Leave without running C++ static destructors: gloo's background threads can still be
    # winding down then, and libstdc++ aborts ("terminate called without an active exception")
    # after the work is done and the result printed. Everything is flushed above.
    sys.stdout.flush()
    os._exit(code)
