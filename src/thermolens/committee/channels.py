"""Channel functions of the committee machine: the sign-committee output channel and the two priors.

Notation of Aubin et al. (2018), arXiv:1806.05451, Sec. 3 (rho = E[w w^T] = I_K for both priors):

* Output channel. Given the student's estimate ``omega`` (K) of the pre-activations and the remaining
  covariance ``V`` (K x K), the true pre-activations are ``z ~ N(omega, V)`` and the label is
  ``y = phi(z)``. ``Z_out(y; omega, V) = P(phi(z) = y)``; ``g_out = grad_omega log Z_out`` and
  ``dg_out = Hessian_omega log Z_out`` are what AMP and state evolution use.
  K = 1: ``Z_out(y) = Phi(y omega / sqrt V)``.
  K = 2: ``y = (s_1 + s_2) / 2``; ``Z_out(+1)`` and ``Z_out(-1)`` are bivariate normal orthant
  probabilities, computed in closed form through Owen's T function (Owen 1956), and
  ``Z_out(0) = 1 - Z_out(+1) - Z_out(-1)``.
* Prior ("input") channel. Given ``A`` (K x K) and ``B`` (..., K) the posterior of one row is
  ``P(w) ~ P0(w) exp(B.w - w^T A w / 2)``; ``f_w`` is its mean and ``c_w`` its covariance.
  Gaussian prior: ``f_w = (I + A)^{-1} B``, ``c_w = (I + A)^{-1}``. Rademacher prior: exact sum over
  the 2^K sign vectors.

All functions are vectorised over leading axes and work in float64.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from scipy.special import ndtr, owens_t, roots_hermitenorm

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
# Label probabilities below this are treated as impossible: Owen's formula is accurate to ~1e-16 in
# absolute terms, so a smaller probability carries no reliable digits (used by g_out).
Z_FLOOR = 1e-13


def npdf(x: np.ndarray) -> np.ndarray:
    """Standard normal density; exactly 0 far in the tails (x^2 overflowing to inf is the right limit)."""
    with np.errstate(over="ignore"):
        return _INV_SQRT_2PI * np.exp(-0.5 * np.square(x))


# --------------------------------------------------------------------------------------------------
# bivariate normal


def bvn_cdf(h: np.ndarray, k: np.ndarray, rho: np.ndarray | float) -> np.ndarray:
    """P(X < h, Y < k) for standard bivariate normal (X, Y) with correlation ``rho`` in (-1, 1).

    Owen (1956): Phi2 = [Phi(h) + Phi(k)]/2 - T(h, a_h) - T(k, a_k) - [hk < 0]/2 with
    a_h = (k/h - rho)/sqrt(1 - rho^2), a_k = (h/k - rho)/sqrt(1 - rho^2). Absolute accuracy ~1e-16
    (scipy's Patefield-Tandy Owen's T). A zero argument is taken as the limit from above.
    """
    h, k, rho = np.broadcast_arrays(np.asarray(h, float), np.asarray(k, float), np.asarray(rho, float))
    s = np.sqrt(1.0 - rho * rho)
    hh = np.where(h == 0.0, 1e-300, h)
    kk = np.where(k == 0.0, 1e-300, k)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        a_h = (kk / hh - rho) / s
        a_k = (hh / kk - rho) / s
    a_h = np.nan_to_num(a_h, nan=0.0, posinf=1e300, neginf=-1e300)
    a_k = np.nan_to_num(a_k, nan=0.0, posinf=1e300, neginf=-1e300)
    beta = np.where((hh < 0) != (kk < 0), 0.5, 0.0)
    out = 0.5 * (ndtr(hh) + ndtr(kk)) - owens_t(hh, a_h) - owens_t(kk, a_k) - beta
    return np.clip(out, 0.0, 1.0)


# --------------------------------------------------------------------------------------------------
# output channel: Z_out and its omega-derivatives


def _output_k1(omega: np.ndarray, V: np.ndarray):
    """K = 1. omega (..., 1), V (1, 1). Returns labels (2,), Z (2, ...), dZ (2, ..., 1), d2Z (2, ..., 1, 1)."""
    sigma = math.sqrt(max(float(V[0, 0]), 1e-300))
    a = omega[..., 0] / sigma
    ys = np.array([-1.0, 1.0])
    Z = np.stack([ndtr(y * a) for y in ys])
    dens = npdf(a)
    dZ = np.stack([y * dens / sigma for y in ys])[..., None]
    d2Z = np.stack([-y * a * dens / sigma**2 for y in ys])[..., None, None]
    return ys, Z, dZ, d2Z


def _pp_derivs(a: np.ndarray, b: np.ndarray, rho: float, s: float):
    """P(za > -a, zb > -b)-type orthant P++(a, b) = Phi2(a, b; rho) and its a/b derivatives."""
    P = bvn_cdf(a, b, rho)
    c1 = (b - rho * a) / s
    c2 = (a - rho * b) / s
    pa, pb = npdf(a), npdf(b)
    Pa = pa * ndtr(c1)
    Pb = pb * ndtr(c2)
    Paa = -a * Pa - (rho / s) * pa * npdf(c1)
    Pbb = -b * Pb - (rho / s) * pb * npdf(c2)
    Pab = pa * npdf(c1) / s
    return P, Pa, Pb, Paa, Pbb, Pab


def _output_k2(omega: np.ndarray, V: np.ndarray):
    """K = 2, y = (s1 + s2)/2. omega (..., 2), V (2, 2). Same returns as ``_output_k1`` with 3 labels."""
    s1 = math.sqrt(max(float(V[0, 0]), 1e-300))
    s2 = math.sqrt(max(float(V[1, 1]), 1e-300))
    rho = float(np.clip(V[0, 1] / (s1 * s2), -1.0 + 1e-12, 1.0 - 1e-12))
    s = math.sqrt(1.0 - rho * rho)
    a = omega[..., 0] / s1
    b = omega[..., 1] / s2
    P, Pa, Pb, Paa, Pbb, Pab = _pp_derivs(a, b, rho, s)  # y = +1: z1 > 0, z2 > 0
    M, Ma, Mb, Maa, Mbb, Mab = _pp_derivs(-a, -b, rho, s)  # y = -1: z1 < 0, z2 < 0
    Ma, Mb = -Ma, -Mb  # chain rule of the sign flip (second derivatives are unchanged)
    Z = np.stack([M, 1.0 - P - M, P])
    da = np.stack([Ma, -Pa - Ma, Pa]) / s1
    db = np.stack([Mb, -Pb - Mb, Pb]) / s2
    daa = np.stack([Maa, -Paa - Maa, Paa]) / s1**2
    dbb = np.stack([Mbb, -Pbb - Mbb, Pbb]) / s2**2
    dab = np.stack([Mab, -Pab - Mab, Pab]) / (s1 * s2)
    dZ = np.stack([da, db], axis=-1)
    d2Z = np.stack([np.stack([daa, dab], axis=-1), np.stack([dab, dbb], axis=-1)], axis=-2)
    return np.array([-1.0, 0.0, 1.0]), np.clip(Z, 0.0, 1.0), dZ, d2Z


def output_channel(omega: np.ndarray, V: np.ndarray):
    """Label values, ``Z_out`` (L, ...), ``grad Z_out`` (L, ..., K), ``Hessian Z_out`` (L, ..., K, K).

    ``omega`` (..., K) with K in {1, 2}; ``V`` (K, K). L is the number of possible labels.
    """
    K = omega.shape[-1]
    if K == 1:
        return _output_k1(omega, V)
    if K == 2:
        return _output_k2(omega, V)
    raise ValueError(f"exact output-channel integrals are implemented for K = 1, 2, not K={K}")


def g_out(y: np.ndarray, omega: np.ndarray, V: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``g_out`` (m, K) and ``dg_out`` (m, K, K) for labels ``y`` (m,) at ``omega`` (m, K).

    g = grad Z / Z, dg = Hess Z / Z - g g^T. A label whose probability is below ``Z_FLOOR`` (it
    contradicts ``omega`` beyond what float64 can resolve) gets Z = Z_FLOOR: its message is bounded
    instead of infinite.
    """
    ys, Z, dZ, d2Z = output_channel(omega, V)
    idx = np.searchsorted(ys, y)
    if np.any(ys[np.clip(idx, 0, len(ys) - 1)] != y):
        raise ValueError(f"labels must lie in {ys.tolist()} for K={omega.shape[-1]}")
    rows = np.arange(len(y))
    z = np.maximum(Z[idx, rows], Z_FLOOR)
    g = dZ[idx, rows] / z[:, None]
    dg = d2Z[idx, rows] / z[:, None, None] - g[:, :, None] * g[:, None, :]
    return g, dg


def symmetric_projection(V: np.ndarray) -> tuple[float, float]:
    """(v_d, b) of the committee-symmetric part v_d I + b 1 1^T of ``V`` (K x K, K >= 2): the average of V
    over permutations of the units (so a positive definite V stays positive definite): b = mean
    off-diagonal entry, v_d = mean diagonal entry - b."""
    K = V.shape[0]
    off = (float(V.sum()) - float(np.trace(V))) / (K * (K - 1))
    return float(np.trace(V)) / K - off, off


def common_factor_rule(v_d: float, b: float, K: int, n_u: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Quadrature (shift_k, weight_k) of the common noise factor of V = v_d I + b 1 1^T.

    b >= 0: shift = sqrt(b) u on Gauss-Hermite nodes u (``n_u``). b < 0: shift = i sqrt(-b) u with
    u = x / sqrt(1 - kappa), kappa = -K b / v_d < 1 (V > 0), only x > 0 with doubled weights (the -x
    terms are complex conjugates) and n_u / sqrt(1 - kappa) nodes: the integrand oscillates faster as
    kappa -> 1 (docs/committee.md, "AMP at odd K")."""
    if v_d <= 0.0 or v_d + K * b <= 0.0:
        raise ValueError(f"V = {v_d:.3g} I + {b:.3g} 1 1^T is not positive definite")
    if b >= 0.0:
        x, w = roots_hermitenorm(n_u)
        return math.sqrt(b) * x + 0j, w * _INV_SQRT_2PI
    kappa = -K * b / v_d
    n = int(math.ceil(n_u / math.sqrt(1.0 - kappa)))
    x, w = roots_hermitenorm(n + n % 2)
    s = 1.0 / math.sqrt(1.0 - kappa)
    keep = x > 0
    return 1j * math.sqrt(-b) * s * x[keep], 2.0 * s * w[keep] * _INV_SQRT_2PI


def g_out_symmetric(y: np.ndarray, omega: np.ndarray, V: np.ndarray, n_u: int = 40) -> np.ndarray:
    """``g_out`` (m, K) of the odd-K sign committee for labels ``y`` (m,) in {-1, +1} at ``omega`` (m, K), with V
    replaced by its committee-symmetric part (``symmetric_projection``; exact when V has that form).

    Per sample the count of units on the label's side is Poisson-binomial given the common noise factor
    (compiled in ``_poisson``). A label below ``Z_FLOOR`` is floored there, as in ``g_out``."""
    from thermolens.committee._poisson import label_sums

    K = omega.shape[-1]
    if K < 3 or K % 2 == 0:
        raise ValueError(f"K={K}: the committee-symmetric output channel needs odd K >= 3 (K = 1, 2: g_out)")
    if np.any(np.abs(y) != 1.0):
        raise ValueError("labels must lie in [-1.0, 1.0] for odd K")
    v_d, b = symmetric_projection(V)
    shift, weight = common_factor_rule(v_d, b, K, n_u)
    Z, dZ = label_sums(omega, y, math.sqrt(v_d), shift, weight)
    return dZ / np.maximum(Z, Z_FLOOR)[:, None]


# --------------------------------------------------------------------------------------------------
# priors


def sign_configurations(K: int) -> np.ndarray:
    """All 2^K vectors of +-1, shape (2^K, K)."""
    return np.array(list(itertools.product((-1.0, 1.0), repeat=K)))


def prior_denoise(
    prior: str, A: np.ndarray, B: np.ndarray, *, with_cov: bool = True
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Posterior mean (..., K), covariance (..., K, K; None unless ``with_cov``) and log partition
    (...) of one row: ``log_z = log E_{P0} exp(B.w - w^T A w / 2)``.
    """
    K = A.shape[0]
    if prior == "gaussian":
        M = np.eye(K) + A
        Minv = np.linalg.inv(M)
        mean = B @ Minv  # Minv is symmetric
        cov = np.broadcast_to(Minv, B.shape[:-1] + (K, K))
        log_z = 0.5 * np.einsum("...i,...i->...", B, mean) - 0.5 * np.linalg.slogdet(M)[1]
        return mean, cov, log_z
    if prior == "binary":
        S = sign_configurations(K)  # (C, K)
        logits = B @ S.T - 0.5 * np.einsum("ck,kl,cl->c", S, A, S)  # (..., C)
        top = logits.max(axis=-1, keepdims=True)
        p = np.exp(logits - top)
        total = p.sum(axis=-1, keepdims=True)
        p /= total
        mean = p @ S
        cov = None
        if with_cov:
            cov = np.einsum("...c,ck,cl->...kl", p, S, S) - mean[..., :, None] * mean[..., None, :]
        log_z = top[..., 0] + np.log(total[..., 0]) - K * math.log(2.0)
        return mean, cov, log_z
    raise ValueError(f"unknown prior {prior!r}; choose gaussian or binary")

