"""Relaxation at (and near) a critical coupling: the mean-field PDE and N particles per seed (a study).

``run_rates`` (``RatesConfig``): relaxation from ``rho_0 = 1 + a cos(2 pi k theta)`` (k the critical
mode) at ``K = K_factor K_#``, for each ``RateCase``: the PDE (``simulate_pde``; a short accurate run
and long runs at the resolutions asked for) and ``n_particles`` particles per seed (``particle_step``,
stochastic Heun) until the PDE's order parameter reaches ``floor_factor`` times the finite-N floor
``r_N`` (``N Delta F(r_N) = 1`` on the Landau free energy ``free_energy_landscape``: below it the
order parameter of N particles is dominated by its equilibrium fluctuations). Run directory::

    study.json, cases.parquet (K_#, K, mode, r_N, t_end per case),
    pde.parquet (case, run, t, order_parameter, distance, delta_F),
    particles.parquet (case, seed, t, abs_c = |c_k|, re_c = Re c_k),  jobs/<name>/

Both stages are sweeps (``thermolens.runner.sweep``) on ``inner_executor()``: a finished job is never
redone, so a run killed at any point continues when called again on the same directory.

``fit_decay`` (the shifted power law ``r(t) = r_1 (1 + (t - t_1)/tau)^(-p)``, the exact solution of
the amplitude equation ``dr/dt = -g r^(1 + 1/p)``) reads an exponent off a finite window without the
bias of a plain log-log fit from ``t = 0``; ``RatesResult.exponents`` applies it per seed.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from thermolens import io
from thermolens.experiments.meanfield.critical import (
    JOBS,
    KERNELS,
    PARAMETER,
    STUDY_JSON,
    check_stored,
    kernel_of,
    sweep,
)
from thermolens.runner.study import config_from_dict

__all__ = [
    "DecayFit",
    "RateCase",
    "RatesConfig",
    "RatesResult",
    "fit_decay",
    "fluctuation_floor",
    "initial_positions",
    "load_rates",
    "particle_job",
    "pde_job",
    "run_rates",
    "window",
]

_FN = "thermolens.experiments.meanfield.rates:"

# --------------------------------------------------------------------------------------------------
# relaxation at criticality: PDE and particles


@dataclass(frozen=True)
class RateCase:
    """One relaxation experiment.

    ``parameter`` of ``kernel`` (``None`` for Doi--Onsager) or, with ``tricritical``, the kernel's Landau
    threshold ``p_*`` (``c_4 = 0``: the sextic case); ``K = K_factor K_#``; ``rho_0 = 1 + amplitude
    cos(2 pi k theta)``. PDE: a short run (``pde_dt``, ``pde_grid``) to ``t_max`` and long runs to
    ``long_t`` at each ``(dt, n_grid)`` of ``long_runs``. Particles (``n_particles = 0``: none): one run
    per seed with time step ``dt`` and ``n_force_modes`` Fourier modes of the force (0: the library's
    ``force_modes`` at 1e-10; kinked kernels, whose coefficients decay like ``k^-2``, need it given),
    until the short PDE's order parameter falls to ``floor_factor r_N`` (at most ``t_max``).
    """

    name: str
    kernel: str = "noisy-transformer"
    parameter: float | None = 1.0
    tricritical: bool = False
    K_factor: float = 1.0
    amplitude: float = 0.9
    n_particles: int = 0
    seeds: tuple[int, ...] = ()
    dt: float = 2e-3
    n_force_modes: int = 0
    floor_factor: float = 2.0
    t_max: float = 12.0
    pde_dt: float = 1e-3
    pde_grid: int = 64
    long_t: float = 0.0
    long_runs: tuple[tuple[float, int], ...] = ((1e-2, 32),)

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ValueError(f"case name {self.name!r} must be a non-empty name without slashes")
        if self.kernel not in KERNELS:
            raise ValueError(f"kernel {self.kernel!r} is unknown; choose one of {', '.join(KERNELS)}")
        if self.kernel in PARAMETER and self.parameter is None and not self.tricritical:
            raise ValueError(
                f"case {self.name}: {self.kernel} needs a parameter ({PARAMETER[self.kernel]}) or tricritical"
            )
        if self.tricritical and self.kernel not in ("noisy-transformer", "hegselmann-krause"):
            raise ValueError(
                f"case {self.name}: tricritical needs a kernel with a Landau threshold "
                "(noisy-transformer or hegselmann-krause)"
            )
        if not 0 < self.amplitude < 1 or not self.K_factor > 0:
            raise ValueError(
                f"case {self.name}: amplitude={self.amplitude} must lie in (0, 1) and K_factor > 0"
            )
        if self.n_particles < 0 or (self.n_particles and (self.n_particles < 100 or not self.seeds)):
            raise ValueError(
                f"case {self.name}: n_particles={self.n_particles} must be 0 or >= 100 with at least one seed"
            )
        if (
            self.n_particles
            and self.kernel in ("doi-onsager", "hegselmann-krause")
            and self.n_force_modes == 0
        ):
            raise ValueError(
                f"case {self.name}: the {self.kernel} kernel's coefficients decay like k^-2; "
                "give n_force_modes (e.g. 16) for its particles"
            )
        if min(self.dt, self.pde_dt, self.t_max, self.floor_factor) <= 0 or self.long_t < 0:
            raise ValueError(
                f"case {self.name}: dt, pde_dt, t_max and floor_factor must be > 0 and long_t >= 0"
            )
        if (
            self.pde_grid < 16
            or self.pde_grid % 2
            or any(g < 16 or g % 2 or d <= 0 for d, g in self.long_runs)
        ):
            raise ValueError(f"case {self.name}: PDE grids must be even numbers >= 16 and time steps > 0")


@dataclass(frozen=True)
class RatesConfig:
    """The relaxation experiments (one ``RateCase`` each, distinct names) and records per run."""

    cases: tuple[RateCase, ...] = (RateCase("quartic"),)
    n_records: int = 120

    def __post_init__(self) -> None:
        names = [c.name for c in self.cases]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"cases need distinct names, got {names}")
        if self.n_records < 10:
            raise ValueError(f"n_records={self.n_records} must be >= 10")


@dataclass(frozen=True)
class RatesResult:
    """``cases``: one row per case (name, kernel, parameter, tricritical, K_factor, K_sharp, K, mode,
    landau_quartic, n_particles, r_floor, t_end, floor_reached, n_force_modes); ``pde``: case, run
    (``"short"`` or ``"long dt=.. grid=.."``), t, order_parameter, distance, delta_F; ``particles``:
    case, seed, t, abs_c, re_c (``c_k`` of the critical mode ``k``)."""

    config: RatesConfig
    cases: Any  # pandas.DataFrame
    pde: Any  # pandas.DataFrame
    particles: Any  # pandas.DataFrame

    def summary(self) -> dict[str, Any]:
        return {
            "cases": self.cases[["name", "K_sharp", "r_floor", "t_end"]].to_dict("records"),
            "n_particle_runs": int(self.particles.groupby(["case", "seed"]).ngroups)
            if len(self.particles)
            else 0,
        }

    def info(self, case: str):
        """The ``cases`` row of ``case``."""
        return self.cases.set_index("name").loc[case]

    def exponents(self, case: str, *, r_lo_factor: float, r_hi: float, observable: str = "abs_c") -> dict:
        """Per-seed ``fit_decay`` exponents of ``case`` over the window where its short PDE run falls from
        ``r_hi`` to ``r_lo_factor r_N``, and the PDE's own exponent there: ``{"window", "pde", "exponents"}``.

        ``observable``: ``"abs_c"`` (``|c_k|``) or ``"re_c"`` (``Re c_k``, the phase of ``rho_0`` pinned).
        """
        short = self.pde[(self.pde["case"] == case) & (self.pde["run"] == "short")]
        t_lo, t_hi = window(
            short["t"], short["order_parameter"], r_lo=r_lo_factor * self.info(case)["r_floor"], r_hi=r_hi
        )
        inside = (short["t"] >= t_lo) & (short["t"] <= t_hi)
        pde = fit_decay(short["t"][inside], short["order_parameter"][inside])
        exps = []
        for _, runs in self.particles[self.particles["case"] == case].groupby("seed"):
            sel = (runs["t"] >= t_lo) & (runs["t"] <= t_hi)
            exps.append(fit_decay(runs["t"][sel], runs[observable][sel].abs()).exponent)
        return {"window": (t_lo, t_hi), "pde": pde.exponent, "exponents": exps}

    def late_exponents(self) -> dict[tuple[str, str], float]:
        """``fit_decay`` exponent over the last decade of time of every long PDE run, by (case, run)."""
        out = {}
        for (case, run), rows in self.pde[self.pde["run"] != "short"].groupby(["case", "run"], sort=False):
            late = rows[rows["t"] >= rows["t"].max() / 10]
            out[(case, run)] = fit_decay(late["t"], late["order_parameter"]).exponent
        return out

    def relaxation_rates(self) -> dict[str, dict[str, float]]:
        """Off-critical cases (``K_factor != 1``): the exponential rate of the short PDE run once
        ``r < 0.02`` (linear regime), beside the continuum rate ``(2 pi k)^2 (1 - 2 K W_hat(k))`` and the
        IMEX scheme's own, ``log((1 + dt q^2)/(1 + dt q^2 2 K W_hat(k)))/dt`` with ``q = 2 pi k``."""
        from thermolens.meanfield import linear_decay_rate
        from thermolens.meanfield.dynamics import fit_exponential_rate

        out = {}
        for _, info in self.cases[self.cases["K_factor"] != 1.0].iterrows():
            short = self.pde[(self.pde["case"] == info["name"]) & (self.pde["run"] == "short")]
            lin = short[(short["order_parameter"] < 0.02) & (short["order_parameter"] > 1e-10)]
            parameter = None if info["kernel"] not in PARAMETER else float(info["parameter"])
            theory = linear_decay_rate(
                kernel_of(info["kernel"], parameter), float(info["K"]), int(info["mode"])
            )
            t, r = lin["t"].to_numpy(), lin["order_parameter"].to_numpy()
            dt, q2 = float(short["dt"].iloc[0]), (2 * math.pi * int(info["mode"])) ** 2
            out[info["name"]] = {
                "K_over_K_sharp": float(info["K_factor"]),
                "fitted_rate": fit_exponential_rate(t, r) if len(lin) > 3 else math.nan,
                "linear_theory_rate": theory,
                "scheme_rate": math.log((1 + dt * q2) / (1 + dt * (q2 - theory))) / dt,
            }
        return out


def initial_positions(n: int, *, amplitude: float, mode: int, seed: int) -> np.ndarray:
    """``n`` angles from ``rho_0 = 1 + amplitude cos(2 pi mode theta)`` by rejection sampling.

    Uses the stream ``[seed, 0]``, which ``particle_step`` (streams ``[seed, step + 1]``) never touches.
    """
    rng = np.random.default_rng([seed, 0])
    out, have = np.empty(n), 0
    while have < n:
        theta, u = rng.uniform(0.0, 1.0, n), rng.uniform(0.0, 1.0, n)
        keep = theta[u * (1 + amplitude) < 1 + amplitude * np.cos(2 * np.pi * mode * theta)]
        take = min(keep.size, n - have)
        out[have : have + take] = keep[:take]
        have += take
    return out


def fluctuation_floor(kernel, K: float, *, mode: int, n_particles: int, r_max: float) -> float:
    """Order parameter ``r_N`` with ``N Delta F(r_N) = 1`` (``nan`` if none below ``r_max``).

    The empirical measure of N mean-field particles in equilibrium obeys a large-deviation principle
    with rate ``N (F_K(rho) - min F_K)`` (Dawson & Gaertner 1987), so ``|c_k|`` fluctuates up to about
    ``r_N``; at a critical point ``Delta F ~ r^4`` (or ``r^6``) and ``r_N ~ N^(-1/4)`` (``N^(-1/6)``).
    ``Delta F(r)`` is the Landau free energy of ``free_energy_landscape``.
    """
    from thermolens.meanfield import free_energy_landscape

    land = free_energy_landscape(kernel, [K], mode=mode, r_max=r_max, n_r=61)
    r, F = land.r, land.delta_F[0]
    above = np.flatnonzero(np.isfinite(F) & (n_particles * F >= 1.0))
    if above.size == 0 or above[0] == 0:
        return math.nan
    i = int(above[0])
    return float(np.interp(1.0, n_particles * F[i - 1 : i + 1], r[i - 1 : i + 1]))


def _case_kernel(case: dict, parameter: float | None):
    return kernel_of(case["kernel"], parameter)


def pde_job(config: dict, run_dir: Path) -> dict:
    """Sweep job: one case's PDE runs (short, then long) and its ``K_#``, ``K``, floor and particle time."""
    import pandas as pd

    from thermolens.meanfield import landau_expansion, linear_stability, simulate_pde
    from thermolens.meanfield import threshold as landau_threshold
    from thermolens.meanfield.dynamics import force_modes

    case = config["case"]
    parameter = (
        landau_threshold(case["kernel"], offsets=()).threshold if case["tricritical"] else case["parameter"]
    )
    kernel = _case_kernel(case, parameter)
    lin = linear_stability(kernel)
    mode, K = lin.critical_mode, case["K_factor"] * lin.K_sharp
    frames = []
    short = simulate_pde(
        kernel,
        K,
        t_final=case["t_max"],
        dt=case["pde_dt"],
        n_grid=case["pde_grid"],
        amplitude=case["amplitude"],
        mode=mode,
        n_records=400,
    )
    frames.append(short.to_frame().assign(run="short", dt=case["pde_dt"], n_grid=case["pde_grid"]))
    if case["long_t"] > 0:
        for dt, grid in case["long_runs"]:
            run = simulate_pde(
                kernel,
                K,
                t_final=case["long_t"],
                dt=dt,
                n_grid=grid,
                amplitude=case["amplitude"],
                mode=mode,
                n_records=400,
            )
            frames.append(run.to_frame().assign(run=f"long dt={dt:g} grid={grid}", dt=dt, n_grid=grid))
    io.write_table(
        Path(run_dir) / "pde.parquet", pd.concat(frames, ignore_index=True).assign(case=case["name"])
    )
    floor, t_end, reached = math.nan, case["t_max"], False
    if case["n_particles"]:
        floor = fluctuation_floor(
            kernel, K, mode=mode, n_particles=case["n_particles"], r_max=case["amplitude"] / 2
        )
        below = (
            np.flatnonzero(short.order_parameter <= case["floor_factor"] * floor)
            if math.isfinite(floor)
            else []
        )
        if len(below):
            t_end, reached = float(short.times[below[0]]), True
    M = case["n_force_modes"] or force_modes(kernel, tol=1e-10)
    return {
        "name": case["name"],
        "kernel": case["kernel"],
        "parameter": parameter,
        "tricritical": case["tricritical"],
        "K_factor": case["K_factor"],
        "K_sharp": lin.K_sharp,
        "K": K,
        "mode": mode,
        "landau_quartic": landau_expansion(kernel).quartic,
        "n_particles": case["n_particles"],
        "r_floor": floor,
        "t_end": t_end,
        "floor_reached": reached,
        "n_force_modes": int(M),
    }


def _record_steps(n_steps: int, n_records: int) -> set[int]:
    """Step indices to record: half spaced geometrically (early decay), half evenly (late decay)."""
    half = max(2, n_records // 2)
    steps = np.concatenate([[0], np.geomspace(1, n_steps, half), np.linspace(0, n_steps, half)])
    return set(np.unique(steps.astype(int)).tolist())


def particle_job(config: dict, run_dir: Path) -> dict:
    """Sweep job: ``n_particles`` particles from ``rho_0`` for ``n_steps`` Heun steps; ``c_k`` recorded."""
    import pandas as pd

    from thermolens.meanfield.dynamics import ParticleState, fourier_moments, particle_step

    case, info = config["case"], config["info"]
    kernel = _case_kernel(case, info["parameter"])
    mode, K, dt, seed = info["mode"], info["K"], case["dt"], config["seed"]
    w_hat = kernel.w_hat(np.arange(info["n_force_modes"] + 1))
    n_steps = max(1, math.ceil(info["t_end"] / dt))
    state = ParticleState(
        0.0,
        initial_positions(case["n_particles"], amplitude=case["amplitude"], mode=mode, seed=seed),
        seed,
        0,
    )
    record, rows = _record_steps(n_steps, config["n_records"]), []
    for i in range(n_steps + 1):
        if i in record:
            c = fourier_moments(state.theta, mode)[mode - 1]
            rows.append((state.t, abs(c), c.real))
        if i < n_steps:
            state = particle_step(state, w_hat=w_hat, K=K, dt=dt)
    frame = pd.DataFrame(rows, columns=["t", "abs_c", "re_c"]).assign(case=case["name"], seed=seed)
    io.write_table(Path(run_dir) / "particles.parquet", frame)
    return {"case": case["name"], "seed": seed, "n_steps": n_steps, "final_abs_c": float(rows[-1][1])}


def run_rates(config: RatesConfig, run_dir: Path) -> RatesResult:
    """Run (or finish) every case's PDE, then every particle run, into ``run_dir``."""
    import pandas as pd

    from thermolens.runner.sweep import Job

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    check_stored(config, run_dir, "meanfield-rates")
    cases = {c.name: dataclasses.asdict(c) for c in config.cases}
    pde_jobs = [Job(f"pde-{name}", _FN + "pde_job", {"case": io.to_jsonable(c)}) for name, c in cases.items()]
    info = {s["name"]: s for s in sweep(pde_jobs, run_dir).values()}
    particle_jobs = [
        Job(
            f"particles-{name}-seed{seed}",
            _FN + "particle_job",
            {"case": io.to_jsonable(c), "info": info[name], "seed": seed, "n_records": config.n_records},
        )
        for name, c in cases.items()
        if c["n_particles"]
        for seed in c["seeds"]
    ]
    sweep(particle_jobs, run_dir)
    io.write_table(run_dir / "cases.parquet", pd.DataFrame([info[name] for name in cases]))
    io.write_table(
        run_dir / "pde.parquet",
        pd.concat(
            [io.read_table(run_dir / JOBS / j.name / "pde.parquet") for j in pde_jobs], ignore_index=True
        ),
    )
    parts = [io.read_table(run_dir / JOBS / j.name / "particles.parquet") for j in particle_jobs]
    io.write_table(
        run_dir / "particles.parquet",
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame(columns=["t", "abs_c", "re_c", "case", "seed"]),
    )
    return load_rates(run_dir)


def load_rates(run_dir: Path) -> RatesResult:
    """A finished ``run_rates`` directory read back."""
    run_dir = Path(run_dir)
    if not (run_dir / "particles.parquet").is_file():
        raise ValueError(
            f"{run_dir} holds no finished meanfield-rates run (no particles.parquet); run the study there"
        )
    config = config_from_dict(RatesConfig, io.read_json(run_dir / STUDY_JSON))
    return RatesResult(
        config,
        io.read_table(run_dir / "cases.parquet"),
        io.read_table(run_dir / "pde.parquet"),
        io.read_table(run_dir / "particles.parquet"),
    )


# --------------------------------------------------------------------------------------------------
# reading an exponent off a decay


@dataclass(frozen=True)
class DecayFit:
    """``r(t) = r_start (1 + (t - t_start)/tau)^(-exponent)`` fitted on ``n_points``; ``rms``: residual
    of log r."""

    exponent: float
    tau: float
    r_start: float
    t_start: float
    rms: float
    n_points: int

    @property
    def ok(self) -> bool:
        return math.isfinite(self.exponent)


def fit_decay(times: np.ndarray, values: np.ndarray, *, min_points: int = 6) -> DecayFit:
    """Least squares of ``log r = log r_1 - p log(1 + (t - t_1)/tau)`` over ``(p, tau, r_1)``.

    This is the exact solution of the amplitude equation ``dr/dt = -g r^(1 + 1/p)`` from ``r_1`` at
    ``t_1`` (``tau = p r_1^(-1/p) / g``): at a quartic critical point ``p = 1/2``, at a sextic one
    ``p = 1/4``; an exponential decay drives ``p`` and ``tau`` to their upper bounds (``p -> inf``).
    A plain log-log slope from ``t = 0`` mistakes the initial plateau for a small exponent. Fewer than
    ``min_points`` positive values give a fit with ``exponent = nan``.
    """
    from scipy.optimize import least_squares

    t, r = np.asarray(times, float), np.asarray(values, float)
    keep = np.isfinite(t) & np.isfinite(r) & (r > 0)
    t, r = t[keep], r[keep]
    if t.size < min_points or t[-1] <= t[0]:
        return DecayFit(math.nan, math.nan, math.nan, math.nan, math.nan, int(t.size))
    t0, y, span = t[0], np.log(r), t[-1] - t[0]

    def residual(x):
        p, log_tau, log_r1 = x
        return log_r1 - p * np.log1p((t - t0) / math.exp(log_tau)) - y

    x0 = [0.5, math.log(span / 10), y[0]]
    lo, hi = [1e-3, math.log(span) - 25, y.min() - 5], [50.0, math.log(span) + 25, y.max() + 5]
    sol = least_squares(residual, x0, bounds=(lo, hi))
    p, log_tau, log_r1 = sol.x
    return DecayFit(
        float(p),
        math.exp(log_tau),
        math.exp(log_r1),
        float(t0),
        float(np.sqrt(np.mean(sol.fun**2))),
        int(t.size),
    )


def window(times: np.ndarray, values: np.ndarray, *, r_lo: float, r_hi: float) -> tuple[float, float]:
    """``(t_lo, t_hi)``: the time span in which a decaying ``values`` lies in ``[r_lo, r_hi]``.

    ``t_lo`` is the first time at or below ``r_hi``, ``t_hi`` the last record before it first drops
    below ``r_lo`` (the end of the record if it never does); ``(nan, nan)`` when the span is empty.
    """
    t, r = np.asarray(times, float), np.asarray(values, float)
    start = np.flatnonzero(r <= r_hi)
    if not start.size or not r_lo < r_hi:
        return math.nan, math.nan
    below = np.flatnonzero(r < r_lo)
    below = below[below > start[0]]
    end = below[0] - 1 if below.size else t.size - 1
    return (float(t[start[0]]), float(t[end])) if end > start[0] else (math.nan, math.nan)
