"""Phase-transition thresholds of the committee machine from state evolution (K = 1, 2 exact; odd
K = 3, ..., 11 committee-symmetric, Gaussian and Rademacher priors).

Definitions (Aubin et al. 2018, arXiv:1806.05451, Sec. 3-4; Barbier et al. 2019, PNAS 116, 5451,
arXiv:1708.03395, for K = 1):

* ``alpha_spec`` -- continuous specialization: the non-specialized fixed point (q_d = 0, all hidden
  units alike) of the uninformed branch loses stability. Found as the root of lambda(alpha) = 1,
  lambda = d q_d' / d q_d at that fixed point (one-sided: q_d >= 0 is the edge of the cone Q >= 0).
  K = 1 has no hidden-unit symmetry: None.
* ``alpha_it`` -- information-theoretic (first-order) threshold: the free entropies of two coexisting
  fixed points cross and the equilibrium jumps. None without coexistence.
* ``alpha_alg`` -- algorithmic threshold: the spinodal where the uninformed branch (what AMP finds)
  jumps to the good branch. None without coexistence.
* ``order`` -- "first" when ``alpha_it`` exists, "second" when only ``alpha_spec`` does, else None.

Procedure: both branches on a grid (step ``step``) bracket the events; ``alpha_spec`` and
``alpha_it`` are then refined with Brent's method, ``alpha_alg`` by bisection on "the uninformed
branch has reached the informed one" down to ``alpha_tol``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from thermolens.committee.general_k import SymmetricConfig, solve_symmetric, symmetric_map, symmetric_state_evolution
from thermolens.committee.state_evolution import (
    SEConfig,
    SECurve,
    project_overlap,
    se_map,
    solve_fixed_point,
    state_evolution,
)

_SAME = 1e-6  # two fixed points with eps_g closer than this are the same point


@dataclass(frozen=True)
class Thresholds:
    """Thresholds (None where they do not exist on the scanned range) and the scan behind them."""

    K: int
    prior: str
    alpha_spec: float | None
    alpha_it: float | None
    alpha_alg: float | None
    order: str | None
    alpha_max: float
    alpha_tol: float
    scan: SECurve
    alpha_min: float = 0.0

    def summary(self) -> dict:
        return {"K": self.K, "prior": self.prior, "alpha_spec": self.alpha_spec, "alpha_it": self.alpha_it,
                "alpha_alg": self.alpha_alg, "order": self.order, "alpha_min": self.alpha_min,
                "alpha_max": self.alpha_max, "alpha_tol": self.alpha_tol}


def _symmetric(config) -> bool:
    return isinstance(config, SymmetricConfig)


def _solve(alpha: float, config, *, branch: str = "uninformed", Q0: np.ndarray | None = None):
    """One fixed point: exact SE (SEConfig, K = 1, 2) or committee-symmetric (SymmetricConfig, odd K)."""
    if not _symmetric(config):
        return solve_fixed_point(alpha, config, branch=branch, Q0=Q0)
    q0 = None if Q0 is None else np.array(project_overlap(Q0)) @ np.array([[1.0, 1.0], [0.0, 1.0]])
    return solve_symmetric(alpha, config, branch=branch, q0=q0)


def spec_growth(alpha: float, config, *, kick: float = 1e-6) -> float:
    """lambda = d q_d'/d q_d at the non-specialized fixed point (K >= 2), one-sided."""
    K = config.K
    if _symmetric(config):
        p = solve_symmetric(alpha, config, q0=np.array([0.0, config.q0]))
        if not p.converged:
            raise ValueError(f"non-specialized fixed point did not converge at alpha={alpha} (residual {p.residual:.2e})")
        return float(symmetric_map(np.array([kick, p.q_a + kick]), alpha, config)[0][0]) / kick
    p = solve_fixed_point(alpha, config, Q0=np.full((K, K), config.q0 / K))
    if not p.converged:
        raise ValueError(f"non-specialized fixed point did not converge at alpha={alpha} (residual {p.residual:.2e})")
    Q_new = se_map(p.Q + kick * np.eye(K), alpha, config.prior, **config.rule)[0]
    return project_overlap(Q_new)[0] / kick


def _distinct(u, i) -> bool:
    if not (u.converged and i.converged):
        return False
    if u.Q.shape[0] >= 3:  # K >= 3: eps_g is Monte Carlo (noise ~1e-3), compare the overlaps instead
        return float(np.max(np.abs(u.Q - i.Q))) > 1e-5
    return abs(u.eps_g - i.eps_g) > _SAME


def find_thresholds(
    config: SEConfig = SEConfig(), *, alpha_max: float = 3.0, step: float = 0.1, alpha_tol: float = 1e-4,
    alpha_min: float = 0.0, progress=None,
) -> Thresholds:
    """Scan alpha on alpha_min + step, alpha_min + 2 step, ... <= alpha_max and locate alpha_spec, alpha_it,
    alpha_alg and the order (thresholds below the first grid point are not seen: they are None)."""
    from scipy.optimize import brentq

    if not (alpha_max > 0 and np.isfinite(alpha_max)):
        raise ValueError(f"alpha_max={alpha_max} must be a positive number")
    if not (0.0 <= alpha_min < alpha_max):
        raise ValueError(f"alpha_min={alpha_min} must lie in [0, alpha_max)")
    if not (0 < step <= alpha_max - alpha_min):
        raise ValueError(f"step={step} must lie in (0, alpha_max - alpha_min]")
    if not (0 < alpha_tol < step):
        raise ValueError(f"alpha_tol={alpha_tol} must lie in (0, step)")
    grid = alpha_min + np.arange(1, int(math.floor((alpha_max - alpha_min) / step + 0.5)) + 1) * step
    scan = (symmetric_state_evolution if _symmetric(config) else state_evolution)(grid, config, progress=progress)
    U, I = scan.uninformed, scan.informed

    alpha_spec = None
    if config.K >= 2:
        nonspec = [p.converged and p.q_d < 1e-6 for p in U]
        for j in range(len(grid) - 1):
            if nonspec[j] and not nonspec[j + 1]:
                lo, hi = float(grid[j]), float(grid[j + 1])
                g_lo, g_hi = spec_growth(lo, config) - 1.0, spec_growth(hi, config) - 1.0
                if g_lo < 0 < g_hi:
                    alpha_spec = brentq(lambda a: spec_growth(a, config) - 1.0, lo, hi, xtol=alpha_tol)
                break

    coexist = [_distinct(u, i) for u, i in zip(U, I)]
    alpha_it = alpha_alg = None
    if any(coexist):
        last = max(j for j, c in enumerate(coexist) if c)
        # algorithmic: last coexisting grid point -> next point where the uninformed branch is good
        if last + 1 < len(grid):
            lo, hi = float(grid[last]), float(grid[last + 1])
            Q_lo = U[last].Q
            while hi - lo > alpha_tol:
                mid = 0.5 * (lo + hi)
                u = _solve(mid, config, branch="uninformed", Q0=Q_lo)
                i = _solve(mid, config, branch="informed", Q0=None if I[last + 1].perfect else I[last + 1].Q)
                if _distinct(u, i):
                    lo, Q_lo = mid, u.Q
                else:
                    hi = mid
            alpha_alg = 0.5 * (lo + hi)
        # information-theoretic: sign change of f_informed - f_uninformed among coexisting points
        diff = [i.free_entropy - u.free_entropy if c else math.nan for u, i, c in zip(U, I, coexist)]
        for j in range(len(grid) - 1):
            if coexist[j] and coexist[j + 1] and diff[j] < 0 <= diff[j + 1]:
                Qu, Qi = U[j].Q, None if I[j + 1].perfect else I[j + 1].Q

                def gap(a, Qu=Qu, Qi=Qi):
                    u = _solve(a, config, branch="uninformed", Q0=Qu)
                    i = _solve(a, config, branch="informed", Q0=Qi)
                    if not (u.converged and i.converged):
                        raise ValueError(f"state evolution did not converge at alpha={a} while refining alpha_it")
                    return i.free_entropy - u.free_entropy

                alpha_it = brentq(gap, float(grid[j]), float(grid[j + 1]), xtol=alpha_tol)
                break
    order = "first" if alpha_it is not None else ("second" if alpha_spec is not None else None)
    return Thresholds(config.K, config.prior, alpha_spec, alpha_it, alpha_alg, order, float(alpha_max),
                      float(alpha_tol), scan, float(alpha_min))
