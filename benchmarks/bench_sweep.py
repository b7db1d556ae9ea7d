"""Sweep-runner benchmark: the same sweep of real training jobs on the local executor and on Ray.

Eight short grokking runs (``thermolens.experiments.grokking.study:grok_job``: p in 23, 29, 31, 37, two
seeds each, training fraction 0.5, 600 full-batch steps with the thermometer and two C(T) sweeps),
two workers (the machine's cores), one torch thread per job. Each executor runs the whole sweep
into a fresh directory; the rounds alternate (ABBAAB) so that load from other users
of the machine drifts over both alike. The wall time is that of ``run_sweep`` end to end: worker
start-up (spawned processes importing torch; Ray's local instance start and shutdown) included.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

from thermolens.experiments.grokking.train import GrokConfig
from thermolens.runner.sweep import Job, run_sweep

ORDER = ("local", "ray", "ray", "local", "local", "ray")
WORKERS = 2
TIMING_KEYS = ("ms_per_step", "thermometer_overhead", "job_s")  # differ between any two runs of a job


def timed_grok_job(config: dict, run_dir: Path) -> dict:
    """``grok_job`` plus its own duration inside the worker (``job_s``)."""
    import time

    from thermolens.experiments.grokking.study import grok_job

    start = time.perf_counter()
    summary = grok_job(config, run_dir)
    return {**summary, "job_s": time.perf_counter() - start}


def jobs() -> list[Job]:
    out = []
    for p in (23, 29, 31, 37):
        for seed in (0, 1):
            config = GrokConfig(p=p, seed=seed, train_fraction=0.5, max_steps=600, every=50, sweep_every=300,
                                checkpoint_every=300, stop_window=0)
            out.append(Job(name=f"p{p}-seed{seed}", fn="benchmarks.bench_sweep:timed_grok_job", config=config.to_dict()))
    return out


def _physics(done: dict[str, dict]) -> dict[str, dict]:
    return {name: {k: v for k, v in row.items() if k not in TIMING_KEYS} for name, row in done.items()}


def main() -> str:
    try:
        import ray
    except ImportError:
        return "## sweep\n\nRay is not installed (`pip install 'thermolens[ray]'`); nothing measured.\n"
    walls: dict[str, list[float]] = {"local": [], "ray": []}
    job_s: dict[str, list[float]] = {"local": [], "ray": []}
    results: dict[str, dict] = {}
    for executor in ORDER:
        with tempfile.TemporaryDirectory(prefix=f"bench-sweep-{executor}-") as root:
            result = run_sweep(jobs(), Path(root), executor=executor, workers=WORKERS, retries=0)
        if result.failed:
            raise RuntimeError(f"benchmark jobs failed on {executor}: {result.failed}")
        walls[executor].append(result.wall_s)
        job_s[executor].append(sum(r["job_s"] for r in result.done.values()))
        results.setdefault(executor, _physics(result.done))
    same = results["local"] == results["ray"]
    local, ray_ = statistics.median(walls["local"]), statistics.median(walls["ray"])
    ratio = ray_ / local
    # what the executor adds: wall time not covered by the jobs themselves running WORKERS at once
    overhead = {ex: statistics.median(w - j / WORKERS for w, j in zip(walls[ex], job_s[ex])) for ex in walls}
    lines = [
        "## sweep",
        "",
        f"The same sweep of 8 grokking runs (p = 23, 29, 31, 37 x 2 seeds, 600 steps each with thermometer and "
        f"C(T) sweeps), {WORKERS} workers, 1 torch thread per job, rounds in the order {', '.join(ORDER)}; wall "
        "time of `run_sweep` end to end (worker start-up included), median of the three rounds per executor.",
        "",
        "| executor | sweep wall (s), each round | median wall (s) | job time summed over jobs (s), median "
        f"| executor overhead: wall - summed job time / {WORKERS} (s), median | ratio of walls to local | target | pass |",
        "|---|---|---:|---:|---:|---:|---|---|",
        f"| ours: local worker processes | {', '.join(f'{w:.1f}' for w in walls['local'])} | {local:.1f} "
        f"| {statistics.median(job_s['local']):.1f} | {overhead['local']:.1f} | 1.00 | reference | — |",
        f"| Ray {ray.__version__}, local instance | {', '.join(f'{w:.1f}' for w in walls['ray'])} "
        f"| {ray_:.1f} | {statistics.median(job_s['ray']):.1f} | {overhead['ray']:.1f} | {ratio:.2f} | <= 1.10 "
        f"| {'yes' if ratio <= 1.10 else 'no'} |",
        "",
        f"Results identical between the executors (every headline number of every run, timings aside): "
        f"{'yes' if same else 'NO'}.",
        "",
        "Job time is each job's own duration measured inside its worker, so the overhead column is what the "
        "executor itself adds (start-up, scheduling, idle workers at the tail). The machine has 2 cores shared "
        "with other engineers' jobs: job times move with their load, which the alternating rounds spread over "
        "both executors but cannot remove.",
    ]
    return "\n".join(lines)
