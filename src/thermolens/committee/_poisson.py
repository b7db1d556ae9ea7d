"""Compiled per-sample output channel of the odd-K sign committee with committee-symmetric noise (AMP).

AMP needs, for every sample mu, Z(y_mu | omega_mu) = P(majority of z_l > 0 has sign y_mu) with
z ~ N(omega_mu, V), and its omega-gradient. With V = v_d I + b 1 1^T (the committee-symmetric form;
``general_k`` explains the construction) the noise is z_l = omega_l + sqrt(v_d) eps_l + t u with one
common factor u ~ N(0, 1): t = sqrt(b) for b >= 0, t = i sqrt(-b) for b < 0 (orthant probabilities
are analytic in the common variance). Given u the units are independent, so the count of units on
the label's side is Poisson-binomial; a quadrature over u (nodes ``shift`` = t u_k, weights ``weight``)
finishes the integral. Per sample and node the count distribution comes from prefix and suffix
products, so the tail and every leave-one-out count cost O(K^2).

Complex arguments need the normal CDF off the real line: Phi(x) = erfc(-x / sqrt 2) / 2 with
erfc(z) = exp(-z^2) w(i z) and the Faddeeva function w by Weideman's rational expansion (SIAM J.
Numer. Anal. 31, 1497 (1994), valid for Im z >= 0; used for Re x <= 0, and Phi(x) = 1 - Phi(-x)
otherwise). N = 24 terms: 1e-10 absolute against scipy's ``wofz`` for |Re z|, Im z <= 15 (N = 32:
4e-14 at 30% more cost; AMP's quadrature error is larger than either). Every unit factor is scaled by
exp(-(Im x)^2 / 2), which keeps it O(1) and, for the imaginary factor, cancels the growth of the
integrand in u (``general_k``). The label side is read from interpolation tables (``label_sums``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

_N_TERMS = 24
_INV_SQRT_PI = 1.0 / math.sqrt(math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _weideman(n_terms: int = _N_TERMS) -> tuple[float, np.ndarray]:
    """Weideman's L and polynomial coefficients (highest degree first) for w(z), Im z >= 0."""
    M = 2 * n_terms
    L = math.sqrt(n_terms / math.sqrt(2.0))
    theta = np.arange(-M + 1, M) * math.pi / M
    t = L * np.tan(theta / 2.0)
    f = np.concatenate([[0.0], np.exp(-t * t) * (L * L + t * t)])
    a = np.real(np.fft.fft(np.fft.fftshift(f))) / (2 * M)
    return L, np.ascontiguousarray(a[1:n_terms + 1][::-1])


_L, _COEF = _weideman()


@njit(cache=True, inline="always")
def _faddeeva_upper(z, L, coef):
    """w(z) = exp(-z^2) erfc(-i z) for Im z >= 0 (Weideman 1994)."""
    den = L - 1j * z
    Z = (L + 1j * z) / den
    p = 0j
    for c in coef:
        p = p * Z + c
    return 2.0 * p / (den * den) + _INV_SQRT_PI / den


@njit(cache=True, inline="always")
def _scaled_pair(x, L, coef):
    """(Phi(x), Phi(-x)) times exp(-(Im x)^2 / 2) for complex x, from one Faddeeva evaluation: the factor
    with Re <= 0 directly (no cancellation), the other as their sum exp(-(Im x)^2 / 2) minus it."""
    a, b = x.real, x.imag
    total = math.exp(-0.5 * b * b)
    if a <= 0.0:
        low = 0.5 * np.exp(-0.5 * a * a - 1j * a * b) * _faddeeva_upper(-1j * x / math.sqrt(2.0), L, coef)
        return low, total - low
    high = 0.5 * np.exp(-0.5 * a * a - 1j * a * b) * _faddeeva_upper(1j * x / math.sqrt(2.0), L, coef)
    return total - high, high


@njit(cache=True)
def _table_values(a, beta, L, coef):
    """On the grid ``a`` (P,) for each ``beta`` (B,): T[0] = G(a) = Phi(x) exp(-beta^2 / 2), x = a + i beta, and
    its a-derivatives T[1] = G' = D(a) (the scaled density), T[2] = G'' = D' = -x D, T[3] = D'' = (x^2 - 1) D."""
    B, P = beta.shape[0], a.shape[0]
    T = np.empty((4, B, P), dtype=np.complex128)
    for i in range(B):
        for j in range(P):
            x = a[j] + 1j * beta[i]
            d = np.exp(-0.5 * a[j] * a[j] - 1j * a[j] * beta[i]) * _INV_SQRT_2PI
            T[0, i, j] = _scaled_pair(x, L, coef)[0]
            T[1, i, j] = d
            T[2, i, j] = -x * d
            T[3, i, j] = (x * x - 1.0) * d
    return T


@njit(cache=True, inline="always")
def _quintic(T, f, row, j, s, h):
    """Quintic Hermite interpolation of T[f] on [a_j, a_j+1] at fraction ``s``, from T[f], T[f+1], T[f+2]."""
    s2 = s * s
    s3 = s2 * s
    s4 = s3 * s
    s5 = s4 * s
    h0 = 1.0 - 10.0 * s3 + 15.0 * s4 - 6.0 * s5
    h1 = s - 6.0 * s3 + 8.0 * s4 - 3.0 * s5
    h2 = 0.5 * (s2 - 3.0 * s3 + 3.0 * s4 - s5)
    h3 = 0.5 * (s3 - 2.0 * s4 + s5)
    h4 = -4.0 * s3 + 7.0 * s4 - 3.0 * s5
    h5 = 10.0 * s3 - 15.0 * s4 + 6.0 * s5
    return (h0 * T[f, row, j] + h1 * h * T[f + 1, row, j] + h2 * h * h * T[f + 2, row, j]
            + h3 * h * h * T[f + 2, row, j + 1] + h4 * h * T[f + 1, row, j + 1] + h5 * T[f, row, j + 1])


@njit(cache=True, inline="always")
def _factor(T, row, a0, h, a):
    """(G(a), D(a)) for table row ``row``; outside the grid G is clamped to its end value and D = 0
    (there they are 0 or exp(-beta^2 / 2), and 0, to ~exp(-50))."""
    P = T.shape[2]
    t = (a - a0) / h
    if t <= 0.0:
        return T[0, row, 0], 0j
    if t >= P - 1:
        return T[0, row, P - 1], 0j
    j = int(t)
    s = t - j
    return _quintic(T, 0, row, j, s, h), _quintic(T, 1, row, j, s, h)


@njit(cache=True, parallel=True)
def _label_sums(omega, y, sd, sigma, beta_row, beta, weight, T, a0, h):
    """Z(y_mu | omega_mu) (m,) and its omega-gradient (m, K), odd K, labels +-1.

    Node k adds sigma_k + i beta[beta_row[k]] to omega / sd; the unit factor on the label's side is
    G(a) (label +1, a = omega / sd + sigma_k) or conj G(-a) (label -1), interpolated from the table."""
    m, K = omega.shape
    need = (K + 1) // 2  # units on the label's side for a majority
    Z = np.zeros(m)
    dZ = np.zeros((m, K))
    n_chunks = (m + 255) // 256
    for chunk in prange(n_chunks):
        pre = np.zeros((K + 1, K + 1), dtype=np.complex128)  # pre[l]: count distribution of units < l
        suf = np.zeros((K + 1, K + 1), dtype=np.complex128)  # suf[l]: of units >= l
        win = np.empty(K, dtype=np.complex128)
        lose = np.empty(K, dtype=np.complex128)
        dens = np.empty(K, dtype=np.complex128)
        g_acc = np.zeros(K)
        for mu in range(chunk * 256, min(m, chunk * 256 + 256)):
            side = y[mu]
            z_acc = 0.0
            g_acc[:] = 0.0
            for k in range(sigma.shape[0]):
                row = beta_row[k]
                b = beta[row]
                total = math.exp(-0.5 * b * b)
                for l in range(K):
                    # x = side (a + i b): win = G(x), d win / d omega = side D(x) / sd; for side = -1
                    # G(-(a + i b)) = conj G(-a + i b) and D(-(a + i b)) = conj D(-a + i b)
                    a = side * (omega[mu, l] / sd + sigma[k])
                    g, d = _factor(T, row, a0, h, a)
                    if side > 0:
                        win[l], dens[l] = g, d / sd
                    else:
                        win[l], dens[l] = np.conj(g), -np.conj(d) / sd
                    lose[l] = total - win[l]
                pre[0, 0] = 1.0
                for l in range(K):
                    pre[l + 1, l + 1] = pre[l, l] * win[l]
                    pre[l + 1, 0] = pre[l, 0] * lose[l]
                    for c in range(1, l + 1):
                        pre[l + 1, c] = pre[l, c] * lose[l] + pre[l, c - 1] * win[l]
                suf[K, 0] = 1.0
                for l in range(K - 1, -1, -1):
                    top = K - l  # units l .. K-1
                    suf[l, top] = suf[l + 1, top - 1] * win[l]
                    suf[l, 0] = suf[l + 1, 0] * lose[l]
                    for c in range(1, top):
                        suf[l, c] = suf[l + 1, c] * lose[l] + suf[l + 1, c - 1] * win[l]
                tail = 0j
                for c in range(need, K + 1):
                    tail += pre[K, c]
                z_acc += weight[k] * tail.real
                for l in range(K):
                    tie = 0j  # P(exactly need - 1 of the other units on the label's side)
                    for c in range(max(0, need - K + l), min(l, need - 1) + 1):
                        tie += pre[l, c] * suf[l + 1, need - 1 - c]
                    g_acc[l] += weight[k] * (tie * dens[l]).real
            Z[mu] = z_acc
            for l in range(K):
                dZ[mu, l] = g_acc[l]
    return Z, dZ


_A_MAX = 10.0  # beyond |a| = 10 the factor is 0 or exp(-beta^2 / 2) to ~exp(-50)
_STEP = 0.04  # quintic Hermite: ~1e-10 against the direct evaluation (tests/committee/test_amp_symmetric.py)


def label_sums(omega: np.ndarray, y: np.ndarray, sd: float, shift: np.ndarray, weight: np.ndarray):
    """Z(y | omega) (m,) and dZ/domega (m, K) on a quadrature (``shift``, ``weight``) of the common factor.

    The unit factor Phi(x) exp(-(Im x)^2 / 2) is tabulated once per call on a grid of Re x for each
    distinct Im x (one for a real common factor, one per node for an imaginary one) and interpolated
    (quintic Hermite with the exact derivatives), so a sample costs no special-function evaluation."""
    shift = np.asarray(shift, dtype=np.complex128) / sd
    sigma = np.ascontiguousarray(shift.real)
    beta, beta_row = np.unique(np.round(shift.imag, 14), return_inverse=True)
    grid = np.arange(-_A_MAX, _A_MAX + _STEP / 2, _STEP)
    T = _table_values(grid, beta, _L, _COEF)
    return _label_sums(np.ascontiguousarray(omega, dtype=np.float64), np.ascontiguousarray(y, dtype=np.float64),
                       float(sd), sigma, beta_row.astype(np.int64), beta,
                       np.ascontiguousarray(weight, dtype=np.float64), T, float(grid[0]), _STEP)


@njit(cache=True)
def _scaled_cdf_array(x, L, coef):
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        out[i] = _scaled_pair(x[i], L, coef)[0]
    return out


def scaled_cdf(x: np.ndarray) -> np.ndarray:
    """Phi(x) exp(-(Im x)^2 / 2) for complex ``x`` (1-d), the compiled kernel's unit factor (for tests)."""
    return _scaled_cdf_array(np.ascontiguousarray(x, dtype=np.complex128), _L, _COEF)
