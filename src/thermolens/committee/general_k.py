"""Committee-symmetric state evolution of the sign committee for odd K = 1, 3, ..., 11.

Aubin et al. (2018), arXiv:1806.05451, committee-symmetric ansatz: Q = q_d I_K + (q_a / K) 1 1^T and
the same form for R_hat. Both are diagonal in the basis {1/sqrt(K), its orthogonal complement}; the
eigenvalues are q_perp = q_d (K - 1 directions) and q_par = q_d + q_a (the 1 direction), so the
replica formula (Theorem 1) reduces to two scalars:

* prior side: Gaussian prior in closed form, q = r / (1 + r) for each eigenvalue and
  psi_P0 = [(K - 1)(r_perp - log(1 + r_perp)) + r_par - log(1 + r_par)] / 2; Rademacher prior by the
  exact sum over sign vectors (grouped by their number of +1 entries) and a multiset rule over the
  units' teacher signs and noise (``rademacher_symmetric_prior``);
* output side: with omega ~ N(0, Q), z | omega ~ N(omega, V), V = I - Q = v_d I - c 1 1^T
  (v_d = 1 - q_d, c = q_a / K >= 0), Z(+1 | omega) = P(#{l: z_l > 0} > K/2). The noise is
  equicorrelated with a NEGATIVE common part, so it is written with an imaginary common factor:
  z_l = omega_l + sqrt(v_d) eps_l + i sqrt(c) u, u ~ N(0, 1). Given u the units are independent
  with p_l(u) = Phi((omega_l + i sqrt(c) u) / sqrt(v_d)) and the count is Poisson-binomial. Every
  orthant probability is analytic in the common variance, so E_u of the multilinear Poisson-binomial
  tail continues from c < 0 (real factor) to c > 0 as long as kappa = K c / v_d = q_a / (1 - q_d) < 1,
  i.e. V > 0. The u-integrand grows like exp(kappa u^2 / 2); the substitution u = x / sqrt(1 - kappa)
  makes it O(1) and Gauss-Hermite in x then converges (cancellation costs a factor ~ 1 / sqrt(1 - kappa)
  in precision).
* The outer expectation over omega ~ N(0, Q) uses omega_l = sqrt(q_d) xi_l + sqrt(c) eta exactly
  (eta, xi_l i.i.d. N(0, 1)): Gauss-Hermite over eta, and given eta a tensor rule over the i.i.d.
  xi_l taken once per multiset of 1-d nodes (the integrand is symmetric in the units), with
  multisets of negligible weight dropped. Given (eta, u) the per-unit factors depend on one node
  each, so the Poisson-binomial count is obtained from per-node logarithms by a discrete Fourier
  transform over the (K+1)-th roots of unity (see ``symmetric_output``); the multiset sums run in a
  compiled kernel (``_multiset``). Specialized states (q_d >= 1/2) need a sinh-map rule with ~25 nodes
  per unit (~1e6 multisets at K = 5, ~1 s per evaluation after decided units are merged).

Psi_out = E_omega sum_y Z log Z; E[g_out g_out^T] = m_d I + (m_a/K) 1 1^T, whose eigenvalues give
R_hat = alpha E[g g^T]. Free entropy (total, not per unit)
f = psi_P0 + alpha Psi_out - [(K - 1) q_perp r_perp + q_par r_par] / 2.
Generalization error: Monte Carlo of the Gibbs student (``generalization.gibbs_error``).
"""

from __future__ import annotations

import concurrent.futures
import functools
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import log_ndtr, roots_hermitenorm

from thermolens.committee._multiset import output_sums, rademacher_prior_sums
from thermolens.committee.generalization import gibbs_error, plugin_error
from thermolens.committee.quadrature import prior_integrals, sinh_rule
from thermolens.committee.state_evolution import BRANCHES, FixedPoint, SECurve, equilibrium_branch

_KAPPA_MAX = 0.98  # beyond this the imaginary-factor integral loses too many digits
_K_MAX = 11
_PERFECT = 1e-9  # Rademacher prior: 1 - q below this on both eigenvalues is the perfect state Q = I (R_hat ~ 1e4)
_REACH = 7.0  # the xi rules cover |xi - centre| <= 7 (Gaussian weight < 1e-10 beyond)
_W_MIN = 1e-15  # multisets of the outer rule with a smaller total weight are dropped
_Z_MIN = 1e-13  # label probabilities below this carry no reliable digits (DFT cancellation ~1e-16)
# Gauss-Hermite nodes of the xi rule by q_d (upper bound of the bracket, nodes), measured for K = 5:
# each bracket's rule agrees with a rule of 20 nodes to ~1e-8 in m (docs/committee.md)
_XI_NODES = ((0.005, 4), (0.03, 6), (0.12, 8), (0.3, 12), (0.5, 20))
# Rademacher prior, K >= 3: Gauss-Hermite nodes of the common noise factor (1e-8 up to r_par = 20 at
# r_perp <= 0.3, K = 3) and of the per-unit noise by r_perp (bracket top, nodes; 1e-8 at r_par = 5,
# docs/committee.md); above the last bracket ``SymmetricConfig.prior_nodes``
_PRIOR_ETA = 64
_PRIOR_XI = ((0.0, 1), (0.01, 6), (0.1, 12), (0.3, 16))
_R_DECIDED = 100.0  # Rademacher prior: above this on both eigenvalues of R_hat the posterior is w* (symmetric_prior)


@dataclass(frozen=True)
class SymmetricConfig:
    """Settings of the committee-symmetric state evolution. ``K`` odd, 1 <= K <= 11; ``prior`` gaussian
    or binary; ``n_eta``: Gauss-Hermite nodes of the common Gaussian factor
    of omega; ``xi_scale``: multiplies the per-unit Gauss-Hermite node counts (q_d < 1/2); ``step``:
    sinh-rule step of the per-unit rule for q_d >= 1/2 (None: 0.2 for K <= 3, 0.3 for K >= 5); ``n_prior``:
    Rademacher prior, Gauss-Hermite nodes per unit at large r_perp (None: 1000 for K = 1, 48 for K = 3, 24);
    ``n_u``: Gauss-Hermite nodes of the common noise factor at kappa = 0 (scaled by 1/(1 - kappa));
    ``tol``: fixed-point residual max |F(q) - q| over (q_perp, q_par)."""

    K: int = 3
    prior: str = "gaussian"
    activation: str = "sign"
    tol: float = 1e-9
    max_iter: int = 300
    n_eta: int = 12
    xi_scale: float = 1.0
    n_u: int = 12
    n_prior: int | None = None
    q0: float = 1e-3
    step: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.K, bool) or not isinstance(self.K, (int, np.integer)) or self.K < 1 or self.K % 2 == 0 \
                or self.K > _K_MAX:
            raise ValueError(f"K={self.K}: the committee-symmetric equations are implemented for odd K = 1, 3, ..., 11 "
                             "(even K ties: use K = 2 with SEConfig; larger K: use large_k_state_evolution)")
        if self.prior not in ("gaussian", "binary"):
            raise ValueError(f"prior={self.prior!r}: choose gaussian or binary")
        if self.activation != "sign":
            raise ValueError(f"activation={self.activation!r}: only the sign committee is implemented")
        if not (0.0 < self.tol <= 1e-6):
            raise ValueError(f"tol={self.tol} must lie in (0, 1e-6]")
        if self.max_iter < 1:
            raise ValueError(f"max_iter={self.max_iter} must be >= 1")
        if self.n_eta < 4 or self.n_eta % 2:
            raise ValueError(f"n_eta={self.n_eta} must be even and >= 4 (an even rule has no node at 0)")
        if not (0.5 <= self.xi_scale <= 4.0):
            raise ValueError(f"xi_scale={self.xi_scale} must lie in [0.5, 4]")
        if self.n_prior is not None and self.n_prior < 8:
            raise ValueError(f"n_prior={self.n_prior} must be >= 8")
        if self.n_u < 6:
            raise ValueError(f"n_u={self.n_u} must be >= 6")
        if self.step is not None and not (0.05 <= self.step <= 0.5):
            raise ValueError(f"step={self.step} must lie in [0.05, 0.5]")
        if not (0.0 < self.q0 < 0.5):
            raise ValueError(f"q0={self.q0} (uninformed start) must lie in (0, 0.5)")

    @property
    def prior_nodes(self) -> int:
        """Rademacher prior: Gauss-Hermite nodes of the K = 1 integral (quadrature.prior_integrals), or per unit
        above the last ``_PRIOR_XI`` bracket for K >= 3 (``rademacher_symmetric_prior``)."""
        if self.n_prior is not None:
            return self.n_prior
        return {1: 1000, 3: 48}.get(self.K, 24)

    @property
    def sinh_step(self) -> float:
        if self.step is not None:
            return self.step
        return 0.2 if self.K <= 3 else 0.3

    def eta_nodes(self, kappa: float) -> int:
        """Gauss-Hermite nodes of the common factor eta. Along 1 the label noise has variance
        (1 - q_d)(1 - kappa): the integrand's step in eta sharpens like sqrt(1 - kappa), and Gauss-Hermite
        needs ~1/(1 - kappa) nodes (measured: 80 nodes give 1e-8 at kappa = 0.9)."""
        n = max(self.n_eta, int(math.ceil(self.n_eta * 2.0 / (3.0 * (1.0 - kappa)))))
        return n + n % 2

    def u_nodes(self, kappa: float) -> int:
        """Gauss-Hermite nodes (even) of the common noise factor: the u-integrand oscillates more as
        kappa -> 1 (measured: ~100 nodes for 1e-8 at kappa = 0.9, ~25 at kappa = 0.57)."""
        n = max(8, int(math.ceil(self.n_u / (1.0 - kappa))))
        return n + n % 2

    def n_xi(self, q_d: float) -> int:
        """Gauss-Hermite nodes per unit for 0 < q_d < 1/2 (even, so that no node sits at xi = 0)."""
        n = next(n for top, n in _XI_NODES if q_d <= top)
        n = int(math.ceil(self.xi_scale * n))
        return n + n % 2


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


def _multisets(log_w: np.ndarray, K: int) -> tuple[np.ndarray, np.ndarray]:
    """Multisets of K nodes of a 1-d rule with log weights ``log_w`` (n,) whose orbit weight
    prod_l w_l * K! / prod_j m_j! exceeds ``_W_MIN`` (orbit weights sum to 1): indices (N, K), sorted,
    and log orbit weights (N,). Built one unit at a time, dropping partial multisets that cannot reach
    the threshold even with the largest weight for every remaining unit."""
    n = len(log_w)
    top = float(np.max(log_w))
    cut = math.log(_W_MIN) - math.lgamma(K + 1)
    idx = np.arange(n)[:, None]
    lw = log_w.copy()
    for k in range(1, K):
        last = idx[:, -1]
        counts = n - last
        rows = np.repeat(np.arange(len(idx)), counts)
        nxt = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts - last, counts)  # j = last .. n-1
        lw = lw[rows] + log_w[nxt]
        idx = np.concatenate([idx[rows], nxt[:, None]], axis=1)
        keep = lw + (K - 1 - k) * top > cut
        idx, lw = idx[keep], lw[keep]
    # orbit size K! / prod_j m_j! from the runs of equal sorted indices
    log_mult = np.full(len(idx), math.lgamma(K + 1))
    run = np.ones(len(idx))
    for j in range(1, K):
        same = idx[:, j] == idx[:, j - 1]
        run = np.where(same, run + 1.0, 1.0)
        log_mult -= np.where(same, np.log(run), 0.0)
    lw = lw + log_mult
    keep = lw > math.log(_W_MIN)
    return idx[keep], lw[keep]


@functools.lru_cache(maxsize=64)
def _gh(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Hermite nodes and weights for E over N(0, 1) (read-only, cached)."""
    x, w = roots_hermitenorm(n)
    w = w / math.sqrt(2.0 * math.pi)
    x.setflags(write=False)
    w.setflags(write=False)
    return x, w


def _xi_rule(q_d: float, shift: float, config: SymmetricConfig) -> tuple[np.ndarray, np.ndarray]:
    """1-d rule (x, w) for E over xi ~ N(0, 1) of the unit variable, omega_l = sqrt(q_d) xi_l + shift.

    q_d = 0: one node (omega does not depend on xi). q_d < 1/2: Gauss-Hermite with a node count growing
    with q_d (the integrand varies on the scale sqrt((1 - q_d) / q_d) in xi). q_d >= 1/2: sinh-map
    trapezoid rule centred on the plane omega_l = 0 (xi = -shift / sqrt(q_d)), spacing
    ~ sqrt((1 - q_d) / q_d) * step there, times the Gaussian weight."""
    if q_d == 0.0:
        return np.zeros(1), np.ones(1)
    if q_d < 0.5:
        return _gh(config.n_xi(q_d))
    x0 = -shift / math.sqrt(q_d)
    x, w = sinh_rule(x0, min(1.0, math.sqrt((1.0 - q_d) / q_d)), _REACH + abs(x0), config.sinh_step)
    w = w * np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
    keep = w > 1e-18 * w.max()
    return x[keep], w[keep]


def _merge_saturated(log_h: np.ndarray, dlog_h: np.ndarray, log_w: np.ndarray):
    """Merge the nodes at either end of the unit rule whose unit is decided (p = 0 or 1 to rounding: the
    same factors as the end node and a negligible derivative) into one node carrying their total
    weight. Exact to rounding, since the multiset rule only sees the factors; near the perfect state
    (1 - q_d ~ 1e-8) it leaves a handful of nodes out of ~70."""
    tiny = 1e-15 * max(float(np.max(np.abs(dlog_h))), 1e-300)
    drop = np.zeros(len(log_w), dtype=bool)
    log_w = log_w.copy()
    for end in (0, len(log_w) - 1):
        same = (np.max(np.abs(log_h - log_h[end]), axis=1) < 1e-15) & (np.max(np.abs(dlog_h), axis=1) <= tiny)
        same &= ~drop
        if same[end] and same.sum() > 1:
            log_w[end] = float(np.logaddexp.reduce(log_w[same]))
            drop |= same
            drop[end] = False
    keep = ~drop
    return log_h[keep], dlog_h[keep], log_w[keep]


def n_outer_nodes(q_d: float, q_a: float, config: SymmetricConfig) -> int:
    """Number of outer nodes (eta nodes x multisets of K xi nodes) ``symmetric_output`` uses at (q_d, q_a)."""
    etas = _gh(config.eta_nodes(q_a / (1.0 - q_d)))[0] if q_a > 0 else np.zeros(1)
    c = q_a / config.K
    return sum(len(_multisets(np.log(_xi_rule(q_d, math.sqrt(c) * e, config)[1]), config.K)[0]) for e in etas)


def symmetric_output(q_d: float, q_a: float, config: SymmetricConfig) -> tuple[float, float, float]:
    """(Psi_out, m_perp, m_par): Psi_out = E sum_y Z log Z and the eigenvalues of E[g g^T] at
    Q = q_d I + (q_a / K) 1 1^T (V = I - Q).

    Outer expectation: omega_l = sqrt(q_d) xi_l + sqrt(c) eta (c = q_a / K) has covariance Q exactly,
    with eta and the xi_l independent N(0, 1). eta: Gauss-Hermite (``eta_nodes(kappa)``). Given eta the units
    are i.i.d. and the integrand is symmetric in them, so the K-dimensional xi rule is the tensor
    product of a 1-d rule (``_xi_rule``) taken once per multiset of nodes, weighted by the multinomial
    coefficient.

    Inner expectation (common noise factor u, see the module docstring): given u the count of positive
    units has the generating function G(t) = prod_l (f_l + p_l t); its coefficients follow from G at the
    (K+1)-th roots of unity t = w^k (a discrete Fourier transform), and G(w^k) = exp(sum_l log h_k(l))
    with h_k = f + p w^k, so every multiset needs only sums of per-node logarithms. The k = 0 term is
    exp(-K y^2 / 2) in closed form, and the (k, u), (K + 1 - k, -u) terms are complex conjugates, so
    only u > 0 and k >= 1 are summed. d G(w^k) / d omega_l = G(w^k) (w^k - 1) dens_l / h_k(l).
    """
    K = config.K
    v_d = 1.0 - q_d
    if -1e-9 < q_a < 0.0:  # rounding of q_par - q_perp (both ~1 near the perfect state)
        q_a = 0.0
    if -1e-12 < q_d < 0.0:  # rounding of m_perp = 0 at the non-specialized point
        q_d, v_d = 0.0, 1.0
    kappa = q_a / v_d if v_d > 0 else math.inf
    if not (0.0 <= q_d < 1.0) or not (0.0 <= kappa <= _KAPPA_MAX):
        raise ValueError(f"overlap (q_d={q_d}, q_a={q_a}) outside the range covered: need 0 <= q_d < 1, q_a >= 0 "
                         f"and q_a / (1 - q_d) <= {_KAPPA_MAX}")
    c, sd = q_a / K, math.sqrt(v_d)
    # common factor u: Gauss-Hermite in x, u = x / sqrt(1 - kappa), only x > 0 (even node count)
    s = 1.0 / math.sqrt(1.0 - kappa)
    if c == 0.0:  # no common noise: every u gives the same integrand
        u, wu = np.ones(1), np.ones(1)
    else:
        xu, wu = _gh(config.u_nodes(kappa))
        u, wu = s * xu[xu > 0], 2.0 * s * wu[xu > 0]
    half_y2 = 0.5 * c * u * u / v_d  # each unit factor is divided by exp(y^2 / 2), see label_probability
    m = (K + 1) // 2
    k = np.arange(1, K + 1)
    root = np.exp(2j * math.pi * k / (K + 1))  # (K,) roots of unity w^k, k >= 1
    # P(count = j) = sum_k F[j, k] G(w^k); labels -1 (count < m) and +1 (count >= m)
    F = np.exp(-2j * math.pi * np.outer(np.arange(K + 1), k) / (K + 1)) / (K + 1)
    coef = np.stack([F[:m].sum(axis=0), F[m:].sum(axis=0)])  # (2, K)
    A = (coef[:, :, None] * wu[None, None, :]).reshape(2, -1)  # (2, K * n_u/2)
    Z0 = np.array([m, K + 1 - m]) / (K + 1) * float(np.sum(wu * np.exp(-K * half_y2)))  # k = 0 terms

    etas, w_eta = _gh(config.eta_nodes(kappa)) if c > 0 else (np.zeros(1), np.ones(1))

    def one_eta(eta: float) -> tuple[float, float, float]:
        x, w = _xi_rule(q_d, math.sqrt(c) * eta, config)
        omega = math.sqrt(q_d) * x + math.sqrt(c) * eta  # (n,) unit pre-activation at each node
        arg = (omega[:, None] + 1j * math.sqrt(c) * u[None, :]) / sd  # (n, n_u/2)
        up = np.exp(log_ndtr(arg) - half_y2)
        down = np.exp(log_ndtr(-arg) - half_y2)
        dens = np.exp(-0.5 * arg * arg - half_y2) / (math.sqrt(2.0 * math.pi) * sd)
        h = down[:, None, :] + up[:, None, :] * root[None, :, None]  # (n, K, n_u/2)
        log_h = np.log(h).reshape(len(x), -1)
        dlog_h = (dens[:, None, :] * (root[None, :, None] - 1.0) / h).reshape(len(x), -1)
        return output_sums(*_merge_saturated(log_h, dlog_h, np.log(w)), K, A, Z0, _Z_MIN, math.log(_W_MIN))

    with concurrent.futures.ThreadPoolExecutor(max_workers=min(len(etas), os.cpu_count() or 1)) as pool:
        sums = np.array(list(pool.map(one_eta, etas)))
    psi, m_par, trace = w_eta @ sums
    m_par /= K
    if K == 1:
        return psi, math.nan, m_par
    return psi, (trace - m_par) / (K - 1), m_par


def symmetric_prior(r_perp: float, r_par: float, config: SymmetricConfig) -> tuple[float, float, float]:
    """Prior side at R_hat = r_perp (I - P) + r_par P, P = 1 1^T / K: (psi_P0, q_perp', q_par').

    Gaussian prior, closed form per eigenvalue: q = r / (1 + r), psi = sum (r - log(1 + r)) / 2.
    Rademacher prior: psi_P0 = E_{w*, xi} log E_w exp(-w^T R w / 2 + w^T (R w* + R^{1/2} xi)) and
    Q = E[f_w f_w^T] in its two eigenvalues; K = 1 by ``quadrature.prior_integrals`` (as the exact K = 1
    code), K >= 3 by ``rademacher_symmetric_prior``.
    """
    K = config.K
    if config.prior == "gaussian":
        psi = 0.5 * (r_par - math.log1p(r_par)) + 0.5 * (K - 1) * (r_perp - math.log1p(r_perp))
        return psi, r_perp / (1.0 + r_perp), r_par / (1.0 + r_par)
    if K == 1:
        psi, Q = prior_integrals("binary", np.array([[r_par]]), config.prior_nodes)
        return psi, float(Q[0, 0]), float(Q[0, 0])
    if min(r_perp, r_par) > _R_DECIDED:
        # every sign vector w != w* has log posterior ratio ~ N(-d^T R d / 2, d^T R d), d = w - w*, with
        # d^T R d >= 4 min(r): its weight is ~ exp(-min(r) / 2) < 1e-21 and psi_P0 = E[w*^T R w*] / 2 - K log 2
        return 0.5 * ((K - 1) * r_perp + r_par) - K * math.log(2.0), 1.0, 1.0
    return rademacher_symmetric_prior(r_perp, r_par, K, _PRIOR_ETA, _prior_xi_nodes(r_perp, config.prior_nodes))


def _prior_xi_nodes(r_perp: float, top: int) -> int:
    return next((n for bound, n in _PRIOR_XI if r_perp <= bound), top)


def rademacher_symmetric_prior(
    r_perp: float, r_par: float, K: int, n_eta: int, n_xi: int
) -> tuple[float, float, float]:
    """Rademacher prior at R_hat = r_perp (I - P) + r_par P, P = 1 1^T / K: (psi_P0, q_perp, q_par) by the
    multiset rule over units (w*_l, xi_l) (``_multiset.rademacher_prior_sums``).

    The channel noise R_hat^{1/2} xi has covariance r_perp I + (r_par - r_perp) P. For r_par > r_perp it is
    sqrt(r_perp) xi_l + sqrt((r_par - r_perp) / K) eta with a common eta (Gauss-Hermite, outer loop), so
    the units are i.i.d. given eta and one xi node suffices at r_perp = 0 (the uninformed branch); for
    r_par <= r_perp it is sqrt(r_perp) xi_l + (sqrt(r_par) - sqrt(r_perp)) mean(xi), a symmetric function of
    the units. Gauss-Hermite with ``n_eta`` and ``n_xi`` nodes."""
    if r_perp < 0.0 or r_par < 0.0:
        if min(r_perp, r_par) < -1e-9:
            raise ValueError(f"R_hat eigenvalues ({r_perp}, {r_par}) must be >= 0")
        r_perp, r_par = max(r_perp, 0.0), max(r_par, 0.0)  # rounding of m_perp = 0 at the non-specialized point
    x, w = _gh(n_xi) if n_xi > 1 else (np.zeros(1), np.ones(1))
    w_star = np.concatenate([np.ones(n_xi), -np.ones(n_xi)])
    xi = np.concatenate([x, x])
    log_w = np.log(np.concatenate([w, w]) / 2.0)
    if r_par > r_perp:  # noise along 1 from the common factor eta
        (etas, w_eta), shift_xi, scale = _gh(n_eta), 0.0, math.sqrt((r_par - r_perp) / K)
    else:  # from the units' mean (no shift at r_par = r_perp)
        (etas, w_eta), shift_xi, scale = (np.zeros(1), np.ones(1)), math.sqrt(r_par) - math.sqrt(r_perp), 0.0
    cut = math.log(_W_MIN)
    sums = np.array([rademacher_prior_sums(w_star, xi, log_w, K, r_perp, r_par, shift_xi, scale * e, cut) for e in etas])
    psi, q_par, trace = w_eta @ (sums[:, :3] / sums[:, 3:])  # each rule normalised to the weight it kept
    return psi, min((trace - q_par) / (K - 1), 1.0), min(q_par, 1.0)  # |<w_l>| <= 1: clip the rounding


def symmetric_map(q: np.ndarray, alpha: float, config: SymmetricConfig) -> tuple[np.ndarray, np.ndarray, float]:
    """(q_perp, q_par) -> (new (q_perp, q_par), (r_perp, r_par), free entropy at (q, r)). K = 1: q_perp = q_par."""
    K = config.K
    q_perp, q_par = (float(q[1]), float(q[1])) if K == 1 else (float(q[0]), float(q[1]))
    psi_out, m_perp, m_par = symmetric_output(q_perp, q_par - q_perp, config)
    r_par = alpha * m_par
    r_perp = r_par if K == 1 else alpha * m_perp
    psi_in, new_perp, new_par = symmetric_prior(r_perp, r_par, config)
    f = psi_in + alpha * psi_out - 0.5 * ((K - 1) * q_perp * r_perp + q_par * r_par)
    return np.array([new_perp, new_par]), np.array([r_perp, r_par]), f


def _point(alpha, branch, q, r, f, residual, n_iter, converged, K, perfect=False) -> FixedPoint:
    if perfect:  # Rademacher prior: Q = I exactly, R_hat infinite, f = -K log 2 (state_evolution.py)
        I = np.eye(K)
        return FixedPoint(alpha, branch, I, np.full((K, K), np.inf), 1.0, 0.0, -K * math.log(2.0), 0.0, 0.0,
                          residual, n_iter, True, True, True)
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
    informed q_d = 0.99, q_a = 0 (Q near the teacher's I); Rademacher prior 1 - 1e-8 (Q = I is then
    an exact, locally stable fixed point: state_evolution.py)."""
    if branch == "uninformed":
        return np.array([1e-5, 1e-5 + config.q0])
    if branch == "informed":
        top = 1.0 - 1e-8 if config.prior == "binary" else 0.99
        return np.array([top, top])
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
        if config.prior == "binary" and 1.0 - float(new[0]) < _PERFECT and 1.0 - float(new[1]) < _PERFECT:
            return _point(alpha, branch, new, r, f, 1.0 - float(np.min(new)), it, True, K, perfect=True)
        if residual <= config.tol:
            return _point(alpha, branch, q, r, f, residual, it, True, K)
        q = new
        if it % 10 == 0 and residual < 1e-3 and q[0] > 1e-6:
            def G(t):
                if not (0.0 <= t[0] <= t[1] < 1.0) or t[1] - t[0] > _KAPPA_MAX * (1.0 - t[0]):
                    # outside the range covered: push the solver back
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
        if p is not None and p.converged and not p.perfect:
            start = np.array([p.q_d, p.q_d + p.q_a])
            if name == "uninformed":
                start += 1e-5
        point = solve_symmetric(float(alpha[i]), config, branch=name, q0=start)
        out[name][i] = prev[name] = point
    eq = tuple(equilibrium_branch(u, f) for u, f in zip(out["uninformed"], out["informed"]))
    return SECurve(config, alpha, tuple(out["uninformed"]), tuple(out["informed"]), eq)
