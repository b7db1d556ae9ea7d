"""A grokking study: a grid of independent runs over moduli and seeds, resumable, on all cores.

Layout of a study directory (every file written atomically)::

    runs/<name>/checkpoint.pt     model + optimizer + readings so far (resume point)
    runs/<name>/history.parquet   one row per thermometer reading   (written when the run ends)
    runs/<name>/sweep.parquet     C(T) per head at the sweep checkpoints
    runs/<name>/tstar.parquet     T* (peak of C(T)) per head at the sweep checkpoints
    runs/<name>/job.json          the run's configuration
    runs/<name>/result.json       the run's headline numbers; its presence marks the run finished

The runs are jobs of :func:`thermolens.runner.sweep.run_sweep` (``grok_job``): worker
processes with one torch thread each; an interrupted study continues every unfinished run from its
last checkpoint and never redoes a finished one (its row is read back from ``result.json``). The
per-``p`` summary gives the fraction of runs whose specific-heat peak precedes the generalization
onset with a Wilson 95% interval (over the runs where both were detected), and the median lead.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thermolens import io
from thermolens.experiments.grokking.train import GrokConfig, GrokRun, critical_temperatures, train
from thermolens.runner.sweep import Job, differing_keys, one_torch_thread, run_sweep
from thermolens.models.hooked import nanda2023

__all__ = [
    "RunsFailed", "StudyConfig", "StudyResult", "differing_keys", "grok_job", "load_run_tables", "one_torch_thread",
    "run_name", "run_study", "summarize", "wilson_interval",
]

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


# --------------------------------------------------------------------------------------------------
# one run (a sweep job)


def write_run(run: GrokRun, run_dir: Path) -> dict[str, Any]:
    """Tables of a finished run; returns its headline row (the sweep runner stores it as result.json)."""
    io.write_table(run_dir / "history.parquet", run.history)
    io.write_table(run_dir / "sweep.parquet", run.sweep)
    io.write_table(run_dir / "tstar.parquet", critical_temperatures(run.sweep, nanda2023(run.config.p).d_head))
    return {"run": run_dir.name, **run.summary()}


def grok_job(
    config: dict[str, Any],
    run_dir: Path,
    progress: Callable[[int, int, dict[str, float] | None], None] | None = None,
) -> dict[str, Any]:
    """The sweep job of one run: train (continuing from ``run_dir``'s checkpoint), write the tables."""
    run = train(GrokConfig.from_dict(config), run_dir=run_dir, progress=progress)
    return write_run(run, Path(run_dir))


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


class RunsFailed(RuntimeError):
    """Some runs of a study failed every attempt; the message lists them with their last error."""


def run_study(
    config: StudyConfig,
    study_dir: str | Path,
    *,
    workers: int = 2,
    retries: int = 0,
    on_run_done: Callable[[dict[str, Any]], None] | None = None,
    progress: Callable[[int, int, dict[str, float] | None], None] | None = None,
) -> StudyResult:
    """Run (or continue) every run of ``config`` under ``study_dir/runs``; see the module docstring.

    ``workers`` processes run at once (1: in this process, where ``progress`` sees every step).
    A failed run is tried ``retries`` more times (from its last checkpoint); runs that still fail
    raise :class:`RunsFailed` once the others are done. ``on_run_done(summary)`` is called as each
    run finishes (also for runs finished earlier, read back without training).
    """
    import pandas as pd

    if workers < 1:
        raise ValueError(f"workers={workers} must be >= 1")
    study_dir = Path(study_dir)
    configs = config.runs()
    run_dirs = {run_name(c): study_dir / "runs" / run_name(c) for c in configs}
    inline = workers == 1 or len(configs) == 1
    fn = functools.partial(grok_job, progress=progress) if inline and progress is not None else grok_job
    # cheapest runs first: on a busy machine an interrupted study then holds as many finished
    # runs as possible (resume continues the rest from their checkpoints)
    ordered = sorted(configs, key=lambda c: (c.p * c.p * c.train_fraction, c.seed))
    jobs = [Job(name=run_name(c), fn=fn, config=c.to_dict()) for c in ordered]
    done_cb = (lambda name, summary: on_run_done(_with_nans(summary))) if on_run_done is not None else None
    swept = run_sweep(jobs, study_dir / "runs", executor="inline" if inline else "local", workers=workers,
                      retries=retries, on_done=done_cb)
    if swept.failed:
        listing = "; ".join(f"{name}: {message}" for name, message in swept.failed.items())
        raise RunsFailed(f"{len(swept.failed)} of {len(jobs)} runs failed ({listing})")
    table = pd.DataFrame([_with_nans(swept.done[run_name(c)]) for c in configs])
    return StudyResult(config=config, runs=table, summary=summarize(table), run_dirs=run_dirs)


def _with_nans(summary: dict[str, Any]) -> dict[str, Any]:
    """A stored headline row with JSON nulls (written for NaN) read back as NaN."""
    return {key: math.nan if value is None else value for key, value in summary.items()}


def load_run_tables(run_dir: str | Path) -> tuple[Any, Any]:
    """``(history, sweep)`` frames of a finished run."""
    run_dir = Path(run_dir)
    return io.read_table(run_dir / "history.parquet"), io.read_table(run_dir / "sweep.parquet")
