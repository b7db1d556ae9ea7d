"""The noisy transformer as interacting particles on the sphere S^(d-1): simulation and annealing.

Self-attention moves tokens ``x_i in S^(d-1)`` like interacting particles (Geshkovski, Letrouit, Polyanskiy,
Rigollet, arXiv:2312.10794). With noise this is the mean-field limit of the Wasserstein gradient flow of the
free energy of ``sphere.py`` (Mun & Rosenzweig's sphere follow-up, arXiv:2606.05140),
``F_K(rho) = int rho log rho - K int int W(x . y) rho rho``, ``W(t) = (exp(beta t) - 1)/beta``, ``rho``
relative to the uniform probability on the sphere. Each of ``n_systems`` independent systems of ``N``
particles follows

    dx_i = 2 K m_i dtau + sqrt(2) dB_i,      m_i = (1/N) sum_j exp(beta x_i . x_j) P_i x_j,

with ``P_i = I - x_i x_i^T``, ``B_i`` Brownian motion on the sphere and ``tau`` its time (generator: the
Laplace--Beltrami operator; in R^d, Ito: ``dx = [2 K m - (d - 1) x] dtau + sqrt(2) P dW``). ``2 K m_i`` is the
sphere gradient of ``(2K/N) sum_j W(x_i . x_j)``, so the stationary law is the Gibbs measure
``exp((K/N) sum_ij W(x_i . x_j))``. Linearised at the uniform state, degree-l modes relax at rate
``l (l + d - 2)(1 - 2 K lambda_l)``; degree 1 at ``(d - 1)(1 - K/K_#)``, ``K_# = 1/(2 lambda_1(beta, d))``.

On d = 2 this is the circle model of ``dynamics.py``: with ``x = (cos 2 pi theta, sin 2 pi theta)`` the
arc length is ``s = 2 pi theta``, the circle's drift ``2 K (1/N) sum_j W'(theta_i - theta_j)`` equals
``2 pi * 2 K (m_i . e_i)`` (``e_i`` the unit tangent), and ``tau = 4 pi^2 t`` turns
``ds = 4 pi^2 * 2 K (m . e) dt + 2 pi sqrt(2) dB_t`` into ``ds = 2 K (m . e) dtau + sqrt(2) dB_tau``.
``simulate_sphere`` therefore runs d = 2 with the circle's O(N M) Fourier drift.

The step is stochastic Heun on the sphere: the predictor ``y = exp_x(b(x) dt + c v)`` with ``b = 2 K m``,
the tangent Gaussian ``v = sqrt(2 dt) P_x xi`` and the exponential map ``exp_x``; the corrector moves
``x`` along ``(b(x) + T b(y)) dt/2 + c v`` with ``T`` the parallel transport from ``y`` back to ``x``, then
renormalises. On d = 2 this is exactly the circle's Heun step in arc length. ``c = exp(-(d - 2) dt/6)``
corrects the geodesic random walk: the angle of Brownian motion from its start obeys
``dphi = (d - 2) cot(phi) dtau + sqrt(2) dW``; the ``1/phi`` part of ``cot`` is the Bessel process that
``|v|`` samples exactly, and the ``-phi/3`` part shrinks ``E phi^2`` by ``1 - (d - 2) dt/3`` per step.
Without it ``E[x(tau) . x(0)]`` would decay at a rate wrong by a relative ``~ d dt/3`` (7 % at d = 384
and ``(d - 1) dt = 0.2``); with it the error at that step is below 1 % for d = 3 .. 384, and 1 - 4 % at
``(d - 1) dt = 1``, the largest step ``sphere_step`` accepts for d >= 3 (Brownian steps of ~1.4 rad).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from thermolens.meanfield.effective import interaction_field
from thermolens.meanfield.dynamics import ParticleState, force_modes, particle_step
from thermolens.meanfield.kernels import noisy_transformer

# A step whose deterministic move exceeds this many radians for some particle is refused.
MAX_DRIFT_PER_STEP = 0.1
# exp(beta) must stay far from overflow; the circle kernel has the same limit.
MAX_BETA = 300.0


def _check_model(beta: float, K: float, dt: float) -> None:
    if not (beta > 0 and beta <= MAX_BETA):
        raise ValueError(f"beta={beta} must be in (0, {MAX_BETA:g}]; beyond, exp(beta) overflows the drift")
    if not (K >= 0 and math.isfinite(K)):
        raise ValueError(f"K={K} must be a finite number >= 0")
    if not (dt > 0 and math.isfinite(dt)):
        raise ValueError(f"dt={dt} must be a positive finite time step (in tau)")


def _check_sizes(n_systems: int, n_particles: int, d: int) -> None:
    for name, value, low in (("n_systems", n_systems, 1), ("n_particles", n_particles, 2), ("d", d, 2)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name}={value} must be an integer >= {low}")


# --------------------------------------------------------------------------------------------------
# state and one step


@dataclass(frozen=True)
class SphereState:
    t: float  # tau
    x: np.ndarray = field(repr=False)  # (n_systems, n_particles, d) float64 unit vectors
    seed: int
    step: int


def sphere_init(n_systems: int, n_particles: int, d: int, *, seed: int) -> SphereState:
    """Independent uniform points on S^(d-1) (normalised Gaussians drawn from ``default_rng([seed, 0])``)."""
    _check_sizes(n_systems, n_particles, d)
    g = np.random.default_rng([seed, 0]).standard_normal((n_systems, n_particles, d))
    return SphereState(0.0, g / np.linalg.norm(g, axis=-1, keepdims=True), int(seed), 0)


def order_parameter(x: np.ndarray) -> np.ndarray:
    """``r_1 = |(1/N) sum_i x_i|`` over the particle axis: (..., n_particles, d) -> (...)."""
    return np.linalg.norm(np.asarray(x, dtype=np.float64).mean(axis=-2), axis=-1)


def interaction_drift(x: np.ndarray, beta: float) -> np.ndarray:
    """``m_i = (1/N) sum_j exp(beta x_i . x_j) P_i x_j`` for x of shape (S, N, d); returns (S, N, d).

    The same field the dynamics measurement regresses updates on (``effective.interaction_field``: the
    Fourier series on the circle for large N, row chunks of 2-D products elsewhere; ``exp(beta)`` is
    factored out, so nothing overflows). The self term vanishes (``P_i x_i = 0``).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3:
        raise ValueError(f"x has shape {x.shape}; expected (n_systems, n_particles, d)")
    if not (beta > 0 and beta <= MAX_BETA):
        raise ValueError(f"beta={beta} must be in (0, {MAX_BETA:g}]; beyond, exp(beta) overflows the drift")
    return interaction_field(x, beta)


def _exp_map(x: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Geodesic from ``x`` along the tangent vector ``u`` (length |u|), renormalised against rounding."""
    r = np.linalg.norm(u, axis=-1, keepdims=True)
    y = np.cos(r) * x + np.sinc(r / np.pi) * u
    return y / np.linalg.norm(y, axis=-1, keepdims=True)


def _transport(w: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Parallel transport of ``w`` (tangent at y) to x along the geodesic (the rotation taking y to x)."""
    xw = np.sum(x * w, axis=-1, keepdims=True)
    xy = np.sum(x * y, axis=-1, keepdims=True)
    return w - xw / (1.0 + xy) * (x + y)


def sphere_step(state: SphereState, *, beta: float, K: float, dt: float) -> SphereState:
    """One stochastic Heun step of length ``dt`` (tau) by the direct O(S N^2 d) drift (scheme: module doc).

    The noise ``xi`` is ``default_rng([seed, step + 1]).standard_normal((S, N, d))``.
    """
    _check_model(beta, K, dt)
    x = state.x
    d = x.shape[-1]
    if d > 2 and (d - 1) * dt > 1.0:
        raise ValueError(
            f"dt={dt:g} gives Brownian steps of ~sqrt(2 (d - 1) dt) = {math.sqrt(2 * (d - 1) * dt):.2f} "
            f"rad on S^{d - 1}; lower dt to <= 1/(d - 1) = {1 / (d - 1):.3g}"
        )

    def b(z: np.ndarray) -> np.ndarray:  # pure diffusion at K = 0 skips the O(N^2) sum
        return 2.0 * K * interaction_drift(z, beta) if K > 0 else np.zeros_like(z)

    drift = b(x)
    top = float(np.max(np.linalg.norm(drift, axis=-1))) * dt
    if not math.isfinite(top) or top > MAX_DRIFT_PER_STEP:
        raise ValueError(
            f"sphere step at tau={state.t:.4g} moves a particle by {top:.3g} rad (limit "
            f"{MAX_DRIFT_PER_STEP} rad); lower dt (now {dt:g}) or K (now {K:g})"
        )
    xi = np.random.default_rng([state.seed, state.step + 1]).standard_normal(x.shape)
    noise = math.sqrt(2.0 * dt) * math.exp(-(d - 2) * dt / 6.0) * (xi - np.sum(xi * x, -1, keepdims=True) * x)
    y = _exp_map(x, drift * dt + noise)
    corrected = _transport(b(y), y, x)
    new = _exp_map(x, 0.5 * (drift + corrected) * dt + noise)
    return SphereState(state.t + dt, new, state.seed, state.step + 1)


# --------------------------------------------------------------------------------------------------
# runs


def _circle_seeds(seed: int, n_systems: int) -> list[int]:
    """Independent noise streams for the systems of the d = 2 path (one ``ParticleState`` each)."""
    return [int(np.random.SeedSequence([seed, s]).generate_state(1, np.uint64)[0]) for s in range(n_systems)]


def _advance(state: SphereState, stops: list[int], *, beta, K, dt, method, progress):
    """Step ``state`` ``stops[-1]`` times; return ``x`` after each number of steps in ``stops`` (sorted)."""
    n_steps = stops[-1] if stops else 0
    steps = range(n_steps + 1)
    records: list[np.ndarray] = []
    if method == "direct":
        for i in progress(steps) if progress else steps:
            while len(records) < len(stops) and stops[len(records)] == i:
                records.append(state.x)
            if i < n_steps:
                state = sphere_step(state, beta=beta, K=K, dt=dt)
        return records, state
    _check_model(beta, K, dt)
    kernel = noisy_transformer(beta)
    w_hat = kernel.w_hat(np.arange(force_modes(kernel) + 1))
    dt_circle = dt / (4 * math.pi**2)
    theta = np.mod(np.arctan2(state.x[..., 1], state.x[..., 0]) / (2 * math.pi), 1.0)  # (S, N)
    systems = [
        ParticleState(state.t / (4 * math.pi**2), th, s, state.step)
        for th, s in zip(theta, _circle_seeds(state.seed, theta.shape[0]))
    ]

    def vectors() -> np.ndarray:  # (S, N, 2)
        angle = 2 * math.pi * np.stack([p.theta for p in systems])
        return np.stack([np.cos(angle), np.sin(angle)], axis=-1)

    for i in progress(steps) if progress else steps:
        while len(records) < len(stops) and stops[len(records)] == i:
            records.append(vectors())
        if i < n_steps:
            try:
                systems = [particle_step(p, w_hat=w_hat, K=K, dt=dt_circle) for p in systems]
            except ValueError as err:
                raise ValueError(
                    f"circle step at tau={state.t + i * dt:.4g} refused ({err}); in tau units lower dt "
                    f"(now {dt:g}) or K (now {K:g})"
                ) from err
    return records, SphereState(state.t + n_steps * dt, vectors(), state.seed, state.step + n_steps)


def _resolve_method(method: str, d: int) -> str:
    if method == "auto":
        return "fourier" if d == 2 else "direct"
    if method not in ("direct", "fourier") or (method == "fourier" and d != 2):
        raise ValueError(f"method={method!r}: use 'auto', 'direct', or 'fourier' (d = 2 only; here d={d})")
    return method


@dataclass(frozen=True)
class SphereRun:
    beta: float
    K: float
    d: int
    dt: float
    times: np.ndarray  # (n_times,) tau at which states were recorded (requested times rounded to steps)
    states: np.ndarray = field(repr=False)  # (n_times, n_systems, n_particles, d) float32
    final: SphereState = field(repr=False)

    @property
    def r1(self) -> np.ndarray:
        """``r_1 = |(1/N) sum_i x_i|`` at each recorded time, (n_times, n_systems)."""
        return order_parameter(self.states)


def simulate_sphere(
    beta: float,
    K: float,
    *,
    n_systems: int,
    n_particles: int,
    d: int,
    times,
    dt: float,
    seed: int,
    x0: np.ndarray | None = None,
    method: str = "auto",
    progress=None,
) -> SphereRun:
    """Run the SDE (module doc) from uniform points or ``x0`` (S, N, d) and record x at ``times`` (tau).

    Each requested time is rounded to the nearest multiple of ``dt``. ``method="auto"`` uses the circle's
    Fourier drift on d = 2 (``particle_step`` with ``noisy_transformer(beta)``, ``dt / (4 pi^2)``) and the
    direct drift otherwise; ``"direct"`` forces the O(N^2) path on d = 2 too.

    Choosing dt: the direct step refuses deterministic moves above 0.1 rad and, for d >= 3,
    ``(d - 1) dt > 1``; the d = 2 path refuses moves above 0.1 of the circle (0.63 rad, ``particle_step``).
    Rates scale like ``d - 1`` and, with K ~ K_# ~ d/2, drifts like d, so dt shrinks like 1/d (tau = 1 at
    d = 384 is hundreds of relaxation times).
    """
    _check_model(beta, K, dt)
    _check_sizes(n_systems, n_particles, d)
    method = _resolve_method(method, d)
    times = np.asarray(times, dtype=np.float64)
    if times.ndim != 1 or times.size == 0 or not np.all(np.isfinite(times)):
        raise ValueError("times must be a non-empty 1-D sequence of finite tau values")
    if times[0] < 0 or np.any(np.diff(times) < 0):
        raise ValueError("times must be sorted ascending and >= 0 (tau = 0 records the initial state)")
    if x0 is None:
        state = sphere_init(n_systems, n_particles, d, seed=seed)
    else:
        x0 = np.asarray(x0, dtype=np.float64)
        if x0.shape != (n_systems, n_particles, d):
            shape = (n_systems, n_particles, d)
            raise ValueError(f"x0 has shape {x0.shape}; expected (n_systems, n_particles, d) = {shape}")
        norms = np.linalg.norm(x0, axis=-1, keepdims=True)
        if not np.all(np.isfinite(x0)) or np.max(np.abs(norms - 1.0)) > 1e-6:
            raise ValueError("x0 must hold finite unit vectors (|x| = 1 within 1e-6); normalise it first")
        state = SphereState(0.0, x0 / norms, int(seed), 0)
    stops = [int(round(t / dt)) for t in times]
    records, final = _advance(state, stops, beta=beta, K=K, dt=dt, method=method, progress=progress)
    return SphereRun(
        float(beta), float(K), int(d), float(dt), np.array(stops) * dt, np.array(records, np.float32), final
    )


# --------------------------------------------------------------------------------------------------
# annealing: hysteresis across the transition


@dataclass(frozen=True)
class Anneal:
    """``r_1`` along a heating (K ascending, from uniform) and a cooling (K descending) sweep.

    All arrays are aligned with ``K``: ``r1_down[i]`` was measured at ``K[i]`` on the way down. Means are
    over systems and the measurement window; ``*_sd`` is the sd over systems of per-system window means
    (ddof 1; nan for one system).
    """

    beta: float
    d: int
    n_particles: int
    K: np.ndarray  # (n_K,) ascending
    r1_up: np.ndarray
    r1_up_sd: np.ndarray
    r1_down: np.ndarray
    r1_down_sd: np.ndarray


def anneal(
    beta: float,
    K_values,
    *,
    n_systems: int,
    n_particles: int,
    d: int,
    t_equilibrate: float,
    t_measure: float,
    dt: float,
    seed: int,
    n_samples: int = 20,
    method: str = "auto",
    progress=None,
) -> Anneal:
    """Sweep K up from uniform points, then down from the last state; at each K continue the previous
    state for ``t_equilibrate`` (tau), then average ``r_1`` over ``n_samples`` states evenly spaced in the
    next ``t_measure`` (the last at its end). A discontinuous transition shows as ``r1_down > r1_up``
    between the fold of the clustered branch and K_#, which brackets K_c.
    ``progress`` wraps the iterable of 2 n_K stages.
    """
    K = np.asarray(K_values, dtype=np.float64)
    if K.ndim != 1 or K.size == 0 or not np.all(np.isfinite(K)) or K[0] < 0 or np.any(np.diff(K) <= 0):
        raise ValueError("K_values must be a non-empty, strictly ascending 1-D sequence of finite K >= 0")
    _check_model(beta, float(K[-1]), dt)
    _check_sizes(n_systems, n_particles, d)
    method = _resolve_method(method, d)
    if not (t_equilibrate >= 0 and math.isfinite(t_equilibrate)):
        raise ValueError(f"t_equilibrate={t_equilibrate} must be a finite tau >= 0")
    ok = n_samples >= 1 and t_measure > 0 and math.isfinite(t_measure)
    spacing = int(round(t_measure / n_samples / dt)) if ok else 0
    if spacing < 1:
        raise ValueError(
            f"t_measure={t_measure} over n_samples={n_samples} must leave >= 1 step of dt={dt:g} between "
            "samples; raise t_measure or lower n_samples or dt"
        )
    start = int(round(t_equilibrate / dt))
    stops = [start + spacing * (k + 1) for k in range(n_samples)]
    state = sphere_init(n_systems, n_particles, d, seed=seed)
    stages = [(i, "up") for i in range(K.size)] + [(i, "down") for i in reversed(range(K.size))]
    mean = {"up": np.empty(K.size), "down": np.empty(K.size)}
    sd = {"up": np.empty(K.size), "down": np.empty(K.size)}
    for i, way in progress(stages) if progress else stages:
        records, state = _advance(state, stops, beta=beta, K=float(K[i]), dt=dt, method=method, progress=None)
        per_system = order_parameter(np.array(records)).mean(axis=0)  # (n_systems,)
        mean[way][i] = per_system.mean()
        sd[way][i] = per_system.std(ddof=1) if n_systems > 1 else math.nan
    return Anneal(
        float(beta), int(d), int(n_particles), K, mean["up"], sd["up"], mean["down"], sd["down"]
    )
