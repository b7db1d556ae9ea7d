"""The optimizer comparison as a study (``thermolens.runner.study``): config, run, load, summary.

``STUDY`` runs ``run_compare`` (``experiments.optimize.compare``) into a run directory laid out as
``thermolens optimize compare --out`` writes it, so ``thermolens optimize diagnose`` reads a piece
directory as it reads a comparison of the command line::

    run_dir/manifest.json        kind "optimize-compare", the CompareConfig, status
    run_dir/runs/<run>/          one directory per optimizer x init x seed (result.json: finished)
    run_dir/runs.parquet         one row per run (the metrics of ``run_compare``)
    run_dir/summary.parquet      one row per optimizer x init (mean, sd, min, max over seeds)
    run_dir/verdict.txt          the plain-words comparison with AdamW

Resumable: a run with ``result.json`` is never redone, so a run directory left by ``kill -9``
continues with the runs that were not finished. A directory holding a comparison with another
config is refused.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from thermolens import io
from thermolens.experiments.optimize.compare import CompareConfig, CompareResult, run_compare
from thermolens.runner.study import Study, config_to_dict, inner_executor

__all__ = ["KIND", "STUDY", "load", "load_histories", "run", "summary"]

KIND = "optimize-compare"  # the manifest kind of `thermolens optimize compare` (cli/optimize.py)
RUNS, SUMMARY, VERDICT = "runs.parquet", "summary.parquet", "verdict.txt"


def _workers(config: CompareConfig) -> int:
    """Every core when pieces run one after another (``inner_executor() == "local"``), else one."""
    if inner_executor() != "local":
        return 1
    return max(1, min(os.cpu_count() or 1, len(config.runs())))


def _check_same_config(config: CompareConfig, run_dir: Path) -> None:
    if not io.is_run_dir(run_dir, KIND):
        return
    stored = io.read_json(run_dir / io.MANIFEST)["config"]
    if stored != config_to_dict(config):
        differing = sorted(k for k in set(stored) | set(config_to_dict(config))
                           if stored.get(k) != config_to_dict(config).get(k))
        raise ValueError(f"{run_dir} holds an optimizer comparison with other settings (differing: {differing}); "
                         "use another run directory or delete this one")


def run(config: CompareConfig, run_dir: Path) -> CompareResult:
    """Run (or continue) every run of ``config`` under ``run_dir/runs`` and write the tables."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    _check_same_config(config, run_dir)
    with io.RunRecorder(run_dir, KIND, ["thermolens.experiments.optimize.contract:STUDY"],
                        config_to_dict(config)) as recorder:
        result = run_compare(config, run_dir, workers=_workers(config))
        io.write_table(run_dir / RUNS, result.runs)
        io.write_table(run_dir / SUMMARY, result.summary)
        io.write_text(run_dir / VERDICT, result.verdict + "\n")
        recorder.summary = summary(result)
    return result


def load(run_dir: Path) -> CompareResult:
    """A finished comparison read back from ``run_dir`` (nothing is computed)."""
    run_dir = Path(run_dir)
    if not io.is_run_dir(run_dir, KIND) or not (run_dir / RUNS).is_file():
        raise ValueError(f"{run_dir} holds no finished optimizer comparison (no {io.MANIFEST} of kind {KIND} "
                         f"with {RUNS}); run it first (STUDY.run or `thermolens optimize compare --out`)")
    config = CompareConfig.from_dict(io.read_json(run_dir / io.MANIFEST)["config"])
    return CompareResult(config=config, runs=io.read_table(run_dir / RUNS), summary=io.read_table(run_dir / SUMMARY),
                         verdict=(run_dir / VERDICT).read_text().rstrip("\n"))


def load_histories(run_dir: Path) -> dict[str, Any]:
    """Each run's ``history.parquet`` (grokking: test accuracy per step; lm: validation loss per
    step), by run name, of the finished comparison in ``run_dir``."""
    result = load(run_dir)
    return {name: io.read_table(Path(run_dir) / "runs" / name / "history.parquet") for name in result.runs["run"]}


def summary(result: CompareResult) -> dict[str, Any]:
    """Headline numbers: the task, the verdict and the per-optimizer table (JSON values)."""
    return io.to_jsonable({"task": result.config.task, "verdict": result.verdict,
                           "summary": result.summary.to_dict(orient="records")})


STUDY: Study[CompareConfig, CompareResult] = Study(
    name="optimize-compare", config_type=CompareConfig, run=run, load=load, summary=summary)
