"""Dynamics: the McKean--Vlasov PDE (Wasserstein gradient flow of F_K) and the noisy particle system.

The gradient flow of ``F_K(rho) = int rho log rho - K int int W rho rho`` in the Wasserstein metric is

    d_t rho = d_theta (rho d_theta (log rho - 2 K W * rho)) = d_theta^2 rho - 2 K d_theta (rho d_theta W*rho),

whose stationary states are exactly the solutions of ``rho = exp(2 K W * rho)/Z`` and along which ``F_K``
never increases. It is the mean-field limit of the particles

    d theta_i = 2 K (1/N) sum_j W'(theta_i - theta_j) dt + sqrt(2) dB_i        (mod 1).

The PDE is solved pseudo-spectrally: diffusion implicitly, the interaction explicitly (first-order IMEX).
Particles move by the stochastic Heun scheme (additive noise, weak order 2).
The particle drift uses ``W'(x) = -sum_{k >= 1} 4 pi k W_hat(k) sin(2 pi k x)``, so
``(1/N) sum_j W'(theta_i - theta_j) = -sum_k 4 pi k W_hat(k) Im(e_k(theta_i) conj(c_k))`` with the empirical
moments ``c_k = (1/N) sum_j e_k(theta_j)``, ``e_k(x) = exp(2 pi i k x)``: cost ``O(N M)``, not ``O(N^2)``.
Linearised at the uniform state, mode ``k`` relaxes at rate ``(2 pi k)^2 (1 - 2 K W_hat(k))``; at a continuous
``K_#`` the amplitude obeys ``da/dt = -g a^3`` and decays like ``t^(-1/2)``.

Simulations are ``(init, step)`` over immutable states; the particle state carries its own seed and step
counter, so a step's noise is a function of the state alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from thermolens.meanfield.kernels import Kernel

# A step that moves a particle deterministically by more than this fraction of the circle is refused.
MAX_DRIFT_PER_STEP = 0.1


# --------------------------------------------------------------------------------------------------
# the PDE


@dataclass(frozen=True)
class PDEState:
    t: float
    rho: np.ndarray = field(repr=False)  # (n_grid,) density on theta_i = i / n_grid, mean 1


def pde_init(rho0: np.ndarray) -> PDEState:
    rho0 = np.asarray(rho0, dtype=np.float64)
    if rho0.ndim != 1 or rho0.size < 16 or np.any(rho0 < 0) or not np.all(np.isfinite(rho0)):
        raise ValueError("initial density must be a 1-D array of >= 16 finite non-negative grid values")
    return PDEState(0.0, rho0 / rho0.mean())


def _wavenumbers(n_grid: int) -> np.ndarray:
    return 2 * np.pi * np.arange(n_grid // 2 + 1)


def pde_step(state: PDEState, *, w_hat: np.ndarray, K: float, dt: float) -> PDEState:
    """One IMEX step; ``w_hat`` holds ``W_hat(0 .. n_grid/2)``."""
    n = state.rho.size
    q = _wavenumbers(n)
    rho_hat = np.fft.rfft(state.rho)
    drift = np.fft.irfft(1j * q * w_hat * rho_hat, n)  # d_theta (W * rho)
    flux_hat = np.fft.rfft(state.rho * drift)
    new_hat = (rho_hat - dt * 2.0 * K * 1j * q * flux_hat) / (1.0 + dt * q**2)
    rho = np.fft.irfft(new_hat, n)
    if not np.all(np.isfinite(rho)) or rho.min() < -1e-6:
        raise ValueError(
            f"the PDE blew up at t={state.t + dt:.4g} (negative or non-finite density); "
            f"lower dt (now {dt:g}) or K, or raise n_grid"
        )
    return PDEState(state.t + dt, rho)


def grid_free_energy(rho: np.ndarray, w_hat: np.ndarray, K: float) -> float:
    """``F_K(rho) - F_K(1)`` for grid values (trapezoid rule, spectrally accurate for smooth rho)."""
    n = rho.size
    rho_hat = np.fft.rfft(rho) / n
    entropy = float(np.mean(rho * np.log(np.clip(rho, 1e-300, None))))
    energy = float(w_hat[1:] @ (np.abs(rho_hat[1:]) ** 2) * 2.0)
    if n % 2 == 0:  # the Nyquist coefficient is not doubled
        energy -= float(w_hat[-1] * np.abs(rho_hat[-1]) ** 2)
    return entropy - K * energy


@dataclass(frozen=True)
class PDERun:
    """Recorded observables of a PDE run: free energy (relative to uniform), ``||rho - 1||_L2`` and
    ``|rho_hat(mode)|`` at ``times``; density snapshots at ``snapshot_times``."""

    K: float
    dt: float
    mode: int
    times: np.ndarray
    delta_F: np.ndarray
    distance: np.ndarray
    order_parameter: np.ndarray
    snapshot_times: np.ndarray
    snapshots: np.ndarray = field(repr=False)  # (n_snapshots, n_grid)
    final: PDEState = field(repr=False)

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame(
            {
                "t": self.times,
                "delta_F": self.delta_F,
                "distance": self.distance,
                "order_parameter": self.order_parameter,
            }
        )


def simulate_pde(
    kernel: Kernel,
    K: float,
    *,
    t_final: float,
    dt: float = 1e-4,
    n_grid: int = 256,
    rho0: np.ndarray | None = None,
    amplitude: float = 0.05,
    mode: int = 1,
    n_records: int = 400,
    n_snapshots: int = 6,
) -> PDERun:
    """Run the PDE from ``rho0`` (default ``1 + amplitude cos(2 pi mode theta)``) up to ``t_final``."""
    if K < 0:
        raise ValueError(f"K={K} must be >= 0")
    if not dt > 0 or not t_final > 0:
        raise ValueError("dt and t_final must be positive")
    if n_grid < 16 or n_grid % 2:
        raise ValueError(f"n_grid={n_grid} must be an even number >= 16")
    theta = np.arange(n_grid) / n_grid
    state = pde_init(1.0 + amplitude * np.cos(2 * np.pi * mode * theta) if rho0 is None else rho0)
    w_hat = kernel.w_hat(np.arange(n_grid // 2 + 1))
    n_steps = int(math.ceil(t_final / dt))
    record_at = set(np.unique(np.geomspace(1, n_steps, n_records).astype(int)).tolist()) | {0}
    snap_at = {0} | set(
        np.unique(np.geomspace(max(1, n_steps // 1000), n_steps, n_snapshots - 1).astype(int)).tolist()
    )
    rec: list[tuple[float, float, float, float]] = []
    snaps, snap_t = [], []
    for i in range(n_steps + 1):
        if i in record_at:
            r = state.rho
            rec.append(
                (
                    state.t,
                    grid_free_energy(r, w_hat, K),
                    float(np.sqrt(np.mean((r - 1.0) ** 2))),
                    float(np.abs(np.fft.rfft(r)[mode]) / n_grid),
                )
            )
        if i in snap_at:
            snaps.append(state.rho.copy())
            snap_t.append(state.t)
        if i < n_steps:
            state = pde_step(state, w_hat=w_hat, K=K, dt=dt)
    arr = np.array(rec)
    return PDERun(
        float(K),
        float(dt),
        int(mode),
        arr[:, 0],
        arr[:, 1],
        arr[:, 2],
        arr[:, 3],
        np.array(snap_t),
        np.array(snaps),
        state,
    )


def linear_decay_rate(kernel: Kernel, K: float, mode: int) -> float:
    """Relaxation rate ``(2 pi k)^2 (1 - 2 K W_hat(k))`` of mode ``k`` at the uniform state."""
    return float((2 * np.pi * mode) ** 2 * (1.0 - 2.0 * K * kernel.w_hat(mode)))


def fit_exponential_rate(times: np.ndarray, values: np.ndarray) -> float:
    """Least-squares slope of ``-log(values)`` against ``times``."""
    return float(-np.polyfit(times, np.log(values), 1)[0])


def fit_power_exponent(times: np.ndarray, values: np.ndarray) -> float:
    """Least-squares slope of ``-log(values)`` against ``log(times)`` (``values ~ t^(-exponent)``)."""
    return float(-np.polyfit(np.log(times), np.log(values), 1)[0])


# --------------------------------------------------------------------------------------------------
# particles


@dataclass(frozen=True)
class ParticleState:
    t: float
    theta: np.ndarray = field(repr=False)  # (n_particles,) positions in [0, 1)
    seed: int
    step: int


def particle_init(n_particles: int, *, seed: int) -> ParticleState:
    if n_particles < 2:
        raise ValueError(f"n_particles={n_particles} must be >= 2")
    rng = np.random.default_rng([seed, 0])
    return ParticleState(0.0, rng.uniform(0.0, 1.0, n_particles), int(seed), 0)


def fourier_moments(theta: np.ndarray, n_modes: int) -> np.ndarray:
    """``c_k = (1/N) sum_j exp(2 pi i k theta_j)`` for ``k = 1 .. n_modes`` (powers by repeated products)."""
    z = np.exp(2j * np.pi * theta)
    e = np.ones_like(z)
    out = np.empty(n_modes, dtype=np.complex128)
    for k in range(n_modes):
        e = e * z
        out[k] = e.mean()
    return out


def fourier_force(theta: np.ndarray, w_hat: np.ndarray) -> np.ndarray:
    """``(1/N) sum_j W'(theta_i - theta_j)`` by the Fourier series; ``w_hat[1:]`` holds ``W_hat(1 .. M)``."""
    M, n = w_hat.size - 1, theta.size
    z = np.exp(2j * np.pi * theta)
    e = np.empty((M, n), dtype=np.complex128)  # e[k-1] = exp(2 pi i k theta), by repeated products
    e[0] = z
    for k in range(1, M):
        np.multiply(e[k - 1], z, out=e[k])
    c = e.sum(axis=1) / n
    weights = 4 * np.pi * np.arange(1, M + 1) * w_hat[1:] * np.conj(c)  # (M,)
    parts = e.view(np.float64).reshape(M, n, 2)  # real and imaginary parts without a copy
    # Im(sum_k weights_k e_k) with real matrix-vector products
    return -(weights.real @ parts[:, :, 1] + weights.imag @ parts[:, :, 0])


def direct_force(theta: np.ndarray, derivative, *, chunk: int = 2048) -> np.ndarray:
    """``(1/N) sum_j W'(theta_i - theta_j)`` by the O(N^2) double sum (reference for the benchmark)."""
    out = np.empty(theta.size)
    for a in range(0, theta.size, chunk):
        diff = theta[a : a + chunk, None] - theta[None, :]
        out[a : a + chunk] = derivative(diff).mean(axis=1)
    return out


def force_modes(kernel: Kernel, *, tol: float = 1e-12, max_modes: int = 512) -> int:
    """Smallest ``M`` with ``sum_{k > M} 4 pi k |W_hat(k)| <= tol * sum_k 4 pi k |W_hat(k)|`` (capped)."""
    k = np.arange(kernel.coefficients.size)
    weight = 4 * np.pi * k * np.abs(kernel.coefficients)
    tail = np.cumsum(weight[::-1])[::-1]  # tail[m] = sum_{k >= m}
    ok = np.flatnonzero(tail <= tol * tail[0])
    return int(min(ok[0] - 1 if ok.size else kernel.coefficients.size - 1, max_modes)) or 1


def particle_step(state: ParticleState, *, w_hat: np.ndarray, K: float, dt: float) -> ParticleState:
    """Stochastic Heun step (weak order 2 for additive noise) with the Fourier-series drift.

    Euler--Maruyama's O(dt) bias in the stationary law acts like a shift of the effective coupling, which
    the order parameter amplifies near ``K_#``; Heun's predictor--corrector makes the bias O(dt^2).
    """
    drift = 2.0 * K * fourier_force(state.theta, w_hat)
    top = float(np.max(np.abs(drift))) * dt
    if not math.isfinite(top) or top > MAX_DRIFT_PER_STEP:
        raise ValueError(
            f"particle step moves a particle by {top:.3g} of the circle (limit "
            f"{MAX_DRIFT_PER_STEP}); lower dt (now {dt:g}) or K"
        )
    rng = np.random.default_rng([state.seed, state.step + 1])
    noise = math.sqrt(2.0 * dt) * rng.standard_normal(state.theta.size)
    predictor = state.theta + drift * dt + noise
    corrected = 2.0 * K * fourier_force(predictor, w_hat)
    theta = state.theta + 0.5 * (drift + corrected) * dt + noise
    return ParticleState(state.t + dt, np.mod(theta, 1.0), state.seed, state.step + 1)


@dataclass(frozen=True)
class ParticleRun:
    """``|c_k|`` (k = 1 .. n_observed) at ``times``; ``final`` holds the last positions."""

    K: float
    dt: float
    n_particles: int
    n_force_modes: int
    times: np.ndarray
    moments: np.ndarray  # (n_records, n_observed) |c_k|
    final: ParticleState = field(repr=False)

    def to_frame(self):
        import pandas as pd

        frame = pd.DataFrame({"t": self.times})
        for k in range(self.moments.shape[1]):
            frame[f"abs_c{k + 1}"] = self.moments[:, k]
        return frame


def simulate_particles(
    kernel: Kernel,
    K: float,
    *,
    n_particles: int,
    n_steps: int,
    dt: float,
    seed: int,
    n_force_modes: int | None = None,
    n_observed: int = 4,
    n_records: int = 200,
    progress=None,
) -> ParticleRun:
    if K < 0:
        raise ValueError(f"K={K} must be >= 0")
    if not dt > 0 or n_steps < 1:
        raise ValueError("dt must be positive and n_steps >= 1")
    M = n_force_modes or force_modes(kernel)
    w_hat = kernel.w_hat(np.arange(M + 1))
    state = particle_init(n_particles, seed=seed)
    record_at = set(np.unique(np.linspace(0, n_steps, n_records).astype(int)).tolist())
    times, moments = [], []
    steps = range(n_steps + 1)
    for i in progress(steps) if progress else steps:
        if i in record_at:
            times.append(state.t)
            moments.append(np.abs(fourier_moments(state.theta, n_observed)))
        if i < n_steps:
            state = particle_step(state, w_hat=w_hat, K=K, dt=dt)
    return ParticleRun(
        float(K), float(dt), int(n_particles), int(M), np.array(times), np.array(moments), state
    )
