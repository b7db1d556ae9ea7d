"""The grokking study under the study contract (``thermolens.runner.study``).

``run`` is :func:`thermolens.experiments.grokking.study.run_study` into the piece's directory — every
run a resumable sweep job that continues from its last checkpoint, so a killed study continues
rather than restarts — on the executor :func:`thermolens.runner.study.inner_executor` names (every
core when pieces run one after another, one process when they are already spread out). It then
writes the study tables beside the runs::

    study.json          the StudyConfig (JSON), written first: a resume with another config is refused
    runs.parquet        one headline row per run
    summary.parquet     one row per modulus (and fraction, weight decay)
    runs/<name>/...     each run's history, sweep and T* tables (see ``study``)

``load`` reads those back (no training, no detection); it also reads a ``thermolens grok`` study
directory, whose configuration sits in its manifest.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from thermolens import io
from thermolens.experiments.grokking.study import StudyConfig, StudyResult, run_name, run_study
from thermolens.runner.study import Study, check_stored_config, config_from_dict, inner_executor

__all__ = ["STUDY", "load", "run", "summary"]


def run(config: StudyConfig, run_dir: Path) -> StudyResult:
    """Run (or continue) every run of ``config`` under ``run_dir/runs`` and write the study tables.

    A directory holding a study of another configuration is refused, naming the differing keys.
    """
    run_dir = Path(run_dir)
    check_stored_config(config, run_dir, "grokking study")
    n_runs = len(config.runs())
    workers = 1 if inner_executor() == "inline" else max(1, min(os.cpu_count() or 1, n_runs))
    result = run_study(config, run_dir, workers=workers)
    io.write_table(run_dir / "runs.parquet", result.runs)
    io.write_table(run_dir / "summary.parquet", result.summary)
    return result


def load(run_dir: Path) -> StudyResult:
    """A finished study read back: its config, run and summary tables, and each run's directory.

    Also reads a ``thermolens grok`` study directory (its config is in ``manifest.json``).
    """
    run_dir = Path(run_dir)
    if (run_dir / "study.json").is_file():
        config = config_from_dict(StudyConfig, io.read_json(run_dir / "study.json"))
    elif io.is_run_dir(run_dir, "grok"):
        config = StudyConfig.from_dict(io.read_json(run_dir / io.MANIFEST)["config"]["study"])
    else:
        raise ValueError(f"{run_dir} holds no grokking study (no study.json and no `grok` manifest); run the study first")
    return StudyResult(
        config=config, runs=io.read_table(run_dir / "runs.parquet"), summary=io.read_table(run_dir / "summary.parquet"),
        run_dirs={run_name(c): run_dir / "runs" / run_name(c) for c in config.runs()},
    )


def summary(result: StudyResult) -> dict[str, Any]:
    """Runs, runs that reached test accuracy 0.9, and the per-modulus table."""
    runs = result.runs
    return {
        "n_runs": len(runs), "n_generalized": int(runs["grokked"].sum()) if len(runs) else 0,
        "per_p": io.to_jsonable(result.summary.to_dict(orient="records")),
    }


STUDY = Study(name="grokking", config_type=StudyConfig, run=run, load=load, summary=summary)
