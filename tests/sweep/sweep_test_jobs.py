"""Job functions for the sweep-runner tests: each appends a line to ``run_dir/calls.txt`` so the
tests can count how often a job really ran, across processes."""

from __future__ import annotations

import math
import os
from pathlib import Path


def _count(run_dir: Path) -> int:
    path = Path(run_dir) / "calls.txt"
    with path.open("a") as fh:
        fh.write("call\n")
    return len(path.read_text().splitlines())


def square(config: dict, run_dir: Path) -> dict:
    _count(run_dir)
    return {"x": config["x"], "y": config["x"] ** 2, "missing": math.nan, "pair": (1, 2)}


def flaky(config: dict, run_dir: Path) -> dict:
    """Raises on its first ``fail_times`` calls."""
    n = _count(run_dir)
    if n <= config["fail_times"]:
        raise RuntimeError(f"planned failure {n}")
    return {"calls": n}


def die(config: dict, run_dir: Path) -> dict:
    """Kills its worker process on the first ``die_times`` calls (a segfault or an OOM kill)."""
    n = _count(run_dir)
    if n <= config["die_times"]:
        os._exit(3)
    return {"calls": n}


def train_tiny(config: dict, run_dir: Path) -> dict:
    """A deterministic little regression trained with Adam; reports the torch threads it saw."""
    import torch

    _count(run_dir)
    gen = torch.Generator().manual_seed(config["seed"])
    x = torch.randn(256, 16, generator=gen)
    y = torch.sin(x @ torch.randn(16, 1, generator=gen))
    model = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.Tanh(), torch.nn.Linear(64, 1))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(config["steps"]):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
    with torch.no_grad():
        weight_sum = float(sum(p.double().sum() for p in model.parameters()))
    return {"loss": float(loss.detach()), "weight_sum": weight_sum,
            "threads": torch.get_num_threads()}


def thread_env(config: dict, run_dir: Path) -> dict:
    """The BLAS/OpenMP thread settings the worker process started with."""
    return {name: os.environ.get(name) for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
