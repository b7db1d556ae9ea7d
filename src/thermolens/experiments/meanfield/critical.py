"""Critical couplings of a mean-field kernel on a parameter grid, under several resolutions (a study).

Convention of ``thermolens.meanfield`` (docs/meanfield.md): densities on ``theta in [0, 1)``,
``F_K(rho) = int rho log rho - K int int W rho rho``, ``K_# = 1/(2 max_k W_hat(k))``; the transition is
continuous when ``K_c = K_#`` (relative gap below ``1e-10``), discontinuous when ``K_c < K_#``.

``run_critical`` (``CriticalConfig``): ``critical_coupling`` at every parameter value of a grid (the
kernel's parameter ``beta``, ``R`` or ``m``; Doi--Onsager has none), at values placed relative to the
Landau threshold ``p_*`` (``threshold``: the root of ``c_4``), under several numerical resolutions
(Fourier truncation ``n_modes``, random starts and seed of the global search); the order parameter of
the global minimiser against ``K`` near ``K_c`` (``global_minimize`` on a grid of ``K``); optionally the
bisection bracket where the globally computed order of the transition changes
(``transition_boundary``). Run directory::

    study.json  config      threshold.json  p_*, its side, kappa_4      boundary.json  the bracket
    points.parquet   one row per (value, n_modes, n_starts, seed): K_#, K_c, transition, gap, jump, ...
    curves.parquet   value, K, K / K_# - 1, order parameter and Delta F of the global minimiser
    jobs/<name>/     one sweep job per row, curve and bracket

Every row, curve and bracket is a sweep job (``thermolens.runner.sweep``), run in this process (each
takes seconds, less than starting workers would cost): a finished job is never redone, so a run killed
at any point continues when called again. The helpers ``kernel_of``, ``check_stored`` and ``sweep``
serve the rates study (``rates``) too.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from thermolens import io
from thermolens.runner.study import check_stored_config, config_from_dict, run_jobs

__all__ = [
    "JOBS",
    "KERNELS",
    "PARAMETER",
    "STUDY_JSON",
    "CriticalConfig",
    "CriticalResult",
    "boundary_job",
    "check_stored",
    "curve_job",
    "kernel_of",
    "load_critical",
    "point_job",
    "run_critical",
    "sweep",
]

STUDY_JSON = "study.json"
JOBS = "jobs"
PARAMETER = {"noisy-transformer": "beta", "hegselmann-krause": "R", "kuramoto-daido": "m"}
KERNELS = ("noisy-transformer", "doi-onsager", "hegselmann-krause", "kuramoto-daido")
_FN = "thermolens.experiments.meanfield.critical:"


def kernel_of(name: str, value: float | None):
    """The named kernel at parameter ``value`` (ignored for Doi--Onsager, which has none)."""
    from thermolens.meanfield import make_kernel

    return make_kernel(name) if name not in PARAMETER else make_kernel(name, **{PARAMETER[name]: value})


def check_stored(config: Any, run_dir: Path, what: str) -> None:
    """Write ``config`` to ``run_dir/study.json``, or refuse a run directory that holds another config."""
    check_stored_config(config, run_dir, what, name=STUDY_JSON)


def sweep(jobs: list, run_dir: Path, *, executor: str | None = None) -> dict[str, dict]:
    """Run (or finish) ``jobs`` under ``run_dir/jobs``; their summaries by name (``runner.study.run_jobs``)."""
    return run_jobs(jobs, run_dir / JOBS, executor=executor)


# --------------------------------------------------------------------------------------------------
# critical couplings on a parameter grid


@dataclass(frozen=True)
class CriticalConfig:
    """Where and how finely ``K_c`` is computed.

    ``values``: parameter values (``beta``, ``R``, ``m``; empty for Doi--Onsager, which has none);
    ``threshold_offsets``: relative offsets ``o`` giving the extra values ``p_* (1 + o)`` around the
    Landau threshold. Resolutions vary one at a time from the first entry of each tuple:
    ``n_modes`` (Fourier truncation, 0 = the solver's default), ``n_starts`` and ``seeds`` of the
    global search. ``curve_values`` (Doi--Onsager: ``n_curve > 0`` alone) get the order parameter
    against ``K / K_# - 1`` on ``n_curve`` points over ``[-w, w]``, ``w = max(curve_width, 1.5 gap)``,
    plus 9 points at ``1e-4 .. 1e-2`` above ``K_#`` (the exponent of a continuous onset).
    ``boundary``: ``(lo, hi)`` bracket for ``transition_boundary`` to ``boundary_tol``; empty skips it.
    """

    kernel: str = "doi-onsager"
    values: tuple[float, ...] = ()
    threshold_offsets: tuple[float, ...] = ()
    n_modes: tuple[int, ...] = (0,)
    n_starts: tuple[int, ...] = (8,)
    seeds: tuple[int, ...] = (0,)
    curve_values: tuple[float, ...] = ()
    n_curve: int = 31
    curve_width: float = 0.03
    boundary: tuple[float, ...] = ()
    boundary_tol: float = 1e-4

    def __post_init__(self) -> None:
        if self.kernel not in KERNELS:
            raise ValueError(f"kernel {self.kernel!r} is unknown; choose one of {', '.join(KERNELS)}")
        if self.kernel not in PARAMETER and (
            self.values or self.threshold_offsets or self.curve_values or self.boundary
        ):
            raise ValueError(
                f"{self.kernel} has no parameter: leave values, threshold_offsets, curve_values and "
                "boundary empty"
            )
        if self.kernel in PARAMETER and not (self.values or self.threshold_offsets):
            raise ValueError(
                f"give {self.kernel} parameter values ({PARAMETER[self.kernel]}) or threshold_offsets"
            )
        if not self.n_modes or any(m != 0 and m < 2 for m in self.n_modes):
            raise ValueError(f"n_modes={self.n_modes}: each truncation must be 0 (the default) or >= 2")
        if not self.n_starts or not self.seeds or min(self.n_starts) < 0:
            raise ValueError("n_starts and seeds need at least one entry each, n_starts >= 0")
        if any(o <= -1 for o in self.threshold_offsets):
            raise ValueError(
                f"threshold_offsets={self.threshold_offsets} must be > -1 (values p_* (1 + o) > 0)"
            )
        if self.n_curve < 0 or (self.n_curve and self.n_curve < 5) or not 0 < self.curve_width < 1:
            raise ValueError(
                f"n_curve={self.n_curve} must be 0 or >= 5 and curve_width={self.curve_width} in (0, 1)"
            )
        if self.boundary and (len(self.boundary) != 2 or not 0 < self.boundary[0] < self.boundary[1]):
            raise ValueError(f"boundary={self.boundary} must be (lo, hi) with 0 < lo < hi, or empty")
        if not self.boundary_tol > 0:
            raise ValueError(f"boundary_tol={self.boundary_tol} must be > 0")

    def settings(self) -> list[tuple[int, int, int]]:
        """``(n_modes, n_starts, seed)``: the first of each, then each alternative with the others first."""
        m0, s0, seed0 = self.n_modes[0], self.n_starts[0], self.seeds[0]
        out = [(m0, s0, seed0)]
        out += [(m, s0, seed0) for m in self.n_modes[1:]]
        out += [(m0, s, seed0) for s in self.n_starts[1:]]
        out += [(m0, s0, seed) for seed in self.seeds[1:]]
        return list(dict.fromkeys(out))


@dataclass(frozen=True)
class CriticalResult:
    """``points``: value, offset (NaN on the grid), n_modes_requested, n_starts, seed and the fields of
    ``CriticalCoupling.summary`` (K_sharp, K_c, transition, relative_gap, jump, landau_quartic, ...);
    ``curves``: value, K, K_rel = K / K_# - 1, order_parameter, delta_F; ``threshold``: the Landau
    threshold (``None`` for kernels without parameter); ``boundary``: the bisection bracket or ``None``."""

    config: CriticalConfig
    points: Any  # pandas.DataFrame
    curves: Any  # pandas.DataFrame
    threshold: dict | None
    boundary: tuple[float, float] | None

    def summary(self) -> dict[str, Any]:
        pts = self.points
        return {
            "kernel": self.config.kernel,
            "n_points": len(pts),
            "n_continuous": int((pts["transition"] == "continuous").sum()),
            "n_discontinuous": int((pts["transition"] == "discontinuous").sum()),
            "threshold": None if self.threshold is None else self.threshold["threshold"],
            "boundary": None if self.boundary is None else list(self.boundary),
        }

    def primary(self):
        """The rows at the primary resolution (the first ``n_modes``, ``n_starts`` and seed)."""
        m0, s0, seed0 = self.config.settings()[0]
        pts = self.points
        return pts[(pts["n_modes_requested"] == m0) & (pts["n_starts"] == s0) & (pts["seed"] == seed0)]

    def alternatives(self) -> list[tuple[str, Any]]:
        """``(label, rows)`` for every resolution other than the primary one, in the config's order."""
        out = []
        for m, s, seed in self.config.settings()[1:]:
            pts = self.points
            rows = pts[(pts["n_modes_requested"] == m) & (pts["n_starts"] == s) & (pts["seed"] == seed)]
            out.append((f"Fourier modes {m or 'default'}, {s} random starts, seed {seed}", rows))
        return out

    def onset_exponent(self, value: float | None = None) -> float:
        """``b`` of ``r ~ (K/K_# - 1)^b`` on the curve of ``value`` over ``1e-4 <= K/K_# - 1 <= 1e-2``.

        A continuous (supercritical pitchfork) onset has ``b = 1/2``; points where the global search
        returned no state (``r = 0``, its damped iteration slows down next to ``K_#``) are left out.
        ``nan`` with fewer than 3 points.
        """
        curve = self.curves if value is None else self.curves[(self.curves["value"] - value).abs() < 1e-12]
        sel = curve[
            (curve["K_rel"] >= 0.999e-4) & (curve["K_rel"] <= 1.001e-2) & (curve["order_parameter"] > 0)
        ]
        if len(sel) < 3:
            return math.nan
        return float(np.polyfit(np.log(sel["K_rel"]), np.log(sel["order_parameter"]), 1)[0])


def point_job(config: dict, run_dir: Path) -> dict:
    """Sweep job: ``critical_coupling`` at one value and resolution; returns the table row."""
    from thermolens.meanfield import TruncationWarning, critical_coupling

    kernel = kernel_of(config["kernel"], config["value"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TruncationWarning)
        res = critical_coupling(
            kernel, n_modes=config["n_modes"] or None, n_starts=config["n_starts"], seed=config["seed"]
        )
    row = res.summary()
    row.update(
        value=config["value"],
        offset=config["offset"],
        n_modes_requested=config["n_modes"],
        n_starts=config["n_starts"],
        seed=config["seed"],
        truncation_warning=any(issubclass(w.category, TruncationWarning) for w in caught),
    )
    return row


def curve_job(config: dict, run_dir: Path) -> dict:
    """Sweep job: order parameter ``|rho_hat(k)|`` of the global minimiser against ``K`` near ``K_c``.

    Below ``K_c`` no state beats the uniform one (order parameter 0); at a continuous transition it
    grows like ``(K / K_# - 1)^(1/2)``; at a discontinuous one it jumps at ``K_c`` to
    ``CriticalCoupling.jump``.
    """
    import pandas as pd

    from thermolens.meanfield import TruncationWarning, critical_coupling, global_minimize

    kernel = kernel_of(config["kernel"], config["value"])
    n_modes = config["n_modes"] or None
    with warnings.catch_warnings():  # point_job records the truncation warning of the same computation
        warnings.simplefilter("ignore", TruncationWarning)
        res = critical_coupling(kernel, n_modes=n_modes, n_starts=config["n_starts"], seed=config["seed"])
    gap = (res.K_sharp - res.K_c) / res.K_sharp
    width = max(config["width"], 1.5 * gap)
    rel = np.unique(
        np.concatenate(
            [np.linspace(-width, width, config["n_curve"]), np.geomspace(1e-4, 1e-2, 9), [-gap * (1 - 1e-6)]]
        )
    )
    rows = []
    for x in rel:
        states = global_minimize(
            kernel, res.K_sharp * (1 + x), n_starts=config["n_starts"], seed=config["seed"], n_modes=n_modes
        )
        best = states[0] if states else None
        rows.append(
            {
                "K": res.K_sharp * (1 + x),
                "K_rel": float(x),
                "order_parameter": abs(float(best.rho_hat[res.critical_mode])) if best else 0.0,
                "delta_F": best.delta_F if best else 0.0,
            }
        )
    io.write_table(Path(run_dir) / "curve.parquet", pd.DataFrame(rows).assign(value=config["value"]))
    return {
        "value": config["value"],
        "K_sharp": res.K_sharp,
        "K_c": res.K_c,
        "mode": res.critical_mode,
        "n_points": len(rows),
    }


def boundary_job(config: dict, run_dir: Path) -> dict:
    """Sweep job: ``transition_boundary`` (bisection on the globally computed order of the transition)."""
    from thermolens.meanfield import transition_boundary

    lo, hi = transition_boundary(
        config["kernel"],
        config["lo"],
        config["hi"],
        tol=config["tol"],
        n_starts=config["n_starts"],
        seed=config["seed"],
    )
    return {"lo": lo, "hi": hi}


def _value_name(value: float | None) -> str:
    return "none" if value is None else f"{value:.10g}"


def run_critical(config: CriticalConfig, run_dir: Path) -> CriticalResult:
    """Compute (or finish) every point, curve and bracket of ``config`` into ``run_dir``."""
    import pandas as pd

    from thermolens.meanfield import threshold as landau_threshold
    from thermolens.runner.sweep import Job

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    check_stored(config, run_dir, "meanfield-critical")
    thr = None
    if config.kernel in PARAMETER:
        if not (run_dir / "threshold.json").is_file():
            t = landau_threshold(config.kernel, offsets=())
            io.write_json(
                run_dir / "threshold.json",
                {
                    "parameter": t.parameter,
                    "threshold": t.threshold,
                    "continuous_side": t.continuous_side,
                    "kappa_4": t.kappa_4,
                },
            )
        thr = io.read_json(run_dir / "threshold.json")
    values: list[tuple[float | None, float | None]] = [(float(v), None) for v in config.values]
    if thr is not None:
        values += [(thr["threshold"] * (1 + o), float(o)) for o in config.threshold_offsets]
    if config.kernel not in PARAMETER:
        values = [(None, None)]
    jobs = [
        Job(
            f"point-{_value_name(v)}-m{m}-s{s}-seed{seed}",
            _FN + "point_job",
            {"kernel": config.kernel, "value": v, "offset": o, "n_modes": m, "n_starts": s, "seed": seed},
        )
        for v, o in values
        for m, s, seed in config.settings()
    ]
    m0, s0, seed0 = config.settings()[0]
    curve_values = [None] if config.kernel not in PARAMETER else [float(v) for v in config.curve_values]
    if config.n_curve:
        jobs += [
            Job(
                f"curve-{_value_name(v)}",
                _FN + "curve_job",
                {
                    "kernel": config.kernel,
                    "value": v,
                    "n_modes": m0,
                    "n_starts": s0,
                    "seed": seed0,
                    "n_curve": config.n_curve,
                    "width": config.curve_width,
                },
            )
            for v in curve_values
        ]
    if config.boundary:
        jobs.append(
            Job(
                "boundary",
                _FN + "boundary_job",
                {
                    "kernel": config.kernel,
                    "lo": config.boundary[0],
                    "hi": config.boundary[1],
                    "tol": config.boundary_tol,
                    "n_starts": s0,
                    "seed": seed0,
                },
            )
        )
    # inline: a job takes 0.1-10 s, less than starting worker processes would cost (measured: the quick
    # noisy-transformer piece in 10 s inline, 28 s on two spawned workers)
    done = sweep(jobs, run_dir, executor="inline")
    points = pd.DataFrame([done[j.name] for j in jobs if j.name.startswith("point-")])
    io.write_table(run_dir / "points.parquet", points)
    curves = [
        io.read_table(run_dir / JOBS / j.name / "curve.parquet") for j in jobs if j.name.startswith("curve-")
    ]
    io.write_table(
        run_dir / "curves.parquet",
        pd.concat(curves, ignore_index=True)
        if curves
        else pd.DataFrame(columns=["value", "K", "K_rel", "order_parameter", "delta_F"]),
    )
    if "boundary" in done:
        io.write_json(run_dir / "boundary.json", done["boundary"])
    return load_critical(run_dir)


def load_critical(run_dir: Path) -> CriticalResult:
    """A finished ``run_critical`` directory read back."""
    run_dir = Path(run_dir)
    if not (run_dir / "points.parquet").is_file():
        raise ValueError(
            f"{run_dir} holds no finished meanfield-critical run (no points.parquet); run the study there"
        )
    config = config_from_dict(CriticalConfig, io.read_json(run_dir / STUDY_JSON))
    thr = io.read_json(run_dir / "threshold.json") if (run_dir / "threshold.json").is_file() else None
    bnd = io.read_json(run_dir / "boundary.json") if (run_dir / "boundary.json").is_file() else None
    return CriticalResult(
        config,
        io.read_table(run_dir / "points.parquet"),
        io.read_table(run_dir / "curves.parquet"),
        thr,
        None if bnd is None else (float(bnd["lo"]), float(bnd["hi"])),
    )
