"""Committee-symmetric state evolution of the sign committee for finite K = 3 (Gaussian prior).

Aubin et al. (2018), arXiv:1806.05451, committee-symmetric ansatz: Q = q_d I_K + (q_a / K) 1 1^T and
the same form for R_hat. Both are diagonal in the basis {1/sqrt(K), its orthogonal complement}; the
eigenvalues are q_perp = q_d (K - 1 directions) and q_par = q_d + q_a (the 1 direction), so the
replica formula (Theorem 1) reduces to two scalars:

* prior side (Gaussian prior, closed form): q = r / (1 + r) for each eigenvalue and
  psi_P0 = [(K - 1)(r_perp - log(1 + r_perp)) + r_par - log(1 + r_par)] / 2;
* output side: with omega ~ N(0, Q), z | omega ~ N(omega, V), V = I - Q = v_d I - c 1 1^T
  (v_d = 1 - q_d, c = q_a / K >= 0), Z(+1 | omega) = P(#{l: z_l > 0} > K/2). The noise is
  equicorrelated with a NEGATIVE common part, so it is written with an imaginary common factor:
  z_l = omega_l + sqrt(v_d) eps_l + i sqrt(c) u, u ~ N(0, 1). Given u the units are independent
  with p_l(u) = Phi((omega_l + i sqrt(c) u) / sqrt(v_d)) and the count is Poisson-binomial (exact
  recursion over K). Every orthant probability is analytic in the common variance, so E_u of the
  multilinear Poisson-binomial tail continues from c < 0 (real factor) to c > 0 as long as
  kappa = K c / v_d = q_a / (1 - q_d) < 1, i.e. V > 0. The u-integrand grows like
  exp(kappa u^2 / 2); the substitution u = x / sqrt(1 - kappa) makes it O(1) and Gauss-Hermite in x
  then converges fast (cancellation costs only a factor ~ 1 / sqrt(1 - kappa) in precision).
* The outer expectation over omega ~ N(0, Q) is a tensor rule over one node per permutation orbit:
  Gauss-Hermite in omega = Q^{1/2} xi for q_d < 1/2, a sinh-map trapezoid rule in omega for
  q_d >= 1/2. Implemented for K = 1, 3 (K >= 5 would need a K-dimensional rule we have not made
  accurate; a Sobol rule gave only ~3e-4 for K = 5).

Psi_out = E_omega sum_y Z log Z; E[g_out g_out^T] = m_d I + (m_a/K) 1 1^T, whose eigenvalues give
R_hat = alpha E[g g^T]. Free entropy (total, not per unit)
f = psi_P0 + alpha Psi_out - [(K - 1) q_perp r_perp + q_par r_par] / 2.
Generalization error: Monte Carlo of the Gibbs student (``generalization.gibbs_error``).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import log_ndtr, roots_hermitenorm

from thermolens.committee.generalization import gibbs_error, plugin_error
from thermolens.committee.quadrature import gauss_hermite, psd_sqrt, sinh_rule
from thermolens.committee.state_evolution import BRANCHES, FixedPoint, SECurve, equilibrium_branch

_KAPPA_MAX = 0.98  # beyond this the imaginary-factor integral loses too many digits


@dataclass(frozen=True)
class SymmetricConfig:
    """Settings of the committee-symmetric state evolution. ``K`` in {1, 3}; ``n_outer``:
    Gauss-Hermite nodes per dimension of the omega integral (q_d < 1/2); ``step``: sinh-rule step
    of the omega integral (q_d >= 1/2); ``n_u``: Gauss-Hermite nodes of the common-factor
    integral; ``tol``: fixed-point residual max |F(q) - q| over (q_perp, q_par)."""

    K: int = 3
    prior: str = "gaussian"
    activation: str = "sign"
    tol: float = 1e-9
    max_iter: int = 300
    n_outer: int | None = None
    n_u: int = 32
    q0: float = 1e-3
    step: float = 0.2

    def __post_init__(self) -> None:
        if self.K not in (1, 3):
            raise ValueError(f"K={self.K}: the committee-symmetric equations are implemented for odd K = 1, 3 "
                             "(even K ties: use K = 2 with SEConfig; K >= 5 needs an outer K-dimensional "
                             "integral we have not made accurate: use large_k_state_evolution for large K)")
        if self.prior != "gaussian":
            raise ValueError(f"prior={self.prior!r}: finite-K committee-symmetric state evolution is implemented "
                             "for the gaussian prior only (binary: K = 1, 2 exact)")
        if self.activation != "sign":
            raise ValueError(f"activation={self.activation!r}: only the sign committee is implemented")
        if not (0.0 < self.tol <= 1e-6):
            raise ValueError(f"tol={self.tol} must lie in (0, 1e-6]")
        if self.max_iter < 1:
            raise ValueError(f"max_iter={self.max_iter} must be >= 1")
        if self.n_outer is not None and self.n_outer < 4:
            raise ValueError(f"n_outer={self.n_outer} must be >= 4")
        if self.n_u < 8:
            raise ValueError(f"n_u={self.n_u} must be >= 8")
        if not (0.0 < self.q0 < 0.5):
            raise ValueError(f"q0={self.q0} (uninformed start) must lie in (0, 0.5)")

    @property
    def outer(self) -> int:
        if self.n_outer is not None:
            return self.n_outer
        return 80 if self.K == 1 else 24


@functools.lru_cache(maxsize=16)
def _outer_rule(K: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes (N, K) and weights (N,) of E over N(0, I_K): tensor Gauss-Hermite, one node per orbit."""
    x, w = gauss_hermite(n, 1)
    return _symmetric_orbits(x[:, 0], w, K)


def _tail_and_grad(p: np.ndarray, f: np.ndarray, dp: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Poisson-binomial P(count >= m) (...) and its gradient (..., K) from success and failure weights
    ``p``, ``f`` (..., K) (probabilities up to a common factor per unit) with d p_l = -d f_l = dp_l.
    d P(count >= m) / d p_l = P(count of the others = m - 1)."""
    K = p.shape[-1]

    def counts(idx):
        dist = np.zeros(p.shape[:-1] + (K + 1,), dtype=p.dtype)
        dist[..., 0] = 1.0
        for n_done, l in enumerate(idx):
            new = dist * f[..., l, None]
            new[..., 1:n_done + 2] += dist[..., :n_done + 1] * p[..., l, None]
            dist = new
        return dist

    tail = counts(range(K))[..., m:].sum(axis=-1)
    grad = np.stack([counts([k for k in range(K) if k != l])[..., m - 1] * dp[..., l] for l in range(K)], axis=-1)
    return tail, grad


def label_probability(omega: np.ndarray, q_d: float, q_a: float, K: int, n_u: int = 40):
    """Z(y | omega) for y = -1, +1 (2, N) and its omega-gradient (2, N, K), V = (1 - q_d) I - (q_a/K) 1 1^T."""
    v_d = 1.0 - q_d
    if -1e-12 < q_a < 0.0:  # rounding of q_par - q_perp
        q_a = 0.0
    c = q_a / K
    kappa = K * c / v_d
    if v_d <= 0 or not (0.0 <= kappa <= _KAPPA_MAX):
        raise ValueError(f"overlap (q_d={q_d}, q_a={q_a}) outside the range covered: need q_a >= 0 and "
                         f"q_a / (1 - q_d) <= {_KAPPA_MAX}")
    n_u = int(math.ceil(n_u / math.sqrt(1.0 - kappa)))  # the oscillation in u grows with kappa
    x, w = roots_hermitenorm(n_u)
    w = w / math.sqrt(2.0 * math.pi)
    s = 1.0 / math.sqrt(1.0 - kappa)
    u = s * x
    # u = s x: phi(u) du = phi(x) s exp(-(s^2 - 1) x^2 / 2) dx. Every unit's factor grows like
    # exp(y^2 / 2), y = sqrt(c) u / sqrt(v_d); dividing each by it removes exp(K y^2 / 2) =
    # exp((s^2 - 1) x^2 / 2) from the product, which cancels the substitution's weight exactly.
    sd = math.sqrt(v_d)
    y = math.sqrt(c) * u / sd
    half_y2 = (0.5 * y * y)[None, :, None]
    arg = (omega[:, None, :] + 1j * math.sqrt(c) * u[None, :, None]) / sd  # (N, M, K)
    m = (K + 1) // 2
    dens = np.exp(-0.5 * arg * arg - half_y2) / (math.sqrt(2.0 * math.pi) * sd)
    up, down = np.exp(log_ndtr(arg) - half_y2), np.exp(log_ndtr(-arg) - half_y2)
    # each label from its own tail (+1: units positive; -1: units negative), so that a small label
    # probability comes from small integrands and keeps its relative accuracy
    Zp, gp = _tail_and_grad(up, down, dens, m)
    Zm, gm = _tail_and_grad(down, up, -dens, m)
    wu = w * s
    Z = np.real(np.stack([Zm, Zp]) @ wu)
    dZ = np.real(np.einsum("lnmk,m->lnk", np.stack([gm, gp]), wu))
    return Z, dZ


def _symmetric_orbits(x: np.ndarray, w: np.ndarray, K: int) -> tuple[np.ndarray, np.ndarray]:
    """Tensor product of a 1-d rule (x, w) in K dimensions, one node per permutation orbit (weights
    summed over the orbit): valid because every integrand here is symmetric under permuting units."""
    idx = np.array(list(itertools.combinations_with_replacement(range(len(x)), K)))
    mult = np.array([math.factorial(K) / np.prod([math.factorial(list(c).count(j)) for j in set(c)]) for c in idx])
    return x[idx], np.prod(w[idx], axis=-1) * mult


def _omega_space_rule(K: int, q_d: float, q_par: float, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Nodes omega (N, K) and weights of E over N(0, Q) for a specialized Q (q_d >= 1/2): a tensor
    sinh-map trapezoid rule in omega itself, dense (spacing ~ sqrt(1 - q_d) step) around the planes
    omega_l = 0 across which Z_out changes on the scale sqrt(1 - q_d), times the Gaussian density."""
    x, w = sinh_rule(0.0, min(1.0, math.sqrt(1.0 - q_d)), 9.0, step)
    omega, wt = _symmetric_orbits(x, w, K)
    s1 = omega.sum(axis=1)
    quad = (np.sum(omega * omega, axis=1) - s1 * s1 / K) / q_d + s1 * s1 / (K * q_par)
    logdet = (K - 1) * math.log(q_d) + math.log(q_par)
    dens = np.exp(-0.5 * quad - 0.5 * logdet - 0.5 * K * math.log(2.0 * math.pi))
    return omega, wt * dens


def _outer_nodes(q_d: float, q_a: float, config: SymmetricConfig) -> tuple[np.ndarray, np.ndarray]:
    K = config.K
    if K > 1 and q_d >= 0.5:
        return _omega_space_rule(K, q_d, q_d + q_a, config.step)
    xi, w = _outer_rule(K, config.outer)
    return xi @ psd_sqrt(q_d * np.eye(K) + (q_a / K) * np.ones((K, K))), w


def symmetric_output(q_d: float, q_a: float, config: SymmetricConfig) -> tuple[float, float, float]:
    """(Psi_out, m_perp, m_par): Psi_out = E sum_y Z log Z and the eigenvalues of E[g g^T]."""
    K = config.K
    omega, w = _outer_nodes(q_d, q_a, config)
    Z, dZ = label_probability(omega, q_d, q_a, K, config.n_u)
    ok = Z > 1e-280  # a label this improbable contributes nothing (Z log Z, |grad Z|^2 / Z -> 0)
    Zs = np.where(ok, Z, 1.0)
    psi = float(np.sum(w * np.where(ok, Z * np.log(Zs), 0.0).sum(axis=0)))
    fac = w * np.where(ok, 1.0 / Zs, 0.0)  # (2, N)
    m_par = float(np.sum(fac * dZ.sum(axis=-1) ** 2)) / K
    if K == 1:
        return psi, math.nan, m_par
    trace = float(np.sum(fac * np.sum(dZ * dZ, axis=-1)))
    return psi, (trace - m_par) / (K - 1), m_par


def symmetric_map(q: np.ndarray, alpha: float, config: SymmetricConfig) -> tuple[np.ndarray, np.ndarray, float]:
    """(q_perp, q_par) -> (new (q_perp, q_par), (r_perp, r_par), free entropy at (q, r)). K = 1: q_perp = q_par."""
    K = config.K
    q_perp, q_par = (float(q[1]), float(q[1])) if K == 1 else (float(q[0]), float(q[1]))
    psi_out, m_perp, m_par = symmetric_output(q_perp, q_par - q_perp, config)
    r_par = alpha * m_par
    r_perp = r_par if K == 1 else alpha * m_perp
    prior = 0.5 * (r_par - math.log1p(r_par)) + 0.5 * (K - 1) * (r_perp - math.log1p(r_perp))
    f = prior + alpha * psi_out - 0.5 * ((K - 1) * q_perp * r_perp + q_par * r_par)
    new = np.array([r_perp / (1.0 + r_perp), r_par / (1.0 + r_par)])
    return new, np.array([r_perp, r_par]), f


def _point(alpha, branch, q, r, f, residual, n_iter, converged, K) -> FixedPoint:
    if not converged:
        nan = np.full((K, K), np.nan)
        return FixedPoint(alpha, branch, nan, nan, math.nan, math.nan, math.nan, math.nan, math.nan, residual,
                          n_iter, False, False, None)
    q_d, q_a = float(q[0]), float(q[1] - q[0])
    ones = np.ones((K, K)) / K
    Q = q_d * np.eye(K) + q_a * ones
    R = r[0] * np.eye(K) + (r[1] - r[0]) * ones
    return FixedPoint(alpha, branch, Q, R, q_d, q_a, f, gibbs_error(Q), plugin_error(Q), residual, n_iter,
                      True, False, True)


def initial_state(branch: str, config: SymmetricConfig) -> np.ndarray:
    """(q_perp, q_par): uninformed q_d = 1e-5, q_a = q0 (the 1e-5 breaks the unit symmetry);
    informed q_d = 0.99, q_a = 0 (Q near the teacher's I)."""
    if branch == "uninformed":
        return np.array([1e-5, 1e-5 + config.q0])
    if branch == "informed":
        return np.array([0.99, 0.99])
    raise ValueError(f"unknown branch {branch!r}; choose one of {', '.join(BRANCHES)}")


def solve_symmetric(
    alpha: float, config: SymmetricConfig = SymmetricConfig(), *, branch: str = "uninformed",
    q0: np.ndarray | None = None,
) -> FixedPoint:
    """Iterate the committee-symmetric equations at ``alpha`` (plain iteration, with a Newton polish on
    the two scalars kept only when it lands within 100 residuals of the iterate)."""
    from scipy.optimize import root

    if not np.isfinite(alpha) or alpha < 0:
        raise ValueError(f"alpha={alpha} must be a finite number >= 0 (samples per input dimension)")
    q = initial_state(branch, config) if q0 is None else np.array(q0, dtype=float)
    K = config.K
    residual = math.inf
    for it in range(1, config.max_iter + 1):
        new, r, f = symmetric_map(q, alpha, config)
        residual = float(np.max(np.abs(new - q)))
        if residual <= config.tol:
            return _point(alpha, branch, q, r, f, residual, it, True, K)
        q = new
        if it % 10 == 0 and residual < 1e-3 and q[0] > 1e-6:
            def G(t):
                if not (0.0 <= t[0] <= t[1] < 1.0) or t[1] - t[0] > _KAPPA_MAX * (1.0 - t[0]):
                    return np.full(2, 1e3)
                return symmetric_map(t, alpha, config)[0] - t
            sol = root(G, q, method="hybr", options={"xtol": 1e-13})
            if sol.success and float(np.max(np.abs(sol.x - q))) < max(100 * residual, 1e-4):
                new, r, f = symmetric_map(sol.x, alpha, config)
                res = float(np.max(np.abs(new - sol.x)))
                if res <= config.tol:
                    return _point(alpha, branch, sol.x, r, f, res, it, True, K)
    return _point(alpha, branch, q, q, math.nan, residual, config.max_iter, False, K)


def symmetric_state_evolution(
    alphas: Sequence[float], config: SymmetricConfig = SymmetricConfig(), *, progress=None
) -> SECurve:
    """Both branches over ``alphas`` (uninformed continued upwards with a 1e-5 kick of q_d, informed
    downwards), equilibrium by free entropy. Returns the same ``SECurve`` as the K = 1, 2 code."""
    alpha = np.asarray(alphas, dtype=float)
    if alpha.ndim != 1 or alpha.size == 0 or np.any(~np.isfinite(alpha)) or np.any(alpha < 0):
        raise ValueError("alphas must be a non-empty 1-d sequence of finite values >= 0")
    n = alpha.size
    out: dict[str, list] = {"uninformed": [None] * n, "informed": [None] * n}
    order = [("uninformed", i) for i in range(n)] + [("informed", i) for i in reversed(range(n))]
    prev: dict[str, FixedPoint | None] = {"uninformed": None, "informed": None}
    for name, i in (order if progress is None else progress(order)):
        p = prev[name]
        start = None
        if p is not None and p.converged:
            start = np.array([p.q_d, p.q_d + p.q_a])
            if name == "uninformed":
                start += 1e-5
        point = solve_symmetric(float(alpha[i]), config, branch=name, q0=start)
        out[name][i] = prev[name] = point
    eq = tuple(equilibrium_branch(u, f) for u, f in zip(out["uninformed"], out["informed"]))
    return SECurve(config, alpha, tuple(out["uninformed"]), tuple(out["informed"]), eq)
