"""The committee machine as two studies (``thermolens.runner.study``): the state-evolution phase
diagram, and AMP on finite instances over an alpha x seed grid.

Aubin, Maillard, Barbier, Krzakala, Macris & Zdeborova (2018), arXiv:1806.05451; the physics is
``thermolens.committee`` (formulas and conventions in docs/committee.md). Nothing is computed here
that the library does not compute: these studies run it, write it down and read it back.

``SE_STUDY`` solves one or more :class:`SESetting` s. Each is ``committee.find_thresholds`` — both
branches of state evolution (uninformed: what AMP from a random start follows; informed: started
at the teacher) on the scan grid, and ``alpha_spec``, ``alpha_IT``, ``alpha_alg`` refined to
``alpha_tol`` — plus both branches at the ``alphas`` not on that grid (those where AMP runs, so its
overlaps have an SE prediction beside them). A run directory::

    study.json                         the SEStudyConfig (a resumed run must be given the same one)
    settings/<name>/result.json        thresholds (``Thresholds.summary``), convergence, seconds
    settings/<name>/se.parquet         both branches at every alpha (``SECurve.to_frame`` rows,
                                       ``on_scan`` marks the scan grid)

``AMP_STUDY`` runs ``committee.amp_over_seeds`` once per (alpha, seed): a fresh teacher, data and
random start per seed, exactly as ``thermolens committee amp --seeds`` draws them. A run directory::

    study.json                         the AMPStudyConfig
    runs/a<alpha>-s<seed>/result.json  one run: aligned overlaps Q, q_d, q_a, q_diag = tr(Q)/K,
                                       test error on fresh samples, iterations, convergence

Both are sweeps (``thermolens.runner.sweep``) on ``inner_executor()``: a finished setting or run is
never redone, so a run killed at any point continues when called again on the same directory. The
sweep's workers run BLAS on one thread (AMP is two matrix-vector passes over X per iteration; two
BLAS threads per worker on two cores make each pass several times slower).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thermolens import io
from thermolens.runner.study import (
    Study, check_stored_config, config_from_dict, config_to_dict, read_stored_config, run_jobs,
)
from thermolens.runner.sweep import RESULT, Job

__all__ = [
    "AMPRuns", "AMPStudyConfig", "AMP_STUDY", "SEPhaseDiagram", "SESetting", "SEStudyConfig", "SE_STUDY",
    "amp_job", "load_amp", "load_se", "run_amp_study", "run_se_study", "se_job",
]

STUDY_JSON = "study.json"
SETTINGS, RUNS = "settings", "runs"
SE_TABLE = "se.parquet"
SE_JOB_FN = "thermolens.experiments.committee.contract:se_job"
AMP_JOB_FN = "thermolens.experiments.committee.contract:amp_job"
#: library defaults of the quadrature (``committee.quadrature``): K = 2 output sinh-rule step
DEFAULT_QUAD_STEP = 0.1
#: an extra alpha closer than this to a scan-grid point is read from the scan
SAME_ALPHA = 1e-9


# --------------------------------------------------------------------------------------------------
# small pieces


def _valid_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and not any(c in name for c in "/\\\0")


# --------------------------------------------------------------------------------------------------
# state evolution


@dataclass(frozen=True)
class SESetting:
    """One state-evolution solve: ``find_thresholds`` of ``SEConfig(K, prior, tol=tol)`` on the grid
    ``alpha_min + step, alpha_min + 2 step, ... <= alpha_max`` refined to ``alpha_tol``, and both
    branches at the extra ``alphas``. ``quad_step`` (K = 2 output rule) and ``prior_nodes``
    (Rademacher prior, per dimension; None: the library's 200 for K = 2) set the quadrature
    resolution (``SEConfig``). ``name`` is the setting's directory name."""

    name: str
    K: int = 2
    prior: str = "gaussian"
    alpha_min: float = 0.0
    alpha_max: float = 4.0
    step: float = 0.1
    alpha_tol: float = 1e-4
    tol: float = 1e-9
    quad_step: float = DEFAULT_QUAD_STEP
    prior_nodes: int | None = None
    alphas: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        from thermolens.committee import SEConfig

        if not _valid_name(self.name):
            raise ValueError(f"setting name {self.name!r} must be a non-empty directory name (no slashes)")
        # raises with the fix for K, prior, tol and the quadrature
        SEConfig(K=self.K, prior=self.prior, tol=self.tol, quad_step=self.quad_step, prior_nodes=self.prior_nodes)
        if not 0.0 <= self.alpha_min < self.alpha_max:
            raise ValueError(f"setting {self.name}: need 0 <= alpha_min < alpha_max, got {self.alpha_min}, {self.alpha_max}")
        if not 0.0 < self.alpha_tol < self.step <= self.alpha_max - self.alpha_min:
            raise ValueError(f"setting {self.name}: need 0 < alpha_tol < step <= alpha_max - alpha_min, "
                             f"got alpha_tol={self.alpha_tol}, step={self.step}")
        if any(not (math.isfinite(a) and a > 0) for a in self.alphas):
            raise ValueError(f"setting {self.name}: alphas {self.alphas} must be positive numbers")


@dataclass(frozen=True)
class SEStudyConfig:
    """The state-evolution settings to solve (each an independent job)."""

    settings: tuple[SESetting, ...] = (SESetting(name="k2-gaussian"),)

    def __post_init__(self) -> None:
        names = [s.name for s in self.settings]
        if not names:
            raise ValueError("give at least one SE setting")
        if len(set(names)) != len(names):
            raise ValueError(f"setting names {names} repeat; give each setting its own name")


def se_job(config: dict, run_dir: Path) -> dict:
    """Sweep job: solve one :class:`SESetting` into ``run_dir`` (``se.parquet``); returns its thresholds."""
    import numpy as np
    import pandas as pd

    from thermolens.committee import SEConfig, find_thresholds, state_evolution

    setting = config_from_dict(SESetting, config)
    se_config = SEConfig(K=setting.K, prior=setting.prior, tol=setting.tol, quad_step=setting.quad_step,
                         prior_nodes=setting.prior_nodes)
    start, cpu_start = time.perf_counter(), time.process_time()
    found = find_thresholds(se_config, alpha_min=setting.alpha_min, alpha_max=setting.alpha_max,
                            step=setting.step, alpha_tol=setting.alpha_tol)
    grid = np.asarray(found.scan.alpha)
    extra = sorted({float(a) for a in setting.alphas if not np.any(np.abs(grid - a) < SAME_ALPHA)})
    curves = [found.scan] + ([state_evolution(extra, se_config)] if extra else [])
    frame = pd.concat([c.to_frame().assign(on_scan=i == 0) for i, c in enumerate(curves)], ignore_index=True)
    io.write_table(Path(run_dir) / SE_TABLE, frame.sort_values(["branch", "alpha"], ignore_index=True))
    return {**found.summary(), "n_not_converged": int(sum(c.n_failed for c in curves)),
            "seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu_start}


@dataclass(frozen=True)
class SEPhaseDiagram:
    """A finished SE study: per setting name, its ``thresholds`` (``Thresholds.summary`` plus
    ``n_not_converged``, ``seconds``) and its ``table`` (both branches at every alpha; columns of
    ``SECurve.to_frame`` and ``on_scan``)."""

    config: SEStudyConfig
    thresholds: dict[str, dict[str, Any]]
    tables: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        keys = ("alpha_spec", "alpha_it", "alpha_alg", "order", "n_not_converged")
        return {name: {k: th.get(k) for k in keys} for name, th in self.thresholds.items()}


def run_se_study(config: SEStudyConfig, run_dir: Path) -> SEPhaseDiagram:
    """Solve (or finish) every setting into ``run_dir/settings/<name>``; finished ones are not redone."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    check_stored_config(config, run_dir, "committee state-evolution", name=STUDY_JSON)
    jobs = [Job(name=s.name, fn=SE_JOB_FN, config=config_to_dict(s)) for s in config.settings]
    run_jobs(jobs, run_dir / SETTINGS)
    return load_se(run_dir)


def load_se(run_dir: Path) -> SEPhaseDiagram:
    """A finished SE study read back (computes nothing)."""
    run_dir = Path(run_dir)
    config = read_stored_config(SEStudyConfig, run_dir, "committee state-evolution", name=STUDY_JSON)
    thresholds, tables = {}, {}
    for setting in config.settings:
        job_dir = run_dir / SETTINGS / setting.name
        if not (job_dir / RESULT).is_file() or not (job_dir / SE_TABLE).is_file():
            raise ValueError(f"setting {setting.name} of {run_dir} did not finish; run the study again to finish it")
        thresholds[setting.name] = io.read_json(job_dir / RESULT)
        tables[setting.name] = io.read_table(job_dir / SE_TABLE)
    return SEPhaseDiagram(config=config, thresholds=thresholds, tables=tables)


SE_STUDY = Study(name="committee-se", config_type=SEStudyConfig, run=run_se_study, load=load_se,
                 summary=SEPhaseDiagram.summary)


# --------------------------------------------------------------------------------------------------
# AMP on finite instances


@dataclass(frozen=True)
class AMPStudyConfig:
    """AMP (``committee.AMPConfig`` settings) at input dimension ``n`` on every (alpha, seed) pair.

    ``n >= 500``: below it finite-size effects of order 1/sqrt(n) swamp any comparison with SE.
    """

    K: int = 2
    prior: str = "binary"
    n: int = 2000
    alphas: tuple[float, ...] = (1.4, 1.7, 1.8, 1.9, 2.2, 2.5)
    seeds: tuple[int, ...] = (0, 1, 2, 3)
    damping: float = 0.0
    max_iter: int = 300
    tol: float = 5e-5
    n_test: int = 20_000

    def __post_init__(self) -> None:
        from thermolens.committee.amp import WARN_N

        self.amp_config()  # raises with the fix for K, prior, damping, max_iter, tol, n_test
        if self.n < WARN_N:
            raise ValueError(f"n={self.n}: AMP is compared with state evolution only for n >= {WARN_N}; raise n")
        if not self.alphas or any(not (math.isfinite(a) and a > 0) for a in self.alphas):
            raise ValueError(f"alphas {self.alphas} must be a non-empty list of positive numbers")
        if len({_alpha_key(a) for a in self.alphas}) != len(self.alphas):
            raise ValueError(f"alphas {self.alphas} repeat a value; list each alpha once")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ValueError(f"seeds {self.seeds} must be distinct non-negative integers (at least one)")

    def amp_config(self):
        from thermolens.committee import AMPConfig

        return AMPConfig(K=self.K, prior=self.prior, max_iter=self.max_iter, tol=self.tol, damping=self.damping,
                         n_test=self.n_test)


def _alpha_key(alpha: float) -> str:
    return f"{float(alpha):.6g}"


def amp_job(config: dict, run_dir: Path) -> dict:
    """Sweep job: AMP on one instance (``config``: the study config's fields with one ``alpha`` and
    one ``seed``); returns the run as one row."""
    from thermolens.committee import amp_over_seeds

    values = dict(config)
    alpha, seed = float(values.pop("alpha")), int(values.pop("seed"))
    study = config_from_dict(AMPStudyConfig, {**values, "alphas": [alpha], "seeds": [seed]})
    run = amp_over_seeds(alpha, study.n, [seed], study.amp_config()).runs[0]
    K = run.Q.shape[0]
    return {
        "alpha": alpha, "n": run.n, "seed": run.seed,
        **{f"Q{a}{b}": float(run.Q[a, b]) for a in range(K) for b in range(K)},
        "q_d": run.q_d, "q_a": run.q_a, "q_diag": float(run.Q.trace()) / K,
        "q_self_diag": float(run.Q_self.trace()) / K,
        "eps_test": run.eps_test, "eps_plugin": run.eps_plugin, "eps_gibbs": run.eps_gibbs,
        "n_iter": run.n_iter, "converged": run.converged, "final_change": run.final_change,
        "seconds": run.seconds, "cpu_seconds": run.cpu_seconds,
    }


@dataclass(frozen=True)
class AMPRuns:
    """A finished AMP study: ``table`` has one row per (alpha, seed) (columns of :func:`amp_job`)."""

    config: AMPStudyConfig
    table: Any = field(repr=False)

    def summary(self) -> dict[str, Any]:
        by_alpha = self.table.groupby("alpha")
        return {
            "K": self.config.K, "prior": self.config.prior, "n": self.config.n, "n_runs": int(len(self.table)),
            "n_converged": int(self.table["converged"].sum()),
            "per_alpha": [{"alpha": float(a), "q_d": float(g["q_d"].mean()), "q_diag": float(g["q_diag"].mean()),
                           "eps_test": float(g["eps_test"].mean()), "n_seeds": int(len(g))} for a, g in by_alpha],
        }


def _amp_jobs(config: AMPStudyConfig) -> list[Job]:
    shared = {k: v for k, v in config_to_dict(config).items() if k not in ("alphas", "seeds")}
    return [Job(name=f"a{_alpha_key(a)}-s{s}", fn=AMP_JOB_FN, config={**shared, "alpha": float(a), "seed": int(s)})
            for a in config.alphas for s in config.seeds]


def run_amp_study(config: AMPStudyConfig, run_dir: Path) -> AMPRuns:
    """Run (or finish) AMP on every (alpha, seed) into ``run_dir/runs``; finished runs are not redone."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    check_stored_config(config, run_dir, "committee AMP", name=STUDY_JSON)
    run_jobs(_amp_jobs(config), run_dir / RUNS)
    return load_amp(run_dir)


def load_amp(run_dir: Path) -> AMPRuns:
    """A finished AMP study read back (computes nothing)."""
    import pandas as pd

    run_dir = Path(run_dir)
    config = read_stored_config(AMPStudyConfig, run_dir, "committee AMP", name=STUDY_JSON)
    rows = []
    for job in _amp_jobs(config):
        path = run_dir / RUNS / job.name / RESULT
        if not path.is_file():
            raise ValueError(f"AMP run {job.name} of {run_dir} did not finish; run the study again to finish it")
        rows.append(io.read_json(path))
    return AMPRuns(config=config, table=pd.DataFrame(rows))


AMP_STUDY = Study(name="committee-amp", config_type=AMPStudyConfig, run=run_amp_study, load=load_amp,
                  summary=AMPRuns.summary)
