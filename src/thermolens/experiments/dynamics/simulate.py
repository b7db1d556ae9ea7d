"""The noisy-transformer particles through the same measurement as a model (``thermolens dynamics --simulate``).

For each ``beta``: ``n_sequences`` independent systems of ``n`` particles on S^(d-1) start uniform and run
at coupling ``K = K_ratio * K_#(beta, d)``; their states at ``tau = 0, tau_layer, 2 tau_layer, ...`` play the
embeddings and the layers' outputs. They go through ``measure.depth_table`` and ``measure.effective_table``
exactly like a model's token states (``beta`` is known: the particles' "logits" are ``beta u_i . u_j``, so
``beta_eff = beta``). A layer of a model is one step; a recorded interval of the particles is many, so
``K_eff`` is read from a short probe step after each recorded state (``_probe_steps``) and should return
``K`` wherever the field is strong enough to be seen (not at the uniform start, where it is ``O(N^-1/2)``).

The phase diagram of a model (order parameter against its attention temperature) has here its exact
counterpart with hysteresis: an annealing ladder of ``K`` (``sphere_dynamics.anneal``), heated from the
uniform state and cooled from the clustered one. Below ``beta_*`` the two branches meet (continuous
transition at ``K_#``); above it they part between ``K_c`` and ``K_#`` (discontinuous).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from thermolens.experiments.dynamics.measure import MeasureConfig, depth_table, effective_table, transition_shape

__all__ = ["PARTICLE_KERNELS", "SimulationConfig", "SimulationResult", "run_simulation"]

#: Kernels with a token (attention) particle dynamics. The other mean-field kernels describe densities on the
#: circle without attention logits: there is no beta_eff to read nor a token pipeline to share.
PARTICLE_KERNELS = ("noisy-transformer",)


def check_kernel(name: str) -> str:
    from thermolens.meanfield.kernels import KERNEL_NAMES

    if name in PARTICLE_KERNELS:
        return name
    if name in KERNEL_NAMES:
        raise ValueError(
            f"kernel {name!r} has no particle dynamics of tokens (no attention logits, no beta); "
            f"--simulate runs {', '.join(PARTICLE_KERNELS)}"
        )
    raise ValueError(f"unknown kernel {name!r}; --simulate runs {', '.join(PARTICLE_KERNELS)}")


@dataclass(frozen=True)
class SimulationConfig:
    """kernel: the particle model; betas: its inverse temperatures; K_ratio: coupling in units of
    K_#(beta, d) for the depth run; d: dimension of the space (2 = the circle); n_particles: tokens per
    system; n_sequences: systems; n_layers: recorded steps after the start, tau_layer apart; dt: time step
    (None: chosen from the drift); anneal_ratios: K/K_# ladder of the hysteresis run (empty: none);
    t_equilibrate / t_measure: tau per rung; anneal_systems / anneal_particles: size of the annealing run."""

    kernel: str = "noisy-transformer"
    betas: tuple[float, ...] = (1.0, 3.0)
    K_ratio: float = 1.5
    d: int = 2
    n_particles: int = 10_000
    n_sequences: int = 4
    n_layers: int = 6
    tau_layer: float = 2.0
    dt: float | None = None
    anneal_ratios: tuple[float, ...] = (0.8, 0.85, 0.9, 0.95, 1.0, 1.05, 1.1, 1.15, 1.2)
    t_equilibrate: float = 10.0
    t_measure: float = 2.0
    anneal_systems: int = 2
    anneal_particles: int = 2000
    measure: MeasureConfig = field(default_factory=MeasureConfig)

    def __post_init__(self) -> None:
        check_kernel(self.kernel)
        if not self.betas or not all(b > 0 and math.isfinite(b) for b in self.betas):
            raise ValueError("betas must be positive finite numbers, e.g. 1,3")
        if not self.K_ratio >= 0:
            raise ValueError(f"K_ratio={self.K_ratio} must be >= 0 (coupling in units of K_#)")
        if not isinstance(self.d, int) or self.d < 2:
            raise ValueError(f"d={self.d} must be an integer >= 2 (2 is the circle)")
        if self.n_particles < 2 or self.n_sequences < 2:
            raise ValueError("need n_particles >= 2 and n_sequences >= 2 (the bootstrap resamples systems)")
        if self.n_layers < 1 or not self.tau_layer > 0:
            raise ValueError("need n_layers >= 1 and tau_layer > 0")
        if self.dt is not None and not self.dt > 0:
            raise ValueError(f"dt={self.dt} must be positive")
        if any(not r >= 0 for r in self.anneal_ratios):
            raise ValueError("anneal ratios must be >= 0")
        if self.anneal_particles < 2 or self.anneal_systems < 1:
            raise ValueError("need anneal_particles >= 2 and anneal_systems >= 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SimulationResult:
    config: SimulationConfig
    depth: pd.DataFrame  # measure.depth_table with a beta column
    effective: pd.DataFrame  # measure.effective_table with beta and K_true columns
    anneal: pd.DataFrame  # beta, K, K_ratio, direction (heating / cooling), r1, sd
    theory: pd.DataFrame  # beta, K_sharp, K_c, transition (sphere / circle solver)
    timings: dict[str, float]

    TABLES = ("depth", "effective", "anneal", "theory")

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kernel": self.config.kernel, "d": self.config.d,
                               "n_particles": self.config.n_particles, "runs": []}
        for beta in self.config.betas:
            depth = self.depth[(self.depth["beta"] == beta) & (self.depth["quantity"] == "mean_cosine")]
            eff = self.effective[self.effective["beta"] == beta]
            theory = self.theory[self.theory["beta"] == beta].iloc[0]
            run = {
                "beta": beta,
                "mean_cosine": depth[depth["component"] == "tokens"].sort_values("layer")["value"].tolist(),
                "null": {"mean_cosine": depth[depth["component"] == "null"].sort_values("layer")["value"].tolist()},
                "beta_eff": eff["beta_eff"].tolist(),
                "K_true": float(eff["K_true"].iloc[0]),
                "K_eff": eff["K_eff"].tolist(),
                "K_sharp": float(theory["K_sharp"]), "K_c": float(theory["K_c"]),
                "transition": theory["transition"],
            }
            run.update(self.hysteresis(beta))
            out["runs"].append(run)
        return out

    def hysteresis(self, beta: float) -> dict[str, Any]:
        """The loop between the cooling and heating branches: its largest width and where, and the cooling
        branch's ``r_1`` at the last rung below ``K_#``, to set against the theory's jump at ``K_c``.

        A finite protocol opens a loop at a continuous transition too (critical slowing down: the rates
        near ``K_#`` vanish like ``|1 - K/K_#|``), so the width is compared between ``beta`` values, not with 0.
        """
        rows = self.anneal[self.anneal["beta"] == beta]
        if rows.empty:
            return {}
        up = rows[rows["direction"] == "heating"].sort_values("K")
        down = rows[rows["direction"] == "cooling"].sort_values("K")
        gap = down["r1"].to_numpy() - up["r1"].to_numpy()
        x = up["K_ratio"].to_numpy()
        i = int(np.argmax(gap))
        below = np.flatnonzero(x < 1.0 - 1e-9)
        out = {"loop_width": float(gap[i]), "loop_at_K_ratio": float(x[i])}
        if below.size:
            out["cooling_r1_below_K_sharp"] = float(down["r1"].to_numpy()[below[-1]])
            out["below_K_ratio"] = float(x[below[-1]])
        return out

    def save(self, run_dir: Path) -> None:
        from thermolens import io

        for name in self.TABLES:
            table = getattr(self, name)
            if len(table):
                io.write_table(Path(run_dir) / f"{name}.parquet", table)


def _theory(beta: float, d: int) -> dict[str, Any]:
    from thermolens.meanfield.kernels import noisy_transformer
    from thermolens.meanfield.sphere import sphere_critical
    from thermolens.meanfield.transition import critical_coupling

    if d == 2:
        crit = critical_coupling(noisy_transformer(beta))
        return {"beta": beta, "K_sharp": crit.K_sharp, "K_c": crit.K_c, "transition": crit.transition}
    crit = sphere_critical(d, beta, n_degrees=80, n_nodes=600)
    return {"beta": beta, "K_sharp": crit.K_sharp, "K_c": crit.K_c, "transition": crit.transition}


def _stable_dt(beta: float, K: float, d: int, tau_layer: float) -> float:
    """A step that keeps the largest deterministic move (``2 K e^beta`` per unit tau) under 0.2 rad on the
    circle (whose Fourier step allows 0.63) and under the sphere step's limit elsewhere, and the tangent noise
    (``sqrt(2 dt (d - 1))``) under 0.3 rad, with at least 10 steps per recorded interval."""
    from thermolens.meanfield.sphere_dynamics import MAX_DRIFT_PER_STEP

    drift = 2.0 * K * math.exp(beta) + 1.0
    move = 0.2 if d == 2 else 0.9 * MAX_DRIFT_PER_STEP
    dt = min(move / drift, 0.045 / (d - 1), tau_layer / 10)
    return tau_layer / math.ceil(tau_layer / dt)


def _probe_steps(beta: float, K: float, d: int, dt: float) -> int:
    """Steps of the short probe after each recorded state from which ``K_eff`` is read: a layer of the
    particle model is one small step (drift under 0.05 rad, noise under 0.15 rad), so that reading the
    update as one Euler step is exact to first order."""
    drift = 2.0 * K * math.exp(beta) + 1.0
    probe = min(0.05 / drift, 0.011 / (d - 1))
    return max(1, int(probe / dt))


def run_simulation(config: SimulationConfig, *, progress: Callable[[Sequence], Any] | None = None) -> SimulationResult:
    from thermolens.meanfield.sphere_dynamics import anneal, simulate_sphere

    timings: dict[str, float] = {}
    depth_parts, eff_parts, anneal_rows, theory_rows = [], [], [], []
    m = config.measure
    for beta in config.betas:
        start = time.perf_counter()
        theory = _theory(beta, config.d)
        theory_rows.append(theory)
        K = config.K_ratio * theory["K_sharp"]
        dt = config.dt or _stable_dt(beta, K, config.d, config.tau_layer)
        probe = _probe_steps(beta, K, config.d, dt) * dt
        layer_times = config.tau_layer * np.arange(config.n_layers + 1)
        times = np.sort(np.concatenate([layer_times, layer_times + probe]))
        run = simulate_sphere(beta, K, n_systems=config.n_sequences, n_particles=config.n_particles, d=config.d,
                              times=times, dt=dt, seed=m.seed, progress=progress)
        timings[f"simulate_beta{beta:g}_s"] = time.perf_counter() - start
        states, probes = run.states[0::2], run.states[1::2]
        depth = depth_table(states, m, components=("tokens", "null", "minus_mean"))
        eff, _ = effective_table(states, None, m, beta_fixed=beta, after=probes)
        depth_parts.append(depth.assign(beta=beta))
        eff_parts.append(eff.assign(beta=beta, K_true=K, dt=dt, probe=probe))
        if config.anneal_ratios:
            start = time.perf_counter()
            ladder = np.asarray(sorted(config.anneal_ratios)) * theory["K_sharp"]
            dt_anneal = config.dt or _stable_dt(beta, float(ladder.max()), config.d, config.t_measure)
            result = anneal(beta, ladder, n_systems=config.anneal_systems, n_particles=config.anneal_particles,
                            d=config.d, t_equilibrate=config.t_equilibrate, t_measure=config.t_measure,
                            dt=dt_anneal, seed=m.seed, progress=progress)
            for direction, r1, sd in (("heating", result.r1_up, result.r1_up_sd),
                                      ("cooling", result.r1_down, result.r1_down_sd)):
                anneal_rows.extend({"beta": beta, "K": float(k), "K_ratio": float(k / theory["K_sharp"]),
                                    "direction": direction, "r1": float(r), "sd": float(s)}
                                   for k, r, s in zip(result.K, r1, sd))
            timings[f"anneal_beta{beta:g}_s"] = time.perf_counter() - start
    return SimulationResult(
        config=config,
        depth=pd.concat(depth_parts, ignore_index=True),
        effective=pd.concat(eff_parts, ignore_index=True),
        anneal=pd.DataFrame(anneal_rows, columns=["beta", "K", "K_ratio", "direction", "r1", "sd"]),
        theory=pd.DataFrame(theory_rows),
        timings=timings,
    )
