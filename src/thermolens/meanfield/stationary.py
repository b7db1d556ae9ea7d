"""Stationary states of ``F_K`` on the circle in a truncated Fourier basis.

A critical point of ``F_K(rho) = int rho log rho - K int int W rho rho`` satisfies the self-consistency
equation ``rho = exp(2 K W * rho) / Z``. We write ``log rho = phi - log Z`` with the potential
``phi(theta) = sum_{0 < |j| <= M} phi_j e^{2 pi i j theta}`` and solve

    phi_j = 2 K W_hat(j) rho_hat(j)        (j = 1 .. M)                                       (SC)

by Newton's method. States are taken even (``phi_j`` real): ``W`` is even, so the map preserves evenness,
every branch that bifurcates from uniform is even after a translation, and the translation zero mode
drops out. With ``rho_hat`` real and ``rho_hat(0) = 1`` the Jacobian of ``rho_hat`` is exact,

    d rho_hat(j) / d phi_l = rho_hat(j + l) + rho_hat(|j - l|) - 2 rho_hat(j) rho_hat(l),

and sums over the grid are exact for trigonometric polynomials, so Newton converges quadratically. The
free energy relative to the uniform state ``F(1) = -K W_hat(0)`` is

    Delta F = 2 sum_j phi_j rho_hat(j) - log Z - 2 K sum_{j >= 1} W_hat(j) rho_hat(j)^2 .

Stability is judged in the full (not only even) space: at a solution of (SC) the Hessian of ``F`` in the
``phi`` coordinates is congruent to ``1 - 2 K C^(1/2) W_hat C^(1/2)`` with ``C`` the covariance of the basis
functions under ``rho``; a state is a local minimiser when every eigenvalue of ``2 K W_hat C`` is below 1
(one eigenvalue equals 1 exactly for a non-uniform state: the translation).

Branches are followed by continuation in the order parameter ``r = rho_hat(k)`` of their mode ``k`` with
``K`` as an unknown, so folds in ``K`` (discontinuous transitions) are passed without trouble.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from thermolens.meanfield.kernels import Kernel

NEWTON_TOL = 1e-13
_SEARCH_MODES = 16
_SEARCH_ITERATIONS = 400
_MAX_NEWTON = 60


# --------------------------------------------------------------------------------------------------
# the truncated problem


@dataclass(frozen=True)
class Basis:
    """Fourier truncation: ``n_modes`` potential modes on ``n_grid >= 8 n_modes`` grid points."""

    n_modes: int
    n_grid: int
    w: np.ndarray = field(repr=False)  # (n_grid//2 + 1,) W_hat(0 .. n_grid/2)

    @property
    def theta(self) -> np.ndarray:
        return np.arange(self.n_grid) / self.n_grid


def default_modes(kernel: Kernel) -> int:
    """Truncation covering every coefficient above 1e-16 of the largest, clipped to [16, 64]."""
    c = np.abs(kernel.coefficients[1:])
    big = np.flatnonzero(c > 1e-16 * c.max()) if c.max() > 0 else np.array([0])
    return int(np.clip(big[-1] + 1 if big.size else 16, 16, 64))


def make_basis(kernel: Kernel, n_modes: int | None = None) -> Basis:
    """Truncation with ``n_modes`` potential modes (``None``: ``default_modes(kernel)``)."""
    n_modes = default_modes(kernel) if n_modes is None else n_modes
    if not isinstance(n_modes, (int, np.integer)) or n_modes < 2:
        raise ValueError(f"n_modes={n_modes} must be an integer >= 2")
    n_grid = max(128, 1 << int(math.ceil(math.log2(8 * n_modes))))
    return Basis(int(n_modes), n_grid, kernel.w_hat(np.arange(n_grid // 2 + 1)))


def active_modes(basis: Basis, period: int) -> np.ndarray:
    """Modes ``j <= n_modes``, multiples of ``period``, with ``W_hat(j) != 0`` (the others have phi_j = 0)."""
    j = np.arange(period, basis.n_modes + 1, period)
    return j[basis.w[j] != 0.0]


def density_from_phi(basis: Basis, phi: np.ndarray) -> tuple[np.ndarray, float]:
    """Grid values of ``rho = exp(phi)/Z`` for real cosine coefficients ``phi`` (n_modes,), and ``log Z``."""
    spec = np.zeros(basis.n_grid // 2 + 1)
    spec[1 : basis.n_modes + 1] = phi
    pot = np.fft.irfft(spec, basis.n_grid) * basis.n_grid  # 2 sum_j phi_j cos(2 pi j theta)
    top = float(pot.max())
    e = np.exp(pot - top)
    mean = float(e.mean())
    return e / mean, top + math.log(mean)


def fourier(basis: Basis, rho: np.ndarray) -> np.ndarray:
    """Real parts of ``rho_hat(0 .. n_grid/2)`` (exact for even densities)."""
    return np.fft.rfft(rho).real / basis.n_grid


def _coupling_matrix(rho_hat: np.ndarray, j: np.ndarray, sine: bool = False) -> np.ndarray:
    """``rho_hat(j+l) + rho_hat(|j-l|) - 2 rho_hat(j) rho_hat(l)`` (cosine block) or
    ``rho_hat(|j-l|) - rho_hat(j+l)`` (sine block): covariances of sqrt(2) cos / sqrt(2) sin under rho."""
    plus = rho_hat[j[:, None] + j[None, :]]
    minus = rho_hat[np.abs(j[:, None] - j[None, :])]
    if sine:
        return minus - plus
    return plus + minus - 2.0 * np.outer(rho_hat[j], rho_hat[j])


# --------------------------------------------------------------------------------------------------
# states


@dataclass(frozen=True)
class StationaryState:
    """A solution of ``rho = exp(2 K W * rho)/Z`` (even, peak at theta = 0 when ``rho_hat(mode) > 0``).

    ``phi[j-1]`` are the cosine coefficients of the potential
    (``log rho = 2 sum phi_j cos 2 pi j theta - log Z``), ``rho_hat[j]`` the Fourier coefficients of ``rho``
    (``rho_hat[0] = 1``), ``delta_F = F - F(uniform)``. ``residual`` is the sup over ``j <= n_modes`` of
    ``|phi_j - 2 K W_hat(j) rho_hat(j)|``; ``truncation_error`` bounds the sup norm of the potential the
    truncation leaves out plus the part of ``rho`` the grid misses.
    """

    K: float
    mode: int
    phi: np.ndarray = field(repr=False)
    rho_hat: np.ndarray = field(repr=False)
    log_Z: float
    free_energy: float
    delta_F: float
    residual: float
    truncation_error: float
    morse_index: int
    stable: bool

    @property
    def order_parameter(self) -> float:
        """``rho_hat(mode)`` (``|rho_hat(1)|`` for the uniform state, i.e. 0)."""
        return float(self.rho_hat[self.mode]) if self.mode > 0 else 0.0

    @property
    def n_modes(self) -> int:
        return int(self.phi.size)

    def density(self, theta: np.ndarray) -> np.ndarray:
        theta = np.asarray(theta, dtype=np.float64)
        j = np.arange(1, self.phi.size + 1)
        pot = 2.0 * np.cos(2 * np.pi * np.multiply.outer(theta, j)) @ self.phi
        return np.exp(pot - self.log_Z)


def _state(basis: Basis, K: float, phi: np.ndarray, mode: int) -> StationaryState:
    """Evaluate free energy, residual, truncation error and stability of the potential ``phi``."""
    rho, log_Z = density_from_phi(basis, phi)
    rho_hat = fourier(basis, rho)
    M = basis.n_modes
    w = basis.w
    delta_F = float(
        2.0 * phi @ rho_hat[1 : M + 1] - log_Z - 2.0 * K * (w[1 : M + 1] @ rho_hat[1 : M + 1] ** 2)
    )
    residual = float(np.max(np.abs(phi - 2.0 * K * w[1 : M + 1] * rho_hat[1 : M + 1])))
    tail = np.arange(M + 1, basis.n_grid // 2 + 1)
    truncation = float(
        2.0 * np.sum(np.abs(2.0 * K * w[tail] * rho_hat[tail]))
        + 2.0 * np.sum(np.abs(rho_hat[basis.n_grid // 4 :]))
    )
    morse = _morse_index(basis, K, rho_hat, nonuniform=bool(np.any(phi != 0.0)))
    return StationaryState(
        float(K),
        int(mode),
        phi.copy(),
        rho_hat[: 2 * M + 1].copy(),
        float(log_Z),
        delta_F - K * float(w[0]),
        delta_F,
        residual,
        truncation,
        morse,
        morse == 0,
    )


def _morse_index(basis: Basis, K: float, rho_hat: np.ndarray, *, nonuniform: bool, tol: float = 1e-7) -> int:
    # Modes with W_hat = 0 contribute zero rows to 2 K W_hat C, hence only zero eigenvalues: drop them.
    w_all = basis.w[1 : basis.n_modes + 1]
    j = np.flatnonzero(np.abs(w_all) > 1e-14 * np.max(np.abs(w_all))) + 1
    w = basis.w[j]
    eig_cos = np.linalg.eigvals(2.0 * K * w[:, None] * _coupling_matrix(rho_hat, j)).real
    eig_sin = np.sort(np.linalg.eigvals(2.0 * K * w[:, None] * _coupling_matrix(rho_hat, j, sine=True)).real)
    if nonuniform:  # the translation mode has eigenvalue exactly 1
        eig_sin = np.delete(eig_sin, int(np.argmin(np.abs(eig_sin - 1.0))))
    return int(np.sum(eig_cos > 1.0 + tol) + np.sum(eig_sin > 1.0 + tol))


def uniform_state(kernel: Kernel, K: float, n_modes: int | None = None) -> StationaryState:
    basis = make_basis(kernel, n_modes)
    return _state(basis, K, np.zeros(basis.n_modes), 0)


# --------------------------------------------------------------------------------------------------
# Newton's method


def _newton(fun, x0: np.ndarray, *, tol: float = NEWTON_TOL) -> tuple[np.ndarray, bool]:
    """Damped Newton on ``fun(x) -> (residual, jacobian)``; returns ``(x, converged)``."""
    x = np.array(x0, dtype=np.float64)
    res, jac = fun(x)
    norm = float(np.max(np.abs(res)))
    for _ in range(_MAX_NEWTON):
        if not math.isfinite(norm):
            return x, False
        if norm < tol * max(1.0, float(np.max(np.abs(x)))):
            return x, True
        try:
            step = np.linalg.solve(jac, -res)
        except np.linalg.LinAlgError:
            return x, False
        lam = 1.0
        while lam > 1e-4:
            trial = x + lam * step
            res_t, jac_t = fun(trial)
            norm_t = float(np.max(np.abs(res_t)))
            if math.isfinite(norm_t) and norm_t < norm * (1.0 - 0.1 * lam) + 1e-300:
                break
            lam *= 0.5
        else:
            return x, False
        x, res, jac, norm = trial, res_t, jac_t, norm_t
    return x, norm < 1e3 * tol * max(1.0, float(np.max(np.abs(x))))


def _embed(basis: Basis, A: np.ndarray, phi_A: np.ndarray) -> np.ndarray:
    phi = np.zeros(basis.n_modes)
    phi[A - 1] = phi_A
    return phi


def _fixed_K_system(basis: Basis, K: float, A: np.ndarray):
    wA = basis.w[A]

    def fun(phi_A):
        rho, _ = density_from_phi(basis, _embed(basis, A, phi_A))
        rho_hat = fourier(basis, rho)
        res = phi_A - 2.0 * K * wA * rho_hat[A]
        jac = np.eye(A.size) - 2.0 * K * wA[:, None] * _coupling_matrix(rho_hat, A)
        return res, jac

    return fun


def solve_stationary(
    kernel: Kernel,
    K: float,
    phi0: np.ndarray,
    *,
    mode: int,
    n_modes: int | None = None,
    basis: Basis | None = None,
) -> StationaryState | None:
    """Newton at fixed ``K`` from the potential ``phi0`` (cosine coefficients); ``None`` if it fails.

    ``mode`` is the period of the state (only multiples of it are solved for).
    """
    if K < 0:
        raise ValueError(f"K={K} must be >= 0; for a repulsive model flip the sign of W instead")
    basis = basis or make_basis(kernel, n_modes or np.asarray(phi0).size)
    A = active_modes(basis, max(mode, 1))
    phi0 = np.asarray(phi0, dtype=np.float64)
    if phi0.shape != (basis.n_modes,):
        raise ValueError(f"phi0 has shape {phi0.shape}; expected ({basis.n_modes},) cosine coefficients")
    x, ok = _newton(_fixed_K_system(basis, K, A), phi0[A - 1])
    if not ok:
        return None
    return _state(basis, K, _embed(basis, A, x), mode)


def _branch_system(basis: Basis, A: np.ndarray, k: int, r: float):
    """Unknowns ``(phi_A, K)``; equations (SC) on A and ``rho_hat(k) = r``."""
    wA = basis.w[A]
    ik = int(np.flatnonzero(A == k)[0])

    def fun(x):
        phi_A, K = x[:-1], x[-1]
        rho, _ = density_from_phi(basis, _embed(basis, A, phi_A))
        rho_hat = fourier(basis, rho)
        D = _coupling_matrix(rho_hat, A)
        res = np.append(phi_A - 2.0 * K * wA * rho_hat[A], rho_hat[k] - r)
        jac = np.zeros((A.size + 1, A.size + 1))
        jac[:-1, :-1] = np.eye(A.size) - 2.0 * K * wA[:, None] * D
        jac[:-1, -1] = -2.0 * wA * rho_hat[A]
        jac[-1, :-1] = D[ik]
        return res, jac

    return fun


def _landscape_system(basis: Basis, A: np.ndarray, k: int, K: float, r: float):
    """Unknowns ``phi_A``; (SC) on ``A \\ {k}`` and ``rho_hat(k) = r``: the constrained minimiser of F."""
    wA = basis.w[A]
    ik = int(np.flatnonzero(A == k)[0])

    def fun(phi_A):
        rho, _ = density_from_phi(basis, _embed(basis, A, phi_A))
        rho_hat = fourier(basis, rho)
        D = _coupling_matrix(rho_hat, A)
        res = phi_A - 2.0 * K * wA * rho_hat[A]
        jac = np.eye(A.size) - 2.0 * K * wA[:, None] * D
        res[ik] = rho_hat[k] - r
        jac[ik] = D[ik]
        return res, jac

    return fun


# --------------------------------------------------------------------------------------------------
# branches


@dataclass(frozen=True)
class Branch:
    """A branch of even stationary states bifurcating from uniform in mode ``mode`` at ``K_bifurcation``.

    Points are ordered by the order parameter ``r = rho_hat(mode)``; ``complete`` is False when the
    continuation stopped early (``stop_reason`` says why).
    """

    mode: int
    K_bifurcation: float
    states: tuple[StationaryState, ...] = field(repr=False)
    complete: bool
    stop_reason: str

    @property
    def K(self) -> np.ndarray:
        return np.array([s.K for s in self.states])

    @property
    def r(self) -> np.ndarray:
        return np.array([s.order_parameter for s in self.states])

    @property
    def delta_F(self) -> np.ndarray:
        return np.array([s.delta_F for s in self.states])

    @property
    def stable(self) -> np.ndarray:
        return np.array([s.stable for s in self.states])

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame(
            {
                "mode": self.mode,
                "K": self.K,
                "order_parameter": self.r,
                "delta_F": self.delta_F,
                "stable": self.stable,
                "morse_index": [s.morse_index for s in self.states],
            }
        )


def branch_point(
    kernel: Kernel, mode: int, r: float, guess: tuple[np.ndarray, float], *, basis: Basis
) -> StationaryState | None:
    """The state on the ``mode`` branch with ``rho_hat(mode) = r`` (Newton from ``(phi_A, K)`` guess)."""
    A = active_modes(basis, mode)
    x, ok = _newton(_branch_system(basis, A, mode, r), np.append(guess[0], guess[1]))
    if not ok or not x[-1] > 0:
        return None
    return _state(basis, float(x[-1]), _embed(basis, A, x[:-1]), mode)


def _continue(
    kernel: Kernel,
    basis: Basis,
    mode: int,
    r: float,
    step: float,
    x_guess: tuple[np.ndarray, float],
    *,
    direction: int,
    r_limits: tuple[float, float],
    K_limits: tuple[float, float],
    dr: float,
) -> tuple[list[StationaryState], str]:
    """Pseudo-arclength-free continuation in ``r = rho_hat(mode)`` (K unknown) with a secant predictor.

    The step adapts (halved on a Newton failure, grown by 1.5 after a success, at most ``dr``); stops outside
    ``r_limits`` / ``K_limits`` or when the truncation error exceeds 1e-8.
    """
    A = active_modes(basis, mode)
    prev: list[tuple[float, np.ndarray]] = []
    states: list[StationaryState] = []
    reason = "reached the r limit"
    while r_limits[0] <= r <= r_limits[1]:
        st = branch_point(kernel, mode, r, x_guess, basis=basis)
        if st is None:
            if step < 1e-7:
                return states, f"Newton failed at r={r:.4g}"
            r -= direction * step
            step *= 0.5
            r += direction * step
            continue
        states.append(st)
        if st.truncation_error > 1e-8:
            return states, f"truncation error {st.truncation_error:.2g} at r={r:.4g}; raise n_modes"
        if not K_limits[0] <= st.K <= K_limits[1]:
            return states, "reached the K limit"
        x_now = np.append(st.phi[A - 1], st.K)
        prev.append((r, x_now))
        step = min(step * (1.5 if len(prev) >= 2 else 2.0), dr)
        if len(prev) >= 2:
            (r1, x1), (r2, x2) = prev[-2], prev[-1]
            x_next = x2 + (x2 - x1) * (direction * step / (r2 - r1))
        else:
            x_next = x_now
        r += direction * step
        x_guess = (x_next[:-1], x_next[-1])
    return states, reason


_COMPLETE = ("reached the K limit", "reached the r limit")


def follow_branch(
    kernel: Kernel,
    mode: int,
    *,
    K_max: float,
    n_modes: int | None = None,
    r_max: float = 0.98,
    dr: float = 0.02,
    basis: Basis | None = None,
) -> Branch:
    """Continue the branch born at ``K = 1/(2 W_hat(mode))`` in ``r = rho_hat(mode)`` until ``K > K_max``.

    The continuation also stops when ``r`` reaches ``r_max`` or the truncation error exceeds 1e-8 (raise
    ``n_modes`` to go further); ``stop_reason`` says which.
    """
    basis = basis or make_basis(kernel, n_modes)
    if mode < 1 or mode > basis.n_modes or float(basis.w[mode]) <= 0:
        raise ValueError(
            f"mode {mode} does not bifurcate from uniform (needs 1 <= mode <= n_modes, W_hat > 0)"
        )
    A = active_modes(basis, mode)
    K0 = 1.0 / (2.0 * float(basis.w[mode]))
    r0 = 1e-3  # first point from linear theory: phi_k = 2 K W_hat(k) r = r
    states, reason = _continue(
        kernel,
        basis,
        mode,
        r0,
        r0,
        (np.where(A == mode, r0, 0.0), K0),
        direction=1,
        r_limits=(0.0, r_max),
        K_limits=(0.0, K_max),
        dr=dr,
    )
    return Branch(mode, K0, tuple(states), reason in _COMPLETE, reason)


def follow_state(
    kernel: Kernel,
    state: StationaryState,
    *,
    K_limits: tuple[float, float],
    r_max: float = 0.98,
    dr: float = 0.02,
    basis: Basis | None = None,
) -> Branch:
    """The branch through ``state`` (e.g. a global minimiser not connected to uniform), continued in
    ``r = rho_hat(state.mode)`` in both directions; ``K_bifurcation`` is nan."""
    basis = basis or make_basis(kernel, state.n_modes)
    A = active_modes(basis, state.mode)
    x0 = (state.phi[A - 1], state.K)
    r0 = state.order_parameter
    down, why_down = _continue(
        kernel,
        basis,
        state.mode,
        r0,
        1e-3,
        x0,
        direction=-1,
        r_limits=(1e-3, r_max),
        K_limits=K_limits,
        dr=dr,
    )
    up, why_up = _continue(
        kernel, basis, state.mode, r0, 1e-3, x0, direction=1, r_limits=(1e-3, r_max), K_limits=K_limits, dr=dr
    )
    states = tuple(reversed(down[1:])) + tuple(up)
    return Branch(
        state.mode,
        float("nan"),
        states,
        why_down in _COMPLETE and why_up in _COMPLETE,
        f"{why_down} / {why_up}",
    )


# --------------------------------------------------------------------------------------------------
# free-energy landscape


@dataclass(frozen=True)
class Landscape:
    """Landau free energy ``Delta F(r) = min {F(rho) - F(1) : rho_hat(mode) = r}`` at couplings ``K``."""

    mode: int
    K: np.ndarray  # (n_K,)
    r: np.ndarray  # (n_r,)
    delta_F: np.ndarray  # (n_K, n_r); nan where Newton did not converge

    def to_frame(self):
        import pandas as pd

        KK, RR = np.meshgrid(self.K, self.r, indexing="ij")
        return pd.DataFrame({"K": KK.ravel(), "order_parameter": RR.ravel(), "delta_F": self.delta_F.ravel()})


def free_energy_landscape(
    kernel: Kernel, K_values, *, mode: int, r_max: float = 0.6, n_r: int = 61, n_modes: int | None = None
) -> Landscape:
    basis = make_basis(kernel, n_modes)
    A = active_modes(basis, mode)
    if mode not in A:
        raise ValueError(f"mode {mode} has W_hat = 0 or exceeds n_modes; pick a mode with W_hat(mode) != 0")
    K_values = np.asarray(K_values, dtype=np.float64)
    if np.any(K_values < 0):
        raise ValueError("coupling K must be >= 0")
    r = np.linspace(0.0, r_max, n_r)
    out = np.full((K_values.size, n_r), np.nan)
    for a, K in enumerate(K_values):
        phi = np.zeros(A.size)
        for b, rb in enumerate(r):
            if b == 0:
                out[a, b] = 0.0
                continue
            x, ok = _newton(_landscape_system(basis, A, mode, K, rb), phi)
            if not ok:
                break
            phi = x
            out[a, b] = _state_delta_F(basis, K, _embed(basis, A, x))
    return Landscape(mode, K_values, r, out)


def _state_delta_F(basis: Basis, K: float, phi: np.ndarray) -> float:
    rho, log_Z = density_from_phi(basis, phi)
    rho_hat = fourier(basis, rho)
    M = basis.n_modes
    return float(
        2.0 * phi @ rho_hat[1 : M + 1] - log_Z - 2.0 * K * (basis.w[1 : M + 1] @ rho_hat[1 : M + 1] ** 2)
    )


# --------------------------------------------------------------------------------------------------
# global minimisation (full space: cosine and sine modes)


def _relax(basis: Basis, K: float, phi_hat: np.ndarray, n_iter: int) -> tuple[np.ndarray, np.ndarray]:
    """Damped fixed-point iteration ``phi_hat <- (1 - lam) phi_hat + lam 2 K W_hat rho_hat[phi]`` for a batch.

    ``phi_hat`` (n_starts, n_modes) holds complex coefficients (any phase: the full, non-even space). The
    damped map's Jacobian is ``1 - lam (1 - 2 K W_hat C)``, so it converges exactly to states whose
    eigenvalues ``mu`` of ``2 K W_hat C`` satisfy ``1 - 2/lam < mu < 1``, i.e. to local minimisers of ``F``.
    Returns the final coefficients and ``Delta F`` of each start.
    """
    M, n = basis.n_modes, basis.n_grid
    w = basis.w[1 : M + 1]
    lam = min(0.5, 0.9 / (1.0 + max(0.0, -2.0 * K * float(w.min()))))
    spec = np.zeros((phi_hat.shape[0], n // 2 + 1), dtype=np.complex128)
    x = phi_hat.copy()
    for _ in range(n_iter + 1):
        spec[:, 1 : M + 1] = x
        pot = np.fft.irfft(spec, n, axis=1) * n  # (n_starts, n_grid)
        top = pot.max(axis=1, keepdims=True)
        e = np.exp(pot - top)
        mean = e.mean(axis=1, keepdims=True)
        rho = e / mean
        rho_hat = np.fft.rfft(rho, axis=1)[:, 1 : M + 1] / n
        target = 2.0 * K * w * rho_hat
        if _ < n_iter:
            x = (1.0 - lam) * x + lam * target
    log_Z = (top + np.log(mean))[:, 0]
    delta_F = np.mean(rho * pot, axis=1) - log_Z - 2.0 * K * (np.abs(rho_hat) ** 2 @ w)
    return x, delta_F


def _centre(rho_hat_c: np.ndarray, tol: float = 1e-6) -> tuple[int, np.ndarray, float]:
    """Period, the real coefficients after the translation that makes ``rho_hat(period) > 0``, and the
    size of the remaining odd part (0 for a state that is even after translation)."""
    mags = np.abs(rho_hat_c[1:])
    big = np.flatnonzero(mags > tol * max(mags.max(), 1e-300)) + 1
    if big.size == 0:
        return 0, rho_hat_c.real, 0.0
    period = int(np.gcd.reduce(big))
    shift = np.exp(-1j * np.angle(rho_hat_c[period]) * np.arange(rho_hat_c.size) / period)
    centred = rho_hat_c * shift
    return period, centred.real, float(np.max(np.abs(centred.imag)))


def global_minimize(
    kernel: Kernel,
    K: float,
    *,
    n_starts: int = 8,
    seed: int = 0,
    n_modes: int | None = None,
    basis: Basis | None = None,
) -> list[StationaryState]:
    """Local minimisers of ``F_K`` (damped fixed-point iteration in the full space, all starts at once, then
    Newton in the even subspace) from ``n_starts`` random potentials plus single-mode starts in the three
    most unstable modes.

    Only states below the uniform free energy are kept (the others cannot be the global minimiser).
    Returns the distinct ones, lowest ``delta_F`` first. A state that stays odd after translation cannot be
    polished by the even solver and is dropped; none of the kernels studied here produced one.
    """
    if K < 0:
        raise ValueError(f"K={K} must be >= 0")
    basis = basis or make_basis(kernel, n_modes)
    # The search runs in a coarser basis (its minimisers are only starting points for Newton).
    search = make_basis(kernel, min(basis.n_modes, _SEARCH_MODES))
    M = search.n_modes
    rng = np.random.default_rng(seed)
    positive = [int(k) for k in np.argsort(-basis.w[1 : M + 1])[:3] + 1 if basis.w[k] > 0]
    starts = np.zeros((2 * len(positive) + n_starts, M), dtype=np.complex128)
    for i, k in enumerate(positive):
        starts[2 * i, k - 1], starts[2 * i + 1, k - 1] = 0.5, 2.0
    j = np.arange(1, M + 1)
    amp = np.exp(rng.uniform(math.log(0.2), math.log(4.0), size=(n_starts, 1)))
    starts[2 * len(positive) :] = (
        amp * (rng.normal(size=(n_starts, M)) + 1j * rng.normal(size=(n_starts, M))) / j**2
    )
    relaxed, delta_F = _relax(search, K, starts, _SEARCH_ITERATIONS)
    found: list[StationaryState] = []
    for x, dF in zip(relaxed, delta_F):
        if dF > -1e-10:  # no better than uniform: irrelevant for the global minimum
            continue
        period, phi_c, odd = _centre(np.concatenate([[0.0], x]))
        if period == 0 or np.max(np.abs(phi_c)) < 1e-4 or odd > 1e-3 * np.max(np.abs(phi_c)):
            continue
        phi0 = np.zeros(basis.n_modes)
        phi0[:M] = phi_c[1:]
        st = solve_stationary(kernel, K, phi0, mode=period, basis=basis)
        if st is None or np.max(np.abs(st.phi)) < 1e-6:
            continue
        # the relaxed potential may still carry traces of modes the converged state lacks: re-read the period
        exact_period, _, _ = _centre(st.rho_hat[: basis.n_modes + 1].astype(np.complex128), tol=1e-9)
        if exact_period != period:
            st = solve_stationary(kernel, K, st.phi, mode=exact_period, basis=basis)
            if st is None:
                continue
        if all(abs(st.delta_F - f.delta_F) > 1e-9 * max(1.0, abs(f.delta_F)) for f in found):
            found.append(st)
    return sorted(found, key=lambda s: s.delta_F)
