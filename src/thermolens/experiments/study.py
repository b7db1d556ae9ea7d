"""A grokking study: a grid of independent runs over moduli and seeds, resumable, on all cores.

Layout of a study directory (every file written atomically)::

    runs/<name>/checkpoint.pt     model + optimizer + readings so far (resume point)
    runs/<name>/history.parquet   one row per thermometer reading   (written when the run ends)
    runs/<name>/sweep.parquet     C(T) per head at the sweep checkpoints
    runs/<name>/tstar.parquet     T* (peak of C(T)) per head at the sweep checkpoints
    runs/<name>/result.json       the run's headline numbers; its presence marks the run finished

Runs are independent processes (``concurrent.futures`` with the ``spawn`` start method, one torch
thread each); an interrupted study continues every unfinished run from its last checkpoint and
skips the finished ones. The per-``p`` summary gives the fraction of runs whose specific-heat peak
precedes the generalization onset with a Wilson 95% interval (over the runs where both were
detected), and the median lead.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thermolens import io
from thermolens.experiments.grokking import GrokConfig, GrokRun, critical_temperatures, train
from thermolens.models.hooked import nanda2023

RESULT = "result.json"
GRID_KEYS = ("p", "seed", "train_fraction", "weight_decay")


@dataclass(frozen=True)
class StudyConfig:
    """The grid: every combination of ``ps`` x ``seeds`` x ``train_fractions`` x ``weight_decays``.

    ``fraction_overrides`` ``((p, fraction), ...)`` replaces the training-fraction grid for a
    modulus (small p may need more than 0.3 of the pairs to grok). ``base`` holds every other
    setting of a run; its own grid fields are ignored.
    """

    ps: tuple[int, ...] = (19, 31, 59, 113)
    seeds: tuple[int, ...] = (0, 1, 2)
    train_fractions: tuple[float, ...] = (0.3,)
    weight_decays: tuple[float, ...] = (1.0,)
    fraction_overrides: tuple[tuple[int, float], ...] = ()
    base: GrokConfig = dataclasses.field(default_factory=GrokConfig)

    def __post_init__(self) -> None:
        for name in ("ps", "seeds", "train_fractions", "weight_decays"):
            values = getattr(self, name)
            if not values:
                raise ValueError(f"{name} is empty; give at least one value")
            if len(set(values)) != len(values):
                raise ValueError(f"{name}={list(values)} repeats a value; list each once")
        unknown = sorted({p for p, _ in self.fraction_overrides} - set(self.ps))
        if unknown:
            raise ValueError(f"fraction override for p={unknown} but the study's moduli are {list(self.ps)}")
        self.runs()  # every run's config validates (p < 3, fraction outside (0, 1), ...)

    def fractions_for(self, p: int) -> tuple[float, ...]:
        overrides = dict(self.fraction_overrides)
        return (overrides[p],) if p in overrides else self.train_fractions

    def runs(self) -> list[GrokConfig]:
        return [
            dataclasses.replace(self.base, p=p, seed=seed, train_fraction=frac, weight_decay=wd)
            for p in self.ps for frac in self.fractions_for(p) for wd in self.weight_decays for seed in self.seeds
        ]

    def to_dict(self) -> dict[str, Any]:
        return io.to_jsonable(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudyConfig:
        return cls(
            ps=tuple(data["ps"]), seeds=tuple(data["seeds"]),
            train_fractions=tuple(data["train_fractions"]), weight_decays=tuple(data["weight_decays"]),
            fraction_overrides=tuple((int(p), float(f)) for p, f in data["fraction_overrides"]),
            base=GrokConfig.from_dict(data["base"]),
        )


def run_name(config: GrokConfig) -> str:
    name = f"p{config.p}-seed{config.seed}-frac{config.train_fraction:g}-wd{config.weight_decay:g}"
    return name + ("-grokfast" if config.grokfast else "")


def differing_keys(stored: dict[str, Any], given: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the settings that differ between two configuration dicts."""
    keys = []
    for key in sorted(set(stored) | set(given)):
        a, b = stored.get(key), given.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += differing_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            keys.append(f"{prefix}{key}")
    return keys


# --------------------------------------------------------------------------------------------------
# one run inside a worker


def write_run(run: GrokRun, run_dir: Path) -> dict[str, Any]:
    """Tables and the result of a finished run; ``result.json`` last, since it marks completion."""
    io.write_table(run_dir / "history.parquet", run.history)
    io.write_table(run_dir / "sweep.parquet", run.sweep)
    io.write_table(run_dir / "tstar.parquet", critical_temperatures(run.sweep, nanda2023(run.config.p).d_head))
    summary = {"run": run_dir.name, **run.summary()}
    io.write_json(run_dir / RESULT, summary)
    return summary


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Train on one torch thread: CPU reductions are then bitwise reproducible (two threads differ
    at ~1e-4 after a few dozen steps), so a resumed run repeats an uninterrupted one exactly."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _worker(config_dict: dict[str, Any], run_dir: str) -> dict[str, Any]:
    config = GrokConfig.from_dict(config_dict)
    with one_torch_thread():
        run = train(config, run_dir=run_dir)
    return write_run(run, Path(run_dir))


def finished_result(run_dir: Path) -> dict[str, Any] | None:
    """The stored headline row of a finished run (JSON null, written for NaN, read back as NaN)."""
    path = run_dir / RESULT
    if not path.is_file():
        return None
    return {key: math.nan if value is None else value for key, value in io.read_json(path).items()}


# --------------------------------------------------------------------------------------------------
# the study


@dataclass(frozen=True)
class StudyResult:
    """``runs``: one row per run (the headline numbers); ``summary``: one row per modulus."""

    config: StudyConfig
    runs: Any  # pandas.DataFrame
    summary: Any  # pandas.DataFrame
    run_dirs: dict[str, Path]


def wilson_interval(k: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion ``k / n`` (NaNs for ``n = 0``)."""
    if n == 0:
        return math.nan, math.nan
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return float(ci.low), float(ci.high)


def summarize(runs) -> Any:
    """Per modulus (and fraction, weight decay): how often and by how much the peak leads."""
    import numpy as np
    import pandas as pd

    rows = []
    for (p, frac, wd), group in runs.groupby(["p", "train_fraction", "weight_decay"], sort=True):
        row: dict[str, Any] = {
            "p": int(p), "train_fraction": float(frac), "weight_decay": float(wd),
            "n_runs": len(group), "n_grokked": int(group["grokked"].sum()),
            "median_onset_step": float(np.nanmedian(group["onset_step"])) if group["onset_step"].notna().any() else math.nan,
        }
        for series, lead_col in (("C", "lead_steps"), ("C_corr", "lead_corr_steps")):
            leads = group[lead_col].dropna()
            k, n = int((leads > 0).sum()), int(leads.size)
            low, high = wilson_interval(k, n)
            row.update({
                f"{series}_n_detected": n, f"{series}_n_precedes": k,
                f"{series}_frac_precedes": k / n if n else math.nan,
                f"{series}_ci_low": low, f"{series}_ci_high": high,
                f"{series}_median_lead": float(leads.median()) if n else math.nan,
            })
        rows.append(row)
    return pd.DataFrame(rows)


def run_study(
    config: StudyConfig,
    study_dir: str | Path,
    *,
    workers: int = 2,
    on_run_done: Callable[[dict[str, Any]], None] | None = None,
    progress: Callable[[int, int, dict[str, float] | None], None] | None = None,
) -> StudyResult:
    """Run (or continue) every run of ``config`` under ``study_dir/runs``; see the module docstring.

    ``workers`` processes run at once (1: in this process, where ``progress`` sees every step).
    ``on_run_done(summary)`` is called as each run finishes (also for runs finished earlier, which
    are re-summarized from their final checkpoint without training).
    """
    import pandas as pd

    if workers < 1:
        raise ValueError(f"workers={workers} must be >= 1")
    study_dir = Path(study_dir)
    configs = config.runs()
    run_dirs = {run_name(c): study_dir / "runs" / run_name(c) for c in configs}
    results: dict[str, dict[str, Any]] = {}
    todo: list[GrokConfig] = []
    for c in configs:
        run_dir = run_dirs[run_name(c)]
        if finished_result(run_dir) is not None:
            # finished earlier: reload it from its final checkpoint (no training) so that its
            # tables and headline row come from the current detection code
            with one_torch_thread():
                results[run_name(c)] = write_run(train(c, run_dir=run_dir), run_dir)
            if on_run_done is not None:
                on_run_done(results[run_name(c)])
        else:
            run_dir.mkdir(parents=True, exist_ok=True)
            todo.append(c)

    if workers == 1 or len(todo) <= 1:
        for c in todo:
            with one_torch_thread():
                run = train(c, run_dir=run_dirs[run_name(c)], progress=progress)
            results[run_name(c)] = write_run(run, run_dirs[run_name(c)])
            if on_run_done is not None:
                on_run_done(results[run_name(c)])
    else:
        import multiprocessing

        # cheapest runs first: on a busy machine an interrupted study then holds as many
        # finished runs as possible (resume continues the rest from their checkpoints)
        todo.sort(key=lambda c: (c.p * c.p * c.train_fraction, c.seed))
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {
                pool.submit(_worker, c.to_dict(), str(run_dirs[run_name(c)])): run_name(c) for c in todo
            }
            for future in as_completed(futures):
                summary = future.result()
                results[futures[future]] = summary
                if on_run_done is not None:
                    on_run_done(summary)

    table = pd.DataFrame([results[run_name(c)] for c in configs])
    return StudyResult(config=config, runs=table, summary=summarize(table), run_dirs=run_dirs)


def load_run_tables(run_dir: str | Path) -> tuple[Any, Any]:
    """``(history, sweep)`` frames of a finished run."""
    run_dir = Path(run_dir)
    return io.read_table(run_dir / "history.parquet"), io.read_table(run_dir / "sweep.parquet")
