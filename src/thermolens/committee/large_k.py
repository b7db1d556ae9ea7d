"""Committee-symmetric state evolution of the sign committee in the large-K limit (Gaussian prior).

Ansatz (Aubin et al. 2018, arXiv:1806.05451, Sec. 3.3): Q = q_d I_K + (q_a / K) 1 1^T and the same
for R_hat, with alpha = alpha_tilde K samples per input dimension. Derivation used here:

* Output channel. The label is sign(h) with h = K^{-1/2} sum_l sign(z_l). Conditioned on the
  student's omega, h is (central limit theorem over the K units) Gaussian, and so is its
  conditional mean, whose variance works out to
      q_eff(q_d, q_a) = (2/pi) [arcsin(q_d) + q_a]
  (pairs of units with overlap q_d contribute (2/pi) arcsin q_d -- Sheppard's formula -- and the
  O(1/K) cross overlaps add up to (2/pi) q_a). The channel is therefore the K = 1 sign perceptron
  at overlap q_eff: Psi_out(Q) -> Psi_perceptron(q_eff).
* The direction 1 1^T is learned from alpha = O(K) samples: its conjugate is O(K) so q_d + q_a = 1
  at leading order, leaving q_eff = (2/pi)[arcsin(q_d) + 1 - q_d].
* Per hidden unit the free entropy is
      f / K = r/2 - log(1 + r)/2 - q_d r / 2 + alpha_tilde Psi_perceptron(q_eff(q_d)),
  stationary at q_d = r / (1 + r), r = alpha_tilde m_hat(q_eff) (2/pi) (1/sqrt(1 - q_d^2) - 1),
  with m_hat = 2 dPsi_perceptron/dq (the perceptron's E[g_out^2]).

q_d = 0 (non-specialized) is a fixed point for every alpha_tilde and is always locally stable
(r = O(q_d^2)): AMP from a random start does not specialize at alpha = O(K). Its Gibbs error is
arccos(2/pi)/pi = 0.2803. A specialized branch appears at a spinodal and becomes the equilibrium at
the information-theoretic threshold, where the two free entropies cross.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from thermolens.committee.quadrature import perceptron_output

TWO_OVER_PI = 2.0 / math.pi


def q_eff(q_d: float) -> float:
    """Effective perceptron overlap of the large-K committee with q_a = 1 - q_d."""
    return TWO_OVER_PI * (math.asin(min(q_d, 1.0)) + 1.0 - q_d)


def large_k_map(q_d: float, alpha_tilde: float) -> tuple[float, float, float]:
    """q_d -> (q_d', r, free entropy per hidden unit evaluated at (q_d, r))."""
    qe = q_eff(q_d)
    psi, mhat = perceptron_output(qe)
    slope = TWO_OVER_PI * (1.0 / math.sqrt(max(1.0 - q_d * q_d, 1e-300)) - 1.0)
    r = alpha_tilde * mhat * slope
    f = 0.5 * r - 0.5 * math.log1p(r) - 0.5 * q_d * r + alpha_tilde * psi
    return r / (1.0 + r), r, f


@dataclass(frozen=True)
class LargeKPoint:
    """One large-K fixed point: ``q_d``, ``q_eff``, free entropy per hidden unit, Gibbs error
    arccos(q_eff)/pi; NaN values (and ``converged=False``) when the tolerance was not met."""

    alpha_tilde: float
    branch: str
    q_d: float
    q_eff: float
    free_entropy: float
    eps_g: float
    residual: float
    n_iter: int
    converged: bool


def solve_large_k(
    alpha_tilde: float, *, branch: str = "uninformed", q0: float | None = None, tol: float = 1e-10,
    max_iter: int = 20_000,
) -> LargeKPoint:
    """Iterate the large-K committee-symmetric equations from q_d = 1e-3 (uninformed) or
    1 - 1e-6 (informed), or from ``q0``."""
    if not np.isfinite(alpha_tilde) or alpha_tilde < 0:
        raise ValueError(f"alpha/K={alpha_tilde} must be a finite number >= 0")
    if branch not in ("uninformed", "informed"):
        raise ValueError(f"unknown branch {branch!r}; choose uninformed or informed")
    q = q0 if q0 is not None else (1e-3 if branch == "uninformed" else 1.0 - 1e-6)
    residual = math.inf
    for it in range(1, max_iter + 1):
        q_new, _, f = large_k_map(q, alpha_tilde)
        residual = abs(q_new - q)
        if residual <= tol:
            qe = q_eff(q)
            return LargeKPoint(alpha_tilde, branch, q, qe, f, math.acos(min(qe, 1.0)) / math.pi,
                               residual, it, True)
        q = q_new
    return LargeKPoint(alpha_tilde, branch, math.nan, math.nan, math.nan, math.nan, residual, max_iter, False)


@dataclass(frozen=True)
class LargeKCurve:
    """Both branches of the large-K equations over a grid of alpha / K."""

    alpha_tilde: np.ndarray
    uninformed: tuple[LargeKPoint, ...]
    informed: tuple[LargeKPoint, ...]

    @property
    def equilibrium_eps_g(self) -> np.ndarray:
        out = []
        for u, i in zip(self.uninformed, self.informed):
            cands = [p for p in (u, i) if p.converged]
            out.append(max(cands, key=lambda p: p.free_entropy).eps_g if cands else math.nan)
        return np.array(out)

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame([
            {"alpha_over_K": p.alpha_tilde, "branch": p.branch, "q_d": p.q_d, "q_eff": p.q_eff,
             "free_entropy_per_unit": p.free_entropy, "eps_g": p.eps_g, "residual": p.residual,
             "n_iter": p.n_iter, "converged": p.converged}
            for p in (*self.uninformed, *self.informed)
        ])


def large_k_state_evolution(alpha_tilde: Sequence[float]) -> LargeKCurve:
    """Solve both large-K branches at every alpha / K (informed continued downwards)."""
    a = np.asarray(alpha_tilde, dtype=float)
    if a.ndim != 1 or a.size == 0 or np.any(~np.isfinite(a)) or np.any(a < 0):
        raise ValueError("alpha/K grid must be a non-empty 1-d sequence of finite values >= 0")
    uninformed = tuple(solve_large_k(float(x), branch="uninformed") for x in a)
    informed: list[LargeKPoint] = []
    q0 = None
    for x in a[::-1]:
        p = solve_large_k(float(x), branch="informed", q0=q0)
        informed.append(p)
        q0 = p.q_d if p.converged and p.q_d > 1e-3 else None
    return LargeKCurve(a, uninformed, tuple(informed[::-1]))


def large_k_thresholds(*, lo: float = 1.0, hi: float = 20.0, tol: float = 1e-6) -> tuple[float, float]:
    """(alpha_tilde_IT, alpha_tilde_spinodal) of the large-K specialization transition.

    Spinodal: smallest alpha / K at which the specialized (informed) branch exists, by bisection on
    "iteration from q_d = 1 - 1e-6 stays specialized (q_d > 1/2)". IT: where its free entropy
    crosses the non-specialized one (Brent). Raises ``ValueError`` if no transition lies in [lo, hi].
    """
    from scipy.optimize import brentq

    def specialized(a: float) -> LargeKPoint | None:
        p = solve_large_k(a, branch="informed")
        return p if p.converged and p.q_d > 0.5 else None

    if specialized(lo) is not None or specialized(hi) is None:
        raise ValueError(f"no specialization transition in alpha/K in [{lo}, {hi}]; widen the interval")
    a, b = lo, hi
    while b - a > tol:
        mid = 0.5 * (a + b)
        a, b = (a, mid) if specialized(mid) is not None else (mid, b)
    spinodal = b

    def gap(x: float) -> float:
        p = specialized(x)
        if p is None:
            raise ValueError(f"specialized branch lost at alpha/K={x} while locating the IT threshold")
        return p.free_entropy - solve_large_k(x, branch="uninformed").free_entropy

    return brentq(gap, spinodal, hi, xtol=tol), spinodal
