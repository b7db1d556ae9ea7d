"""Approximate message passing for the committee machine on finite instances (K = 1, 2).

The vector-valued GAMP of Aubin et al. (2018), arXiv:1806.05451, Sec. 4 (after Rangan 2011,
arXiv:1010.5141), for y = phi(X W* / sqrt(n)), with K x K matrices in place of scalar variances:

    V      = mean_i C_i                                            (K x K)
    omega  = X W_hat / sqrt(n) - g_prev V                          (m x K, Onsager-corrected)
    g, dg  = g_out(y, omega, V), its omega-Jacobian                (m x K, m x K x K)
    A      = -(1/n) sum_mu dg_mu                                   (K x K)
    B      = X^T g / sqrt(n) + W_hat A                             (n x K)
    W_hat, C = posterior mean and covariance of P0(w) exp(B.w - w^T A w / 2)

with damping on (W_hat, C). Its fixed points and its trajectory are predicted by state evolution
(``thermolens.committee.state_evolution``): A <-> R_hat, V <-> I - Q. The overlap reported is
Q = W_hat^T W* / n after matching student to teacher units (the committee is invariant under
their permutation); the test error is that of y_hat = phi(x W_hat / sqrt(n)) on fresh samples.
"""

from __future__ import annotations

import itertools
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from thermolens.committee.channels import g_out, prior_denoise
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


@dataclass(frozen=True)
class AMPConfig:
    """AMP settings. ``damping``: fraction of the old (W_hat, C) kept per iteration (0 by default:
    damping the estimates but not the Onsager term slows AMP and biases its fixed point, so use it
    only against oscillations); converged when
    the order parameters stop moving: max |change| of W_hat^T W_hat / n and of V below ``tol``
    (directions of W_hat that carry no overlap may keep drifting slowly without changing any
    prediction); ``init_scale``: std of the random start of W_hat (uninformed); ``n_test``: fresh
    samples for the test error."""

    K: int = 2
    prior: str = "gaussian"
    activation: str = "sign"
    max_iter: int = 300
    tol: float = 5e-5
    damping: float = 0.0
    init_scale: float = 0.1
    n_test: int = 20_000

    def __post_init__(self) -> None:
        check_model(self.K, self.prior, self.activation)
        if self.K > 2:
            raise ValueError(f"K={self.K}: AMP is implemented for K = 1, 2 (exact output channel)")
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
    error); ``history`` (n_iter, 2): order-parameter change and mean overlap trace / K per iteration."""

    alpha: float
    n: int
    seed: int
    Q: np.ndarray
    Q_self: np.ndarray
    q_d: float
    q_a: float
    eps_test: float
    eps_plugin: float
    eps_gibbs: float
    n_iter: int
    converged: bool
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
    """Order of student units (rows of Q) that maximises the trace of the overlap."""
    K = Q.shape[0]
    return list(max(itertools.permutations(range(K)), key=lambda p: float(np.trace(Q[list(p)]))))


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


def run_amp(data: CommitteeData, config: AMPConfig, *, seed: int = 0) -> AMPResult:
    """Run AMP on one instance from a random (uninformed) start drawn with ``seed``."""
    if data.K != config.K or data.prior != config.prior:
        raise ValueError(f"data has K={data.K}, prior={data.prior}; config has K={config.K}, prior={config.prior}")
    _check_size(data.n, data.alpha)
    start, cpu_start = time.perf_counter(), time.process_time()
    rng = np.random.default_rng([seed, 1])
    n, m, K = data.n, data.m, data.K
    sqrt_n = math.sqrt(n)
    X = data.X  # (m, n) float32
    W = config.init_scale * rng.standard_normal((n, K))
    C = np.eye(K)  # mean posterior covariance; AMP only needs the mean for i.i.d. Gaussian X
    g_prev = np.zeros((m, K))
    history = []
    converged, change = False, math.inf
    for _ in range(config.max_iter):
        V = 0.5 * (C + C.T)
        omega = _times(X, W) / sqrt_n - g_prev @ V  # (m, K)
        g, dg = g_out(data.y, omega, V)
        A = -dg.sum(axis=0) / n
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
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    perm = _best_permutation(W.T @ data.W_star / n)
    W_aligned = W[:, perm]
    Q = W_aligned.T @ data.W_star / n
    q_d, q_a = project_overlap(Q)
    eps_test = fresh_test_error(W, data, config.n_test, np.random.default_rng([seed, 2]))
    return AMPResult(
        alpha=data.alpha, n=n, seed=seed, Q=Q, Q_self=W_aligned.T @ W_aligned / n, q_d=q_d, q_a=q_a,
        eps_test=eps_test,
        eps_plugin=plugin_error(0.5 * (Q + Q.T)), eps_gibbs=gibbs_error(0.5 * (Q + Q.T)), n_iter=len(history),
        converged=converged, final_change=change, seconds=seconds, cpu_seconds=cpu_seconds,
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
            {"alpha": r.alpha, "n": r.n, "seed": r.seed, "q_d": r.q_d, "q_a": r.q_a,
             **{f"Q{a}{b}": float(r.Q[a, b]) for a in range(r.Q.shape[0]) for b in range(r.Q.shape[0])},
             "eps_test": r.eps_test, "eps_plugin": r.eps_plugin, "eps_gibbs": r.eps_gibbs,
             "n_iter": r.n_iter, "converged": r.converged, "final_change": r.final_change, "seconds": r.seconds}
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
