"""Compiled multiset sums of the committee-symmetric state evolution (``general_k``).

Given the common factors (eta, and the imaginary noise factor u on the output side) the K hidden units
are i.i.d. and every integrand is symmetric in them, so the K-dimensional tensor rule over the unit
variable is the sum over *multisets* of 1-d nodes, each with its orbit weight K! / prod_j m_j! prod w.
The multisets are walked depth first in non-decreasing node order, nodes sorted by decreasing weight:
a partial multiset carries the running sum (output side) or product (prior side) of its units'
factors, so a leaf costs one unit's update instead of K, and a branch whose best completion falls
below ``log_w_min`` is cut together with every later sibling (their weights are smaller still).
Compiled once with numba and cached on disk; ``nogil`` so the callers can run one eta node per thread.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, inline="always")
def _advance(idx, lw, lm, run, level, log_w, K, log_w_min):
    """Move ``level`` of the depth-first walk to its next node. Returns (level, accepted): accepted with the
    node's partial weight stored (``lw``: log node-weight product, ``lm``: log of 1 / prod of the runs'
    factorials, ``run``: current run length); otherwise the level to continue from (one up when the level
    is exhausted or no later sibling can reach ``log_w_min``)."""
    idx[level] += 1
    i = idx[level]
    if i >= log_w.shape[0]:
        return level - 1, False
    if level == 0:
        cw, cm, r = log_w[i], 0.0, 1
    else:
        r = run[level - 1] + 1 if idx[level - 1] == i else 1
        cw, cm = lw[level - 1] + log_w[i], lm[level - 1] - math.log(r)
    if cw + (K - 1 - level) * log_w[i] + math.lgamma(K + 1.0) + cm < log_w_min:
        # every later sibling has a smaller weight and, when r = 1, no repeat penalty to lose
        return (level - 1 if r == 1 else level), False
    lw[level], lm[level], run[level] = cw, cm, r
    return level, True


@njit(nogil=True, cache=True)
def output_sums(log_h, dlog_h, log_w, K, A, Z0, z_min, log_w_min):
    """Sum over multisets of K nodes of the output channel's integrands.

    ``log_h[i, j]``: log of node i's factor h of the count generating function at the j-th (root of
    unity, u) pair, ``dlog_h[i, j]`` its omega-derivative over h; ``A`` (2, D): the weights turning
    G_j = exp(sum over units of log_h) into the label probabilities Z_y = Re(sum_j A[y, j] G_j) + Z0[y].
    Returns (sum w sum_y Z log Z, sum w sum_y (sum_l dZ_l)^2 / Z, sum w sum_y sum_l dZ_l^2 / Z) with w
    the multiset's orbit weight; labels with Z <= z_min are left out.
    """
    D = log_h.shape[1]
    order = np.argsort(-log_w)
    lwo = log_w[order]
    lg = math.lgamma(K + 1.0)
    idx = np.full(K, -1, np.int64)
    run = np.zeros(K, np.int64)
    lw = np.zeros(K)
    lm = np.zeros(K)
    S = np.zeros((K, D), np.complex128)
    GA = np.empty((2, D), np.complex128)
    psi = m_par = trace = 0.0
    level = 0
    while level >= 0:
        level, accepted = _advance(idx, lw, lm, run, level, lwo, K, log_w_min)
        if not accepted:
            continue
        i = idx[level]
        node = order[i]
        for j in range(D):
            S[level, j] = log_h[node, j] if level == 0 else S[level - 1, j] + log_h[node, j]
        if level < K - 1:
            level += 1
            idx[level] = i - 1
            continue
        wt = math.exp(lw[level] + lg + lm[level])
        Z = np.empty(2)
        for y in range(2):
            Z[y] = Z0[y]
        for j in range(D):
            g = np.exp(S[level, j])
            for y in range(2):
                GA[y, j] = g * A[y, j]
                Z[y] += GA[y, j].real
        for y in range(2):
            if Z[y] <= z_min:
                continue
            psi += wt * Z[y] * math.log(Z[y])
            total = 0.0
            squares = 0.0
            start = 0
            while start < K:  # runs of equal nodes share their derivative
                stop = start + 1
                while stop < K and idx[stop] == idx[start]:
                    stop += 1
                nd = order[idx[start]]
                dz = 0.0
                for j in range(D):
                    dz += (GA[y, j] * dlog_h[nd, j]).real
                total += (stop - start) * dz
                squares += (stop - start) * dz * dz
                start = stop
            m_par += wt * total * total / Z[y]
            trace += wt * squares / Z[y]
    return psi, m_par, trace


@njit(cache=True, inline="always")
def _times_unit(poly, prev, level, a, b):
    """poly = prev * (a + b x) over the coefficients 0 .. level + 1 (prev has level + 1 of them)."""
    poly[0] = a * prev[0]
    for j in range(1, level + 1):
        poly[j] = a * prev[j] + b * prev[j - 1]
    poly[level + 1] = b * prev[level]


@njit(nogil=True, cache=True)
def rademacher_prior_sums(w_star, xi, log_w, K, r_perp, r_par, shift_xi, b0, log_w_min):
    """Sum over multisets of K units of the Rademacher prior's integrands at R_hat = r_perp (I - P) + r_par P,
    P = 1 1^T / K.

    A unit is a node (w*_l, xi_l) with log weight ``log_w``; the channel is B = R_hat w* + R_hat^{1/2} xi,
    B_l = r_perp w*_l + sqrt(r_perp) xi_l + b with the common shift b = (r_par - r_perp) s* / K +
    ``shift_xi`` mean(xi) + ``b0``, s* = sum w*: the noise along 1 is either carried by the units
    (``shift_xi`` = sqrt(r_par) - sqrt(r_perp), b0 = 0) or, when r_par > r_perp, by a common factor eta
    (``shift_xi`` = 0, b0 = sqrt((r_par - r_perp) / K) eta, done by the caller).
    With w^T R_hat w = r_perp K + (r_par - r_perp) s^2 / K the sum over the 2^K sign vectors w is a sum
    over s = 2j - K of exp(-(r_par - r_perp) s^2 / (2K) + b s) times the coefficient of x^j in
    prod_l (exp(-B'_l) + exp(B'_l) x), B'_l = B_l - b: positive coefficients, built one unit at a time
    (no cancellation). Returns (sum w log E_w exp(-w^T R w / 2 + w.B),
    sum w (sum_l <w_l>)^2 / K, sum w sum_l <w_l>^2, sum w) over multisets of orbit weight w: dividing by
    the last makes the rule exact for constants, so that the perfect state <w> = w* gives Q = I exactly.
    """
    order = np.argsort(-log_w)
    lwo = log_w[order]
    lg = math.lgamma(K + 1.0)
    sp = math.sqrt(r_perp)
    c = (r_par - r_perp) / K
    # per node: factor exp(|B'|) (exp(-B' - |B'|) + exp(B' - |B'|) x)
    Bp = r_perp * w_star + sp * xi
    fa = np.exp(-Bp - np.abs(Bp))
    fb = np.exp(Bp - np.abs(Bp))
    idx = np.full(K, -1, np.int64)
    run = np.zeros(K, np.int64)
    lw = np.zeros(K)
    lm = np.zeros(K)
    poly = np.zeros((K, K + 1))
    scale = np.zeros(K)
    s_star = np.zeros(K)
    s_xi = np.zeros(K)
    ones = np.ones(1)
    ex = np.empty(K + 1)
    other = np.empty(K + 1)
    tmp = np.empty(K + 1)
    psi = q_par = trace = total_w = 0.0
    level = 0
    while level >= 0:
        level, accepted = _advance(idx, lw, lm, run, level, lwo, K, log_w_min)
        if not accepted:
            continue
        i = idx[level]
        node = order[i]
        if level == 0:
            _times_unit(poly[0], ones, 0, fa[node], fb[node])
            scale[0], s_star[0], s_xi[0] = abs(Bp[node]), w_star[node], xi[node]
        else:
            _times_unit(poly[level], poly[level - 1], level, fa[node], fb[node])
            scale[level] = scale[level - 1] + abs(Bp[node])
            s_star[level] = s_star[level - 1] + w_star[node]
            s_xi[level] = s_xi[level - 1] + xi[node]
        if level < K - 1:
            level += 1
            idx[level] = i - 1
            continue
        wt = math.exp(lw[level] + lg + lm[level])
        b = c * s_star[level] + shift_xi * s_xi[level] / K + b0
        top = -math.inf
        for j in range(K + 1):
            s = 2.0 * j - K
            ex[j] = -0.5 * c * s * s + b * s
            if poly[level, j] > 0.0:
                top = max(top, ex[j] + math.log(poly[level, j]))
        z = 0.0
        for j in range(K + 1):
            ex[j] = math.exp(min(ex[j] - top, 700.0))  # capped where the coefficient underflowed to 0
            z += ex[j] * poly[level, j]
        psi += wt * (top + math.log(z) + scale[level] - K * math.log(2.0) - 0.5 * r_perp * K)
        total = 0.0
        squares = 0.0
        start = 0
        while start < K:  # <w_l> is shared by a run of equal nodes
            stop = start + 1
            while stop < K and idx[stop] == idx[start]:
                stop += 1
            other[0] = 1.0
            deg = 0
            for k in range(K):
                if k == start:
                    continue
                nk = order[idx[k]]
                for j in range(deg + 1):
                    tmp[j] = other[j]
                _times_unit(other, tmp, deg, fa[nk], fb[nk])
                deg += 1
            nd = order[idx[start]]
            num = -fa[nd] * other[0] * ex[0]
            for j in range(1, K):
                num += (fb[nd] * other[j - 1] - fa[nd] * other[j]) * ex[j]
            num += fb[nd] * other[K - 1] * ex[K]
            mean = num / z
            total += (stop - start) * mean
            squares += (stop - start) * mean * mean
            start = stop
        q_par += wt * total * total / K
        trace += wt * squares
        total_w += wt
    return psi, q_par, trace, total_w
