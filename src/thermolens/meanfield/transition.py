"""Where the uniform state stops being the global minimiser, and whether the transition jumps.

``K_#`` (kernels.py) is where the uniform density loses linear stability; ``K_c <= K_#`` is where it stops
being the global minimiser of ``F_K``. The transition is continuous when ``K_c = K_#`` and discontinuous
when ``K_c < K_#``.

Landau expansion at ``K_#`` (derived in docs/meanfield.md). With ``rho = 1 + a cos(2 pi k theta) +
b cos(4 pi k theta) + ...`` (k the critical mode), expanding ``int rho log rho`` to fourth order and
eliminating the slaved second harmonic ``b = a^2 / (4 alpha_2k)``, ``alpha_2k = 1 - 2 K W_hat(2k)``,

    F - F(1) = (1 - 2 K W_hat(k)) a^2 / 4 + c_4 a^4 + O(a^6),     c_4 = (2 - 1/alpha_2k) / 64 .

At ``K = K_#`` (where ``2 K W_hat(k) = 1``) ``alpha_2k = 1 - W_hat(2k)/W_hat(k)``, so the bifurcation is
supercritical (``c_4 > 0``) exactly when ``W_hat(2k) / W_hat(k) < 1/2``. Along the bifurcating branch
``K(a) = K_# (1 + 8 c_4 a^2 + O(a^4))``. A negative ``c_4`` proves ``K_c < K_#``; a positive ``c_4`` only says
uniform state is a local minimiser at ``K_#``, so the global question is settled numerically: the branch
from uniform is followed through its folds and ``F`` is minimised from many starting points at ``K_#``
(``Delta F_min(K)`` is non-increasing in ``K`` wherever it is negative, so nothing that fails to beat the
uniform state at ``K_#`` can beat it below ``K_#``). ``K_c`` is then the smallest ``K`` at which a stationary
state reaches ``Delta F = 0``, located by Brent's method on the branch.

For the noisy transformer ``W_hat(k) = I_k(beta)/beta`` and the condition reads ``I_2(beta) < I_1(beta)/2``,
i.e. (with ``I_2 = I_0 - 2 I_1/beta``) ``beta < beta_*`` where ``2 beta I_0(beta) = (beta + 4) I_1(beta)``.
For Hegselmann--Krause with ``R <= pi`` it reads ``sin R (2 - cos R) < R``; for Kuramoto--Daido ``m < 1/2``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from thermolens.meanfield.kernels import Kernel, linear_stability, make_kernel
from thermolens.meanfield.stationary import (
    Basis,
    Branch,
    StationaryState,
    active_modes,
    branch_point,
    follow_branch,
    global_minimize,
    make_basis,
    solve_stationary,
)

# Relative gap K_# - K_c below which a transition is reported continuous.
CONTINUOUS_RTOL = 1e-10
# Estimated truncation error of the states above which critical_coupling warns.
TRUNCATION_WARN = 1e-8


class TruncationWarning(UserWarning):
    """The Fourier truncation may be too small for the requested accuracy."""


# --------------------------------------------------------------------------------------------------
# Landau expansion


@dataclass(frozen=True)
class LandauExpansion:
    """Fourth-order expansion of ``F`` at ``K_#`` along the critical mode (``rho = 1 + a cos + ...``)."""

    mode: int
    K_sharp: float
    harmonic_ratio: float  # W_hat(2k) / W_hat(k)
    alpha_2k: float  # 1 - 2 K_# W_hat(2k): stiffness of the slaved second harmonic
    quartic: float  # c_4
    branch_curvature: float  # dK/d(a^2) at a = 0: 8 c_4 K_#
    degenerate: bool  # several modes go unstable together (the expansion then ignores their coupling)

    @property
    def supercritical(self) -> bool:
        return self.quartic > 0


def landau_expansion(kernel: Kernel) -> LandauExpansion:
    lin = linear_stability(kernel)
    if lin.critical_mode == 0:
        raise ValueError(
            f"{kernel.label}: no Fourier coefficient is positive, the uniform state never "
            "loses stability and there is no transition"
        )
    k = lin.critical_mode
    ratio = float(kernel.w_hat(2 * k)) / lin.w_hat_critical
    alpha = 1.0 - ratio
    # alpha_2k = 0: the second harmonic is critical too and the cubic term -a^2 b / 8 survives (first order).
    quartic = (2.0 - 1.0 / alpha) / 64.0 if alpha > 0 else -math.inf
    return LandauExpansion(
        k, lin.K_sharp, ratio, alpha, quartic, 8.0 * quartic * lin.K_sharp, len(lin.degenerate_modes) > 1
    )


def branch_expansion(
    kernel: Kernel, *, n_modes: int | None = None, a_max: float = 0.02
) -> tuple[float, float]:
    """Fit ``K(a)/K_# - 1 = kappa_2 a^2 + kappa_4 a^4`` on the computed branch (``a = 2 rho_hat(k)``).

    ``kappa_2`` checks the Landau prediction ``8 c_4``; the sign of ``kappa_4`` decides the order of the
    transition where ``c_4 = 0`` (positive: still continuous there, a tricritical point).
    """
    lin = linear_stability(kernel)
    basis = make_basis(kernel, n_modes)
    a = np.linspace(a_max / 8, a_max, 8)
    K = []
    A = active_modes(basis, lin.critical_mode)
    guess = (np.where(A == lin.critical_mode, a[0] / 2, 0.0), lin.K_sharp)
    for ai in a:
        st = branch_point(kernel, lin.critical_mode, ai / 2, guess, basis=basis)
        if st is None:
            raise ValueError(f"{kernel.label}: could not follow the branch near uniform; raise n_modes")
        K.append(st.K)
        guess = (st.phi[A - 1], st.K)
    y = np.asarray(K) / lin.K_sharp - 1.0
    coef = np.linalg.lstsq(np.stack([a**2, a**4, a**6], axis=1), y, rcond=None)[0]
    return float(coef[0]), float(coef[1])


# --------------------------------------------------------------------------------------------------
# the critical coupling


@dataclass(frozen=True)
class CriticalCoupling:
    """``K_#``, ``K_c`` and the order of the transition of one kernel.

    ``jump`` is the order parameter ``rho_hat(mode)`` of the minimiser at ``K_c`` (0 for a continuous
    transition); ``minimizer`` is that state (``None`` when continuous). ``global_states`` lists the
    distinct non-uniform local minimisers found at ``K_#`` (lowest ``delta_F`` first).
    """

    kernel: str
    parameter: str | None
    value: float | None
    K_sharp: float
    K_c: float
    transition: str  # "continuous" | "discontinuous" | "none"
    critical_mode: int
    jump: float
    landau: LandauExpansion | None
    branch: Branch | None = field(repr=False)
    minimizer: StationaryState | None = field(repr=False)
    global_states: tuple[StationaryState, ...] = field(repr=False)
    n_modes: int = 0
    truncation_error: float = 0.0

    def summary(self) -> dict:
        return {
            "kernel": self.kernel,
            "parameter": self.parameter,
            "value": self.value,
            "K_sharp": self.K_sharp,
            "K_c": self.K_c,
            "transition": self.transition,
            "critical_mode": self.critical_mode,
            "jump": self.jump,
            "relative_gap": (self.K_sharp - self.K_c) / self.K_sharp if math.isfinite(self.K_sharp) else None,
            "landau_quartic": self.landau.quartic if self.landau else None,
            "harmonic_ratio": self.landau.harmonic_ratio if self.landau else None,
            "n_modes": self.n_modes,
            "truncation_error": self.truncation_error,
            "min_delta_F_at_K_sharp": min((s.delta_F for s in self.global_states), default=0.0),
        }


def _root_on_branch(kernel: Kernel, branch: Branch, basis: Basis, K_sharp: float) -> list[StationaryState]:
    """States where ``Delta F`` crosses zero from above along the branch at ``K <= K_#``."""
    from scipy.optimize import brentq

    A = active_modes(basis, branch.mode)
    out = []
    states = branch.states
    for left, right in zip(states[:-1], states[1:]):
        if not (left.delta_F >= 0.0 > right.delta_F):
            continue
        cache: dict[float, StationaryState] = {}

        def f(r, left=left, right=right, cache=cache):
            t = (r - left.order_parameter) / (right.order_parameter - left.order_parameter)
            guess = ((1 - t) * left.phi[A - 1] + t * right.phi[A - 1], (1 - t) * left.K + t * right.K)
            st = branch_point(kernel, branch.mode, r, guess, basis=basis)
            if st is None:
                raise ValueError(f"{kernel.label}: Newton failed on the branch at r={r}; raise n_modes")
            cache[r] = st
            return st.delta_F

        r_root = brentq(f, left.order_parameter, right.order_parameter, xtol=1e-14, rtol=1e-15)
        st = cache.get(r_root) or branch_point(
            kernel, branch.mode, r_root, (right.phi[A - 1], right.K), basis=basis
        )
        if st is not None and st.K <= K_sharp * (1 + 1e-12):
            out.append(st)
    return out


def _descend(
    kernel: Kernel, start: StationaryState, basis: Basis, *, max_steps: int = 400
) -> StationaryState | None:
    """Follow ``start`` to smaller ``K`` in growing steps until ``Delta F`` reaches 0 (root by Brent)."""
    from scipy.optimize import brentq

    prev, step = start, 1e-3 * start.K
    for _ in range(max_steps):
        if prev.delta_F >= 0.0:
            return None
        K_new = prev.K - step
        if K_new <= 0:
            return None
        st = solve_stationary(kernel, K_new, prev.phi, mode=prev.mode, basis=basis)
        if st is None or np.max(np.abs(st.phi)) < 1e-8:
            step *= 0.5
            if step < 1e-12 * start.K:
                return None  # a fold: this branch never reaches Delta F = 0
            continue
        if st.delta_F >= 0.0:
            hi = prev

            def f(K, hi=hi):
                s = solve_stationary(kernel, K, hi.phi, mode=hi.mode, basis=basis)
                if s is None:
                    raise ValueError(f"{kernel.label}: Newton failed at K={K}; raise n_modes")
                return s.delta_F

            K_root = brentq(f, st.K, prev.K, xtol=1e-15, rtol=1e-15)
            return solve_stationary(kernel, K_root, prev.phi, mode=prev.mode, basis=basis)
        prev, step = st, step * 1.5
    return None


def critical_coupling(
    kernel: Kernel, *, n_modes: int | None = None, n_starts: int = 8, seed: int = 0, K_max_factor: float = 1.5
) -> CriticalCoupling:
    """``K_#``, ``K_c`` (to ~1e-12 relative for smooth kernels) and the order of the transition.

    ``n_starts`` random potentials (plus single-mode starts) are minimised at ``K_#`` to find states
    disconnected from the uniform branch; ``seed`` fixes them.
    """
    if n_starts < 0:
        raise ValueError(f"n_starts={n_starts} must be >= 0")
    lin = linear_stability(kernel)
    if lin.critical_mode == 0:
        return CriticalCoupling(
            kernel.name,
            kernel.parameter,
            kernel.value,
            math.inf,
            math.inf,
            "none",
            0,
            0.0,
            None,
            None,
            None,
            (),
            0,
            0.0,
        )
    landau = landau_expansion(kernel)
    basis = make_basis(kernel, n_modes)
    n_modes = basis.n_modes
    if lin.critical_mode > basis.n_modes:
        raise ValueError(f"critical mode {lin.critical_mode} exceeds n_modes={n_modes}; raise n_modes")
    branch = follow_branch(kernel, lin.critical_mode, K_max=K_max_factor * lin.K_sharp, basis=basis)
    candidates = _root_on_branch(kernel, branch, basis, lin.K_sharp)
    found = tuple(global_minimize(kernel, lin.K_sharp, n_starts=n_starts, seed=seed, basis=basis))
    known = {round(c.delta_F, 9) for c in candidates}
    for st in found:
        if st.delta_F < -1e-12 and st.stable:
            root = _descend(kernel, st, basis)
            if root is not None and round(root.delta_F, 9) not in known:
                candidates.append(root)
    below = [c for c in candidates if c.K < lin.K_sharp * (1 - CONTINUOUS_RTOL)]
    if found and found[0].delta_F < -1e-12 and not below:
        raise ValueError(
            f"{kernel.label}: a state beats the uniform one at K_# but its branch could not be "
            "followed down to Delta F = 0; raise n_modes"
        )
    errors = [s.truncation_error for s in (*branch.states, *found)]
    if max(errors, default=0.0) > TRUNCATION_WARN:
        warnings.warn(
            f"{kernel.label}: estimated Fourier truncation error {max(errors):.2g} with n_modes="
            f"{n_modes} (K_c itself is usually far more accurate); raise n_modes to be sure",
            TruncationWarning,
            stacklevel=2,
        )
    if below:
        best = min(below, key=lambda s: s.K)
        return CriticalCoupling(
            kernel.name,
            kernel.parameter,
            kernel.value,
            lin.K_sharp,
            best.K,
            "discontinuous",
            lin.critical_mode,
            abs(best.order_parameter),
            landau,
            branch,
            best,
            found,
            n_modes,
            max(errors, default=0.0),
        )
    return CriticalCoupling(
        kernel.name,
        kernel.parameter,
        kernel.value,
        lin.K_sharp,
        lin.K_sharp,
        "continuous",
        lin.critical_mode,
        0.0,
        landau,
        branch,
        None,
        found,
        n_modes,
        max(errors, default=0.0),
    )


# --------------------------------------------------------------------------------------------------
# threshold in the kernel's parameter


_PARAMETERS = {
    "noisy-transformer": ("beta", (0.5, 10.0)),
    "hegselmann-krause": ("R", (0.05, 3.1)),
    "kuramoto-daido": ("m", (0.0, 0.99)),
}


@dataclass(frozen=True)
class Threshold:
    """The parameter value where the Landau quartic ``c_4`` changes sign (root to ~1e-13).

    ``continuous_side`` says on which side the transition is continuous. ``kappa_4`` is the sextic-order
    branch coefficient at the threshold (positive: the transition is still continuous there).
    ``checks`` holds ``(parameter, transition, (K_# - K_c)/K_#)`` from the global solver on either side.
    """

    kernel: str
    parameter: str
    threshold: float
    continuous_side: str
    kappa_4: float
    checks: tuple[tuple[float, str, float], ...]
    consistent: bool  # the global solver agrees with the Landau prediction on both sides

    def summary(self) -> dict:
        return {
            "kernel": self.kernel,
            "parameter": self.parameter,
            "threshold": self.threshold,
            "continuous_side": self.continuous_side,
            "kappa_4": self.kappa_4,
            "checks": [{"value": v, "transition": t, "relative_gap": g} for v, t, g in self.checks],
            "consistent_with_global_minimisation": self.consistent,
        }


def threshold(
    name: str,
    *,
    bracket: tuple[float, float] | None = None,
    offsets: Sequence[float] = (0.01,),
    n_modes: int | None = None,
    n_starts: int = 8,
    seed: int = 0,
) -> Threshold:
    """Root of ``c_4(p) = 0`` for the named kernel's parameter ``p`` by Brent's method (xtol 1e-14).

    Each relative offset in ``offsets`` is checked with the global solver on both sides of the root.
    """
    from scipy.optimize import brentq

    if name not in _PARAMETERS:
        raise ValueError(
            f"kernel {name!r} has no parameter to vary; thresholds exist for {', '.join(_PARAMETERS)}"
        )
    parameter, default = _PARAMETERS[name]
    lo, hi = bracket or default

    def quartic(p: float) -> float:
        return landau_expansion(make_kernel(name, **{parameter: p})).quartic

    q_lo, q_hi = quartic(lo), quartic(hi)
    if q_lo * q_hi > 0:
        raise ValueError(
            f"c_4 has the same sign at {parameter}={lo} and {hi}; give a bracket that contains the threshold"
        )
    root = brentq(quartic, lo, hi, xtol=1e-14, rtol=1e-15, maxiter=200)
    side = "below" if q_lo > 0 else "above"
    _, kappa_4 = branch_expansion(make_kernel(name, **{parameter: root}), n_modes=n_modes)
    checks, consistent = [], True
    for off in offsets:
        for p, expect in ((root * (1 - off), side == "below"), (root * (1 + off), side == "above")):
            res = critical_coupling(
                make_kernel(name, **{parameter: p}), n_modes=n_modes, n_starts=n_starts, seed=seed
            )
            checks.append((p, res.transition, (res.K_sharp - res.K_c) / res.K_sharp))
            consistent &= (res.transition == "continuous") == expect
    return Threshold(name, parameter, root, side, kappa_4, tuple(checks), consistent)


def transition_boundary(
    name: str,
    lo: float,
    hi: float,
    *,
    tol: float = 1e-6,
    n_modes: int | None = None,
    n_starts: int = 8,
    seed: int = 0,
) -> tuple[float, float]:
    """Bracket ``(a, b)``, ``b - a <= tol``, where the globally computed order of the transition changes.

    Bisection on ``critical_coupling(...).transition``; unlike ``threshold`` it needs no Landau expansion,
    so it also finds boundaries set by states far from uniform (Kuramoto--Daido near m = 1.25).
    """
    if name not in _PARAMETERS:
        raise ValueError(f"kernel {name!r} has no parameter; boundaries exist for {', '.join(_PARAMETERS)}")
    parameter = _PARAMETERS[name][0]

    def kind(p: float) -> str:
        return critical_coupling(
            make_kernel(name, **{parameter: p}), n_modes=n_modes, n_starts=n_starts, seed=seed
        ).transition

    k_lo, k_hi = kind(lo), kind(hi)
    if k_lo == k_hi:
        raise ValueError(
            f"the transition is {k_lo} at both {parameter}={lo} and {hi}; give a bracket "
            "across which it changes"
        )
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        if kind(mid) == k_lo:
            lo = mid
        else:
            hi = mid
    return lo, hi


# --------------------------------------------------------------------------------------------------
# phase diagram


@dataclass(frozen=True)
class PhaseDiagram:
    """``K_#``, ``K_c`` and the order of the transition along a grid of one kernel parameter."""

    kernel: str
    parameter: str
    values: np.ndarray
    K_sharp: np.ndarray
    K_c: np.ndarray
    transition: tuple[str, ...]
    jump: np.ndarray
    quartic: np.ndarray
    landau_threshold: float | None  # None when the grid does not straddle it

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame(
            {
                self.parameter: self.values,
                "K_sharp": self.K_sharp,
                "K_c": self.K_c,
                "transition": list(self.transition),
                "jump": self.jump,
                "landau_quartic": self.quartic,
            }
        )


def phase_diagram(
    name: str,
    values: Iterable[float],
    *,
    n_modes: int | None = None,
    n_starts: int = 8,
    seed: int = 0,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> PhaseDiagram:
    if name not in _PARAMETERS:
        raise ValueError(
            f"kernel {name!r} has no parameter; phase diagrams exist for {', '.join(_PARAMETERS)}"
        )
    parameter = _PARAMETERS[name][0]
    values = np.asarray(list(values), dtype=np.float64)
    if values.size == 0:
        raise ValueError("the parameter grid is empty")
    rows = []
    for p in (progress or (lambda it: it))(values):
        res = critical_coupling(
            make_kernel(name, **{parameter: float(p)}), n_modes=n_modes, n_starts=n_starts, seed=seed
        )
        rows.append(res)
    quartic = np.array([r.landau.quartic for r in rows])
    change = np.flatnonzero(np.sign(quartic[:-1]) != np.sign(quartic[1:]))
    thr = None
    if change.size:
        from scipy.optimize import brentq

        i = int(change[0])
        thr = brentq(
            lambda p: landau_expansion(make_kernel(name, **{parameter: p})).quartic,
            values[i],
            values[i + 1],
            xtol=1e-14,
            rtol=1e-15,
        )
    return PhaseDiagram(
        name,
        parameter,
        values,
        np.array([r.K_sharp for r in rows]),
        np.array([r.K_c for r in rows]),
        tuple(r.transition for r in rows),
        np.array([r.jump for r in rows]),
        quartic,
        thr,
    )
