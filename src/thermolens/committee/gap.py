"""The computational-to-statistical gap, observed: AMP from random and informed starts, state evolution
from the same starts, and gradient-based learners on the same instances (Aubin et al. 2018,
arXiv:1806.05451: "regimes where a low generalization error is information-theoretically reachable
but AMP cannot reach it").

For every n of a ladder, alpha of a grid and seed, one instance is drawn (teacher, inputs, labels:
``generate(n, alpha, K, prior, seed=default_rng([seed, 0]))``, as ``amp_over_seeds`` draws it) and AMP is
run on it from each start:

* ``random``: uninformed, W_hat ~ N(0, 0.1^2); what an algorithm that does not know the teacher does;
* ``informed``: planted at overlap q0 = 0.99 with the teacher; it shows where the specialized
  (low-error) fixed point exists and attracts AMP (down to the spinodal of the specialized branch).

A run *succeeds* when it ends specialized: its aligned q_d (committee-symmetric projection of the
overlap, docs/committee.md) is at least ``success_q`` (0.5). ``success_random`` and ``success_informed``
are the fractions of seeds that succeed. State evolution is solved at every alpha from the same two
starts (K = 1, 2 exactly, odd K committee-symmetric), so each run has its own prediction, and the
equilibrium (larger free entropy) gives the Bayes-optimal error.

Thresholds read from the SE grid (resolution: the grid): ``alpha_it``, where the free entropies of
the two branches cross (linear interpolation of their difference; only an upper bound, flagged, when
the specialized branch already wins at the first grid alpha where it exists); ``alpha_alg``, the first alpha
where the uninformed branch is specialized; ``alpha_spinodal``, the first alpha where the informed
branch is.

Finite-size crossover: for each n and start, a logistic curve P(success) = 1 / (1 + exp(-(alpha -
alpha_50) / width)) is fitted to the individual runs by maximum likelihood; alpha_50(n) is
extrapolated to n -> infinity as alpha_50 = alpha_inf + c / sqrt(n) (weighted least squares; the
1/sqrt(n) law is an assumption, stated with the result).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from thermolens.committee.amp import K_MAX, MIN_N, SPECIALIZED, STARTS, AMPConfig, run_amp
from thermolens.committee.data import check_model, generate

LEARNERS = ("gd", "adam")
SUCCESS_Q = SPECIALIZED


@dataclass(frozen=True)
class GapConfig:
    """A gap study. ``alphas`` ascending; ``ns`` the finite-size ladder; one instance per (n, alpha, seed);
    ``amp``: AMP settings (its ``start`` is overridden by each of ``starts``); ``learners``: ``gd``/``adam``
    trained on the instances of ``learner_n`` (None: the smallest n) for the first ``learner_seeds`` seeds
    (None: all) at ``learner_alphas`` (None: every alpha; each must be on the grid); ``se``: solve state
    evolution at every alpha."""

    K: int = 2
    prior: str = "binary"
    alphas: tuple[float, ...] = (1.4, 1.6, 1.8, 2.0, 2.2, 2.4)
    ns: tuple[int, ...] = (2000,)
    seeds: tuple[int, ...] = tuple(range(10))
    starts: tuple[str, ...] = STARTS
    success_q: float = SUCCESS_Q
    amp: AMPConfig = field(default_factory=AMPConfig)
    learners: tuple[str, ...] = ()
    learner_n: int | None = None
    learner_seeds: int | None = None
    learner_alphas: tuple[float, ...] | None = None
    se: bool = True

    def __post_init__(self) -> None:
        check_model(self.K, self.prior, self.amp.activation)
        if self.K > 2 and self.K % 2 == 0:
            raise ValueError(f"K={self.K}: for K >= 3 AMP and state evolution use the committee-symmetric rule, "
                             "which needs odd K (an even committee ties); use K = 1, 2 or an odd K <= 11")
        if self.K > K_MAX:
            raise ValueError(f"K={self.K}: AMP is implemented for K = 1, 2 and odd K <= {K_MAX}; for larger K use "
                             "`thermolens committee se` with the large-K limit")
        a = np.asarray(self.alphas, dtype=float)
        if a.ndim != 1 or a.size == 0 or np.any(~np.isfinite(a)) or np.any(a <= 0) or np.any(np.diff(a) <= 0):
            raise ValueError(f"alphas {self.alphas} must be a non-empty ascending list of positive numbers")
        if not self.ns or any(int(n) != n or n < MIN_N for n in self.ns) or len(set(self.ns)) != len(self.ns):
            raise ValueError(f"ns {self.ns} must be distinct input dimensions n >= {MIN_N}")
        for n in self.ns:
            if round(min(self.alphas) * n) < 1:
                raise ValueError(f"n={n} is too small for the alpha grid: alpha={min(self.alphas)} gives fewer than "
                                 "1 sample (m = alpha n); raise n or alpha")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ValueError(f"seeds {self.seeds} must be distinct non-negative integers (at least one)")
        if not self.starts or any(s not in STARTS for s in self.starts) or len(set(self.starts)) != len(self.starts):
            raise ValueError(f"starts {self.starts}: choose from {', '.join(STARTS)}")
        if not 0.0 < self.success_q < 1.0:
            raise ValueError(f"success_q={self.success_q} must lie in (0, 1)")
        if any(m not in LEARNERS for m in self.learners):
            raise ValueError(f"learners {self.learners}: choose from {', '.join(LEARNERS)}")
        if self.learner_n is not None and self.learner_n not in self.ns:
            raise ValueError(f"learner_n={self.learner_n} must be one of ns {self.ns}")
        if self.learner_alphas is not None and not all(np.any(np.isclose(a, self.alphas)) for a in self.learner_alphas):
            raise ValueError(f"learner_alphas {self.learner_alphas} must be values of the alpha grid {self.alphas}")
        if self.learner_seeds is not None and self.learner_seeds < 1:
            raise ValueError(f"learner_seeds={self.learner_seeds} must be >= 1")

    def amp_config(self, start: str) -> AMPConfig:
        return replace(self.amp, K=self.K, prior=self.prior, start=start)


# --------------------------------------------------------------------------------------------------
# state evolution from AMP's starts


def se_from_starts(alpha: float, K: int, prior: str, q0: float, starts: Sequence[str] = STARTS) -> list:
    """Fixed points at ``alpha`` for each of ``starts``: ``random`` -> the uninformed branch (the library's
    uninformed start), ``informed`` -> from Q = q0 I (AMP's planted start)."""
    from thermolens.committee.state_evolution import SEConfig, solve_fixed_point

    out = []
    for start in starts:
        branch = "uninformed" if start == "random" else "informed"
        if K <= 2:
            Q0 = None if start == "random" else q0 * np.eye(K)
            out.append(solve_fixed_point(alpha, SEConfig(K=K, prior=prior), branch=branch, Q0=Q0))
        else:
            from thermolens.committee.general_k import SymmetricConfig, solve_symmetric

            start_q = None if start == "random" else np.array([q0, q0])
            out.append(solve_symmetric(alpha, SymmetricConfig(K=K, prior=prior), branch=branch, q0=start_q))
    return out


def _crossing(x: np.ndarray, d: np.ndarray) -> float | None:
    """First x where d changes sign from < 0 to >= 0 (linear interpolation); None if it never does."""
    for j in range(1, len(x)):
        if np.isfinite(d[j - 1]) and np.isfinite(d[j]) and d[j - 1] < 0 <= d[j]:
            return float(x[j - 1] + (x[j] - x[j - 1]) * (-d[j - 1]) / (d[j] - d[j - 1]))
    return None


def grid_thresholds(se: Any, success_q: float) -> dict[str, float | None]:
    """alpha_it, alpha_alg, alpha_spinodal read from the SE table (columns alpha, branch, q_d, free_entropy)."""
    u = se[se.branch == "uninformed"].sort_values("alpha")
    i = se[se.branch == "informed"].sort_values("alpha")
    alpha = u.alpha.to_numpy()
    spec_u = u.q_d.to_numpy() >= success_q
    spec_i = i.q_d.to_numpy() >= success_q
    # free-entropy gain of the specialized state where the informed branch is specialized and the uninformed is not
    gain = np.where(spec_i & ~spec_u, i.free_entropy.to_numpy() - u.free_entropy.to_numpy(), np.nan)
    if np.any(spec_u):
        gain[np.argmax(spec_u):] = 1.0  # once AMP's branch specializes, the specialized state wins
    alpha_it, bound = _crossing(alpha, gain), False
    finite = np.flatnonzero(np.isfinite(gain))
    if alpha_it is None and finite.size and gain[finite[0]] >= 0:
        # the specialized branch already wins where it first appears on the grid: alpha_it <= that alpha
        alpha_it, bound = float(alpha[finite[0]]), True
    return {
        "alpha_it": alpha_it,
        "alpha_it_upper_bound": bound,
        "alpha_alg": float(alpha[np.argmax(spec_u)]) if np.any(spec_u) else None,
        "alpha_spinodal": float(alpha[np.argmax(spec_i)]) if np.any(spec_i) else None,
    }


# --------------------------------------------------------------------------------------------------
# finite-size crossover


def logistic_fit(alpha: np.ndarray, success: np.ndarray) -> dict[str, float | str | None]:
    """Maximum-likelihood logistic P(success) = 1 / (1 + exp(-(alpha - a50) / w)) over individual runs.

    Returns a50, its standard error (inverse Hessian of the negative log-likelihood), the width w, and
    ``status``: ``fit``; ``below`` (every run succeeds, or the fitted a50 lies below the grid: a few
    scattered failures); ``above`` (none does, or a50 lies above the grid); or ``step`` (the outcomes
    separate perfectly between two alphas: a50 is their midpoint, error half the gap). Only ``fit`` and
    ``step`` give a50; a crossover outside the grid is not located by it.
    """
    from scipy.optimize import minimize

    alpha = np.asarray(alpha, dtype=float)
    s = np.asarray(success, dtype=float)
    if s.min() == 1.0:
        return {"alpha_50": None, "alpha_50_err": None, "width": None, "status": "below"}
    if s.max() == 0.0:
        return {"alpha_50": None, "alpha_50_err": None, "width": None, "status": "above"}
    lo_fail, hi_ok = alpha[s == 0].max(), alpha[s == 1].min()
    if lo_fail < hi_ok:  # perfectly separated: the maximum likelihood has w -> 0
        return {"alpha_50": float(0.5 * (lo_fail + hi_ok)), "alpha_50_err": float(0.5 * (hi_ok - lo_fail)),
                "width": 0.0, "status": "step"}
    span = float(alpha.max() - alpha.min()) or 1.0

    def nll(p):
        z = (alpha - p[0]) / math.exp(p[1])
        return float(np.sum(np.logaddexp(0.0, -z) * s + np.logaddexp(0.0, z) * (1.0 - s)))

    best = minimize(nll, np.array([float(np.median(alpha)), math.log(0.1 * span)]), method="Nelder-Mead",
                    options={"xatol": 1e-8, "fatol": 1e-10, "maxiter": 4000})
    a50, log_w = best.x
    h = 1e-4 * span
    second = (nll([a50 + h, log_w]) - 2.0 * nll([a50, log_w]) + nll([a50 - h, log_w])) / (h * h)
    err = 1.0 / math.sqrt(second) if second > 0 else math.inf
    if not alpha.min() <= a50 <= alpha.max():
        return {"alpha_50": None, "alpha_50_err": None, "width": None,
                "status": "below" if a50 < alpha.min() else "above"}
    return {"alpha_50": float(a50), "alpha_50_err": float(err), "width": float(math.exp(log_w)), "status": "fit"}


def extrapolate(ns: Sequence[int], a50: Sequence[float], err: Sequence[float]) -> dict[str, float | None]:
    """alpha_50(n) = alpha_inf + c / sqrt(n), weighted least squares (weights 1 / err^2); needs 2 points
    (with 2 the line passes through both and the error comes from theirs)."""
    x = 1.0 / np.sqrt(np.asarray(ns, dtype=float))
    y = np.asarray(a50, dtype=float)
    e = np.maximum(np.asarray(err, dtype=float), 1e-6)
    if len(x) < 2:
        return {"alpha_inf": None, "alpha_inf_err": None, "slope": None, "n_points": int(len(x))}
    X = np.stack([np.ones_like(x), x], axis=1) / e[:, None]
    cov = np.linalg.inv(X.T @ X)
    coef = cov @ X.T @ (y / e)
    return {"alpha_inf": float(coef[0]), "alpha_inf_err": float(math.sqrt(cov[0, 0])), "slope": float(coef[1]),
            "n_points": int(len(x))}


# --------------------------------------------------------------------------------------------------
# the study


@dataclass(frozen=True)
class GapStudy:
    """A finished gap study: ``amp`` one row per (n, alpha, seed, start); ``se`` both branches per alpha
    (empty without SE); ``learners`` one row per (alpha, seed, method); ``thresholds`` from the SE grid;
    ``crossover[start]``: per-n logistic fits and the extrapolation; ``large_k``: large-K SE at alpha / K
    (Gaussian prior, K >= 3; else None); ``seconds``: wall time per part."""

    config: GapConfig
    amp: Any
    se: Any
    learners: Any
    thresholds: dict[str, float | None]
    crossover: dict[str, Any]
    large_k: Any
    seconds: dict[str, float]

    def per_alpha(self, n: int) -> dict[str, list]:
        """Lists aligned with ``alphas`` at input dimension ``n``."""
        out: dict[str, list] = {}
        t = self.amp[self.amp.n == n]
        for start in self.config.starts:
            rows = [t[(t.start == start) & np.isclose(t.alpha, a)] for a in self.config.alphas]
            out[f"success_{start}"] = [float(r.success.mean()) for r in rows]
            for col in ("q_d", "q_a", "eps_test"):
                out[f"{col}_{start}"] = [float(r[col].mean()) for r in rows]
                out[f"{col}_{start}_sd"] = [float(r[col].std(ddof=1)) if len(r) > 1 else None for r in rows]
            out[f"converged_{start}"] = [int((r.converged | r.stationary).sum()) for r in rows]
        return out

    def summary(self) -> dict[str, Any]:
        c = self.config
        top = max(c.ns)
        out: dict[str, Any] = {"K": c.K, "prior": c.prior, "alpha": list(c.alphas), "n": top, "ns": list(c.ns),
                               "seeds": list(c.seeds), "success_q": c.success_q, **self.per_alpha(top)}
        if len(c.ns) > 1:
            out["by_n"] = {str(n): self.per_alpha(n) for n in c.ns}
        if len(self.se):
            se = {}
            for branch in sorted(set(self.se.branch)):
                b = self.se[self.se.branch == branch].sort_values("alpha")
                se[branch] = {k: [None if not np.isfinite(v) else float(v) for v in b[k]]
                              for k in ("q_d", "q_a", "eps_g", "eps_plugin", "free_entropy")}
            se["equilibrium"] = list(self.se.drop_duplicates("alpha").sort_values("alpha").equilibrium_branch)
            out["se"] = se
        out["thresholds"] = self.thresholds
        out["crossover"] = self.crossover
        if len(self.learners):
            out["learners"] = {
                m: {k: [float(g[np.isclose(g.alpha, a)][k].mean()) if np.any(np.isclose(g.alpha, a)) else None
                        for a in c.alphas] for k in ("eps_test", "q_d")}
                for m, g in self.learners.groupby("method")}
        if self.large_k is not None:
            out["large_k"] = self.large_k
        out["seconds"] = self.seconds
        return out


def _amp_row(run, success_q: float) -> dict[str, Any]:
    return {"n": run.n, "alpha": run.alpha, "seed": run.seed, "start": run.start, "q_d": run.q_d, "q_a": run.q_a,
            "q_diag": float(np.trace(run.Q)) / run.Q.shape[0], "eps_test": run.eps_test, "eps_plugin": run.eps_plugin,
            "success": bool(run.q_d >= success_q), "n_iter": run.n_iter, "converged": run.converged,
            "stationary": run.stationary, "final_change": run.final_change, "seconds": run.seconds}


def _crossovers(amp, config: GapConfig) -> dict[str, Any]:
    out = {}
    for start in config.starts:
        fits = {}
        for n in config.ns:
            t = amp[(amp.start == start) & (amp.n == n)]
            fits[str(n)] = logistic_fit(t.alpha.to_numpy(), t.success.to_numpy())
        usable = [(int(n), f["alpha_50"], f["alpha_50_err"]) for n, f in fits.items()
                  if f["alpha_50"] is not None and np.isfinite(f["alpha_50_err"])]
        ext = extrapolate(*zip(*usable)) if len(usable) >= 2 else {"alpha_inf": None, "alpha_inf_err": None,
                                                                  "slope": None, "n_points": len(usable)}
        out[start] = {"by_n": fits, "extrapolated": ext}
    return out


def _large_k(config: GapConfig) -> dict[str, list] | None:
    if config.prior != "gaussian" or config.K < 3:
        return None
    from thermolens.committee.large_k import large_k_state_evolution

    curve = large_k_state_evolution([a / config.K for a in config.alphas])
    frame = curve.to_frame()
    out: dict[str, list] = {"alpha_over_K": [a / config.K for a in config.alphas]}
    for branch in ("uninformed", "informed"):
        b = frame[frame.branch == branch].sort_values("alpha_over_K")
        out[f"eps_g_{branch}"] = [None if not np.isfinite(v) else float(v) for v in b.eps_g]
        out[f"q_d_{branch}"] = [None if not np.isfinite(v) else float(v) for v in b.q_d]
    return out


def gap_study(config: GapConfig, *, progress: Callable | None = None) -> GapStudy:
    """Run the study; ``progress(iterable, total, description)`` wraps the long loops (None: silent)."""
    import pandas as pd

    from thermolens.committee.state_evolution import equilibrium_branch

    wrap = progress or (lambda it, total, description: it)
    seconds: dict[str, float] = {}
    learner_n = config.learner_n or min(config.ns)
    learner_seeds = list(config.seeds)[:config.learner_seeds] if config.learner_seeds else list(config.seeds)
    amp_rows, learner_rows = [], []
    t0 = time.perf_counter()
    t_learn = 0.0
    cases = [(n, a, s) for n in config.ns for a in config.alphas for s in config.seeds]
    if config.learners:  # torch is imported only when a learner runs
        from thermolens.committee.learners import LearnerConfig, train_committee
    for n, alpha, seed in wrap(cases, len(cases), "AMP"):
        data = generate(n, alpha, config.K, config.prior, seed=np.random.default_rng([seed, 0]),
                        activation=config.amp.activation)
        for start in config.starts:
            amp_rows.append(_amp_row(run_amp(data, config.amp_config(start), seed=seed), config.success_q))
        learn_here = config.learner_alphas is None or np.any(np.isclose(alpha, config.learner_alphas))
        if config.learners and n == learner_n and seed in learner_seeds and learn_here:
            tl = time.perf_counter()
            for method in config.learners:
                r = train_committee(data, LearnerConfig(method=method), seed=seed, n_test=config.amp.n_test)
                learner_rows.append({"method": method, "n": n, "alpha": alpha, "seed": seed, "q_d": r.q_d,
                                     "q_a": r.q_a, "eps_test": r.eps_test, "eps_val": r.eps_val,
                                     "steps": r.steps, "seconds": r.seconds})
            t_learn += time.perf_counter() - tl
    seconds["amp"] = time.perf_counter() - t0 - t_learn
    seconds["learners"] = t_learn
    amp = pd.DataFrame(amp_rows)
    se_rows = []
    t0 = time.perf_counter()
    if config.se:
        for alpha in wrap(list(config.alphas), len(config.alphas), "SE"):
            points = se_from_starts(alpha, config.K, config.prior, config.amp.q0, config.starts)
            eq = equilibrium_branch(*points) if len(points) == 2 else points[0].branch
            for p in points:
                se_rows.append({"alpha": alpha, "branch": p.branch, "q_d": p.q_d, "q_a": p.q_a, "eps_g": p.eps_g,
                                "eps_plugin": p.eps_plugin, "free_entropy": p.free_entropy,
                                "converged": p.converged, "equilibrium_branch": eq})
    seconds["se"] = time.perf_counter() - t0
    se = pd.DataFrame(se_rows)
    thresholds = grid_thresholds(se, config.success_q) if len(config.starts) == 2 and len(se) else {}
    return GapStudy(config=config, amp=amp, se=se, learners=pd.DataFrame(learner_rows), thresholds=thresholds,
                    crossover=_crossovers(amp, config), large_k=_large_k(config), seconds=seconds)
