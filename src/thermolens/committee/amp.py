"""Approximate message passing for the committee machine on finite instances (K = 1, 2, odd K <= 11).

The vector-valued GAMP of Aubin et al. (2018), arXiv:1806.05451, Sec. 4 (after Rangan 2011,
arXiv:1010.5141), for y = phi(X W* / sqrt(n)), with K x K matrices in place of scalar variances:

    V      = mean_i C_i                                            (K x K)
    omega  = X W_hat / sqrt(n) - g_prev V                          (m x K, Onsager-corrected)
    g, dg  = g_out(y, omega, V), its omega-Jacobian                (m x K, m x K x K)
    A      = -(1/n) sum_mu dg_mu                                   (K x K)
    B      = X^T g / sqrt(n) + W_hat A                             (n x K)
    W_hat, C = posterior mean and covariance of P0(w) exp(B.w - w^T A w / 2)

with damping on (W_hat, C). K = 1, 2 use the exact output channel (``channels.g_out``). Odd K >= 3
use the committee-symmetric channel (``channels.g_out_symmetric``: V replaced by its average over unit
permutations, the same form the K >= 3 state evolution assumes) and A = (1/n) sum_mu g_mu g_mu^T, equal to
-(1/n) sum_mu dg_mu at the Bayes-optimal fixed point (Nishimori) and to what SE iterates (R_hat = alpha
E[g g^T]); the Hessian is then never needed. Starts: ``random`` (W_hat ~ N(0, init_scale^2), C = I) or
``informed`` (planted: W_hat = q0 W* + sqrt(q0 (1 - q0)) xi, C = (1 - q0) I, so Q = q0 I and
W_hat^T W_hat / n = q0 as SE's informed branch starts). Its fixed points and its trajectory are predicted
by state evolution (``thermolens.committee.state_evolution``, ``general_k``): A <-> R_hat, V <-> I - Q.
The overlap reported is
Q = W_hat^T W* / n after matching student to teacher units (the committee is invariant under
their permutation); the test error is that of y_hat = phi(x W_hat / sqrt(n)) on fresh samples.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from thermolens.committee.channels import g_out, g_out_symmetric, prior_denoise, symmetric_projection
from thermolens.committee.data import CommitteeData, check_model, committee_output, generate
from thermolens.committee.generalization import gibbs_error, plugin_error
from thermolens.committee.state_evolution import project_overlap

MIN_N = 10
WARN_N = 500
# Mean posterior variance below which the estimate has collapsed onto one weight vector (perfect
# recovery, Rademacher prior: every sign known with probability > 1 - 1e-6). AMP stops there: as
# V -> 0 no sample of a finite instance stays within sqrt(V) of a decision boundary, the messages
# underflow to 0 and the next step would forget everything.
COLLAPSED = 1e-6
K_MAX = 11  # odd K beyond this: use the large-K state evolution
STARTS = ("random", "informed")
# odd K >= 3: quadrature nodes of the common noise factor are raised until g on a probe of samples
# agrees with a 1.5x finer rule to this relative accuracy (the rule needs more nodes as V approaches
# the non-specialized form, kappa -> 1: docs/committee.md)
_G_RTOL = 1e-5
_PROBE = 256
_N_U_MAX = 2000
# Finite instances need not converge pointwise: at odd K >= 3 a specialized state settles within
# O(1/sqrt(n)) and then wanders slowly (directions of W_hat with no overlap drift). A specialized run
# (q_d of W_hat^T W_hat / n at least SPECIALIZED) whose order parameters (W_hat^T W_hat / n, V) stay within
# a band of width max(10 tol, 1/sqrt(n)) over _WINDOW iterations, after at least 2 _WINDOW, is stopped as
# ``stationary``. K = 1, 2 converge pointwise and unspecialized runs are never stopped that way: near
# alpha_alg AMP escapes the non-specialized state only after a long, slow plateau.
_WINDOW = 20
SPECIALIZED = 0.5


@dataclass(frozen=True)
class AMPConfig:
    """AMP settings. ``damping``: fraction of the old (W_hat, C) kept per iteration (0 by default:
    damping the estimates but not the Onsager term slows AMP and biases its fixed point, so use it
    only against oscillations); converged when
    the order parameters stop moving: max |change| of W_hat^T W_hat / n and of V below ``tol``
    (directions of W_hat that carry no overlap may keep drifting slowly without changing any
    prediction); ``start``: ``random`` (uninformed, std ``init_scale``) or ``informed`` (planted at
    overlap ``q0`` with the teacher); ``n_test``: fresh samples for the test error; ``n_u``: initial
    nodes of the common-factor rule (odd K >= 3, raised automatically)."""

    K: int = 2
    prior: str = "gaussian"
    activation: str = "sign"
    max_iter: int = 300
    tol: float = 5e-5
    damping: float = 0.0
    init_scale: float = 0.1
    n_test: int = 20_000
    start: str = "random"
    q0: float = 0.99
    n_u: int = 24

    def __post_init__(self) -> None:
        check_model(self.K, self.prior, self.activation)
        if self.K > 2 and self.K % 2 == 0:
            raise ValueError(f"K={self.K}: AMP for K >= 3 uses the committee-symmetric output channel, which needs "
                             "odd K (an even committee ties); use K = 1, 2 or an odd K <= 11")
        if self.K > K_MAX:
            raise ValueError(f"K={self.K}: AMP is implemented for K = 1, 2 and odd K <= {K_MAX}")
        if self.start not in STARTS:
            raise ValueError(f"start={self.start!r}: choose one of {', '.join(STARTS)}")
        if not (0.0 < self.q0 < 1.0):
            raise ValueError(f"q0={self.q0} (overlap of the informed start) must lie in (0, 1)")
        if self.n_u < 8:
            raise ValueError(f"n_u={self.n_u} must be >= 8")
        if self.max_iter < 1:
            raise ValueError(f"max_iter={self.max_iter} must be >= 1")
        if not (0.0 < self.tol < 1.0):
            raise ValueError(f"tol={self.tol} must lie in (0, 1)")
        if not (0.0 <= self.damping < 1.0):
            raise ValueError(f"damping={self.damping} must lie in [0, 1)")
        if not (self.init_scale > 0):
            raise ValueError(f"init_scale={self.init_scale} must be > 0")
        if self.n_test < 100:
            raise ValueError(f"n_test={self.n_test} must be >= 100 fresh samples")


@dataclass(frozen=True)
class AMPResult:
    """One AMP run. ``Q`` (K, K) aligned overlap W_hat^T W* / n; ``Q_self`` = W_hat^T W_hat / n in the
    same unit order (equal to Q at a Bayes-optimal fixed point: Nishimori); ``eps_test``: test error on
    ``n_test`` fresh samples; ``eps_plugin``/``eps_gibbs``: the closed forms at the measured Q;
    ``seconds``/``cpu_seconds``: wall-clock and process CPU time of the iterations (not of the test
    error); ``history`` (n_iter, 2): order-parameter change and mean overlap trace / K per iteration;
    ``converged``: the change fell below ``tol``; ``stationary``: stopped on the plateau band instead."""

    alpha: float
    n: int
    seed: int
    start: str
    Q: np.ndarray
    Q_self: np.ndarray
    q_d: float
    q_a: float
    eps_test: float
    eps_plugin: float
    eps_gibbs: float
    n_iter: int
    converged: bool
    stationary: bool
    final_change: float
    seconds: float
    cpu_seconds: float
    history: np.ndarray


def _times(X: np.ndarray, W: np.ndarray) -> np.ndarray:
    """X (m, n) float32 times W (n, K) -> (m, K) float64, one matrix-vector product per column.

    For K <= 2 BLAS gemv streams X at memory bandwidth while a skinny K-column gemm does not
    (measured ~1.7x here on X of 800 MB); AMP's cost is these two passes over X per iteration.
    """
    return np.stack([X @ np.ascontiguousarray(W[:, k], dtype=np.float32) for k in range(W.shape[1])], axis=1
                    ).astype(np.float64)


def _times_transposed(X: np.ndarray, G: np.ndarray) -> np.ndarray:
    """X^T G for X (m, n) float32 and G (m, K) -> (n, K) float64, one vector-matrix product per column."""
    return np.stack([np.ascontiguousarray(G[:, k], dtype=np.float32) @ X for k in range(G.shape[1])], axis=1
                    ).astype(np.float64)


def _best_permutation(Q: np.ndarray) -> list[int]:
    """Order of student units (rows of Q) that maximises the trace of the overlap (an assignment problem)."""
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(-Q)
    order = np.empty(Q.shape[0], dtype=int)
    order[cols] = rows
    return order.tolist()


def _align(Q: np.ndarray) -> np.ndarray:
    return Q[_best_permutation(Q)]


def fresh_test_error(W_hat: np.ndarray, data: CommitteeData, n_test: int, rng: np.random.Generator) -> float:
    """(1/4) mean (y - y_hat)^2 of y_hat = phi(x W_hat / sqrt(n)) on fresh inputs, in chunks."""
    n, K = data.W_star.shape
    total, done = 0.0, 0
    while done < n_test:
        rows = min(4096, n_test - done)
        X = rng.standard_normal((rows, n), dtype=np.float32)
        H = (X @ np.concatenate([data.W_star, W_hat], axis=1).astype(np.float32)).astype(np.float64)
        diff = committee_output(H[:, :K]) - committee_output(H[:, K:])
        total += float(np.sum(diff * diff)) / 4.0
        done += rows
    return total / n_test


def _check_size(n: int, alpha: float) -> None:
    if n < MIN_N:
        raise ValueError(f"n={n} is too small for AMP; use n >= {MIN_N} (n >= 1000 to compare with SE)")
    if not np.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"alpha={alpha} must be a positive number of samples per parameter")
    if n < WARN_N:
        warnings.warn(
            f"n={n}: finite-size effects of order 1/sqrt(n) dominate; AMP is compared with state "
            f"evolution only for n >= {WARN_N} (1000+ recommended)",
            UserWarning,
            stacklevel=3,
        )


class _SymmetricChannel:
    """g_out of the odd-K committee, with the common-factor rule refined until a probe of samples agrees
    with a 1.5x finer rule to ``_G_RTOL`` (the node count only grows during a run)."""

    def __init__(self, n_u: int):
        self.n_u = n_u

    def __call__(self, y: np.ndarray, omega: np.ndarray, V: np.ndarray) -> np.ndarray:
        probe = slice(0, min(_PROBE, len(y)))
        while True:
            fine = int(math.ceil(1.5 * self.n_u))
            a = g_out_symmetric(y[probe], omega[probe], V, self.n_u)
            b = g_out_symmetric(y[probe], omega[probe], V, fine)
            if np.max(np.abs(a - b)) <= _G_RTOL * max(float(np.max(np.abs(b))), 1e-300) or fine > _N_U_MAX:
                break
            self.n_u = fine
        return g_out_symmetric(y, omega, V, self.n_u)


def _start(data: CommitteeData, config: AMPConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(W_hat, C) at the start: random, or planted at overlap q0 (Q = q0 I, W^T W / n = q0, V = (1 - q0) I)."""
    n, K = data.n, data.K
    if config.start == "random":
        return config.init_scale * rng.standard_normal((n, K)), np.eye(K)
    q0 = config.q0
    W = q0 * data.W_star + math.sqrt(q0 * (1.0 - q0)) * rng.standard_normal((n, K))
    return W, (1.0 - q0) * np.eye(K)


def run_amp(data: CommitteeData, config: AMPConfig, *, seed: int = 0) -> AMPResult:
    """Run AMP on one instance from the configured start (random draws from ``seed``)."""
    if data.K != config.K or data.prior != config.prior:
        raise ValueError(f"data has K={data.K}, prior={data.prior}; config has K={config.K}, prior={config.prior}")
    _check_size(data.n, data.alpha)
    start, cpu_start = time.perf_counter(), time.process_time()
    rng = np.random.default_rng([seed, 1])
    n, m, K = data.n, data.m, data.K
    sqrt_n = math.sqrt(n)
    X = data.X  # (m, n) float32
    W, C = _start(data, config, rng)  # C: mean posterior covariance; AMP only needs the mean for i.i.d. X
    symmetric = _SymmetricChannel(config.n_u) if K >= 3 else None
    g_prev = np.zeros((m, K))
    history, params = [], []
    band = max(10.0 * config.tol, 1.0 / sqrt_n)
    converged, stationary, change = False, False, math.inf
    for it in range(config.max_iter):
        V = 0.5 * (C + C.T)
        if symmetric is not None:  # the channel sees the symmetric part; the Onsager term must use the same V
            v_d, b = symmetric_projection(V)
            V = v_d * np.eye(K) + b
        omega = _times(X, W) / sqrt_n - g_prev @ V  # (m, K)
        if symmetric is None:
            g, dg = g_out(data.y, omega, V)
            A = -dg.sum(axis=0) / n
        else:
            g = symmetric(data.y, omega, V)
            a_d, a_b = symmetric_projection(g.T @ g / n)
            A = a_d * np.eye(K) + a_b
        vals, vecs = np.linalg.eigh(0.5 * (A + A.T))
        A = (vecs * np.clip(vals, 0.0, None)) @ vecs.T  # E[-dg] = E[g g^T] >= 0 at the fixed point
        B = _times_transposed(X, g) / sqrt_n + W @ A  # (n, K)
        W_new, C_new, _ = prior_denoise(config.prior, A, B)
        C_new = C_new.mean(axis=0) if C_new.ndim == 3 else C_new
        W_next = config.damping * W + (1.0 - config.damping) * W_new
        C_next = config.damping * C + (1.0 - config.damping) * C_new
        change = max(float(np.max(np.abs(W_next.T @ W_next - W.T @ W))) / n, float(np.max(np.abs(C_next - C))))
        W, C = W_next, C_next
        g_prev = g
        history.append((change, float(np.trace(_align(W.T @ data.W_star / n))) / K))
        if change < config.tol or float(np.trace(C)) / K < COLLAPSED:
            converged = True
            break
        params.append(np.concatenate([(W.T @ W).ravel() / n, C.ravel()]))
        if symmetric is not None and it + 1 >= 2 * _WINDOW and project_overlap(W.T @ W / n)[0] >= SPECIALIZED:
            recent = np.array(params[-_WINDOW:])
            if float(np.max(recent.max(axis=0) - recent.min(axis=0))) < band:
                stationary = True
                break
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    perm = _best_permutation(W.T @ data.W_star / n)
    W_aligned = W[:, perm]
    Q = W_aligned.T @ data.W_star / n
    q_d, q_a = project_overlap(Q)
    eps_test = fresh_test_error(W, data, config.n_test, np.random.default_rng([seed, 2]))
    return AMPResult(
        alpha=data.alpha, n=n, seed=seed, start=config.start, Q=Q, Q_self=W_aligned.T @ W_aligned / n, q_d=q_d, q_a=q_a,
        eps_test=eps_test,
        eps_plugin=plugin_error(0.5 * (Q + Q.T)), eps_gibbs=gibbs_error(0.5 * (Q + Q.T)), n_iter=len(history),
        converged=converged, stationary=stationary, final_change=change, seconds=seconds, cpu_seconds=cpu_seconds,
        history=np.array(history),
    )


@dataclass(frozen=True)
class AMPSummary:
    """AMP over several seeds at one (alpha, n): means and standard errors across seeds."""

    alpha: float
    n: int
    runs: tuple[AMPResult, ...]

    def _stat(self, attr: str) -> tuple[float, float]:
        v = np.array([getattr(r, attr) for r in self.runs], dtype=float)
        err = float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else math.nan
        return float(v.mean()), err

    @property
    def eps_test(self) -> tuple[float, float]:
        return self._stat("eps_test")

    @property
    def q_d(self) -> tuple[float, float]:
        return self._stat("q_d")

    @property
    def q_a(self) -> tuple[float, float]:
        return self._stat("q_a")

    @property
    def eps_gibbs(self) -> tuple[float, float]:
        return self._stat("eps_gibbs")

    @property
    def Q(self) -> np.ndarray:
        return np.mean([r.Q for r in self.runs], axis=0)

    @property
    def all_converged(self) -> bool:
        return all(r.converged for r in self.runs)

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame([
            {"alpha": r.alpha, "n": r.n, "seed": r.seed, "start": r.start, "q_d": r.q_d, "q_a": r.q_a,
             **{f"Q{a}{b}": float(r.Q[a, b]) for a in range(r.Q.shape[0]) for b in range(r.Q.shape[0])},
             "eps_test": r.eps_test, "eps_plugin": r.eps_plugin, "eps_gibbs": r.eps_gibbs,
             "n_iter": r.n_iter, "converged": r.converged, "stationary": r.stationary,
             "final_change": r.final_change, "seconds": r.seconds}
            for r in self.runs
        ])


def amp_over_seeds(
    alpha: float, n: int, seeds: Sequence[int], config: AMPConfig = AMPConfig(), *, progress=None
) -> AMPSummary:
    """Run AMP on one fresh instance per seed (teacher, data and start all drawn from the seed)."""
    seeds = list(seeds)
    if not seeds:
        raise ValueError("give at least one seed")
    _check_size(n, alpha)
    runs = []
    for s in seeds if progress is None else progress(seeds):
        data = generate(n, alpha, config.K, config.prior, seed=np.random.default_rng([s, 0]),
                        activation=config.activation)
        runs.append(run_amp(data, config, seed=s))
    return AMPSummary(alpha=float(alpha), n=int(n), runs=tuple(runs))
