"""The CPU kernel of ``sequence_sums``: every key sum of a row at every temperature in one fused loop.

The per-(row, beta, key) work of a temperature scan is one Boltzmann weight and six running sums.
Done with whole-array numpy/torch operations it streams each intermediate through memory several
times and costs ~1 ns per (key, beta) per core; fused here (numba, compiled once and cached on disk)
the weights stay in cache and the loops run in SIMD lanes.

Per row, the valid keys (a contiguous run, or compacted) are written once as columns ``e = m - l
>= 0``, ``e^2``, ``r = j - j*``, ``r^2`` (``j*`` the row's first maximum-logit key, ``m`` its
logit), zero-padded to a multiple of ``_LANES`` so every key loop runs whole vectors. The key sums
run over the excited keys only (the ground state's weight, exactly 1, is added in float64), so
``z - 1`` keeps full float32 relative precision and ``log z`` and ``S`` stay accurate at low T.

The weight is ``w = exp(-beta e) = 2**t``, ``t = -beta e log2(e) <= 0``, evaluated inline: ``t = n
+ f`` with ``n`` an integer and ``|f| <= 1/2``, ``2**f`` from its degree-7 Taylor polynomial
(truncation error ``(ln2 / 2)**8 / 8! < 6e-9``, below float32 rounding), and ``2**n`` written into
the float's exponent bits. Weights below ``2**-60`` (``beta e > 41.6``) are set to 0: against the
ground state's 1 that is an absolute error below 1e-18 per key, and it keeps every product a
normal float (subnormal arithmetic is slow). On an octave-aligned temperature grid most weights
are squares of others, ``exp(-2 beta e) = exp(-beta e)**2``, which costs a multiplication instead
of the polynomial; the caller chooses which (``source``) and bounds the chains.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

#: Fields of ``panel_sums``'s per-(beta, panel) output, in order.
BETA_FIELDS = ("log_z", "mean_e", "var_e", "concentration", "concentration_sq", "spread", "distance")
#: Fields of its per-panel (beta-independent) output, in order.
ROW_FIELDS = ("rows", "keys", "max_logit", "uniform_spread", "uniform_distance")

_FAST = True  # the key loops' reductions may be reordered into SIMD lanes
_LANES = 8  # float32 lanes of an AVX2 register: key columns are padded to a multiple of this
_LOG2E = np.float32(1.4426950408889634)
_T_MIN = np.float32(-60.0)
_W_MIN = np.float32(2.0**-60)
_HALF = np.float32(0.5)
_FAR = np.float32(1e30)  # the exponent column of keys that must weigh 0: ground state and padding
#: 1 <= z <= n_k per row, so a product of this many rows stays finite in float64 up to n_k ~ 10^9.
_LOG_EVERY = 32
# 2**f = sum_k (f ln2)^k / k!
_P = tuple(np.float32(0.6931471805599453**k / np.prod(np.arange(1, k + 1, dtype=np.float64))) for k in range(8))


@intrinsic
def _float32_from_bits(typingctx, bits):
    """Reinterpret an int32 as the float32 with the same bits."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.int32), codegen


@njit(fastmath=_FAST, inline="always", cache=True)
def _exp2_nonpositive(t):
    """``2**t`` for float32 ``t <= 0``, relative error ~1e-7; 0 for ``t < -60``."""
    if t < _T_MIN:
        return np.float32(0.0)
    n = np.int32(t - _HALF)  # truncation towards 0: n = ceil(t - 1/2), so f = t - n in (-1/2, 1/2]
    f = t - np.float32(n)
    p = _P[7]
    p = p * f + _P[6]
    p = p * f + _P[5]
    p = p * f + _P[4]
    p = p * f + _P[3]
    p = p * f + _P[2]
    p = p * f + _P[1]
    p = p * f + _P[0]
    return p * _float32_from_bits((n + np.int32(127)) << np.int32(23))


@njit(fastmath=_FAST, cache=True)
def _fill_exp(w, b, x, c, n_pad):
    """``w[b, :n_pad] = 2**(c x[:n_pad])`` (``c <= 0``)."""
    for k in range(n_pad):
        w[b, k] = _exp2_nonpositive(c * x[k])


@njit(fastmath=_FAST, cache=True)
def _fill_square(w, b, half, n_pad):
    """``w[b, :n_pad] = w[half, :n_pad]**2``, the weights at twice the inverse temperature (0 below
    2**-60)."""
    for k in range(n_pad):
        x = w[half, k] * w[half, k]
        w[b, k] = x if x >= _W_MIN else np.float32(0.0)


@njit(fastmath=_FAST, cache=True)
def _key_sums6(w, b, e, ee, r, rr, n_pad, out):
    """``out[b + i] = (sum w, sum w e, sum w e^2, sum w r, sum w r^2, sum w^2)`` over keys
    ``[:n_pad]`` of the weight rows ``b + i``, ``i = 0, 1``, at once: twelve independent running
    sums keep the FMA units busy where six would wait on each other's latency. (Rows are indexed,
    not sliced: every array view made in a hot loop costs atomic reference counting.)"""
    c = b + 1
    a0 = a1 = a2 = a3 = a4 = a5 = np.float32(0.0)
    b0 = b1 = b2 = b3 = b4 = b5 = np.float32(0.0)
    for k in range(n_pad):
        a0 += w[b, k]
        a1 += w[b, k] * e[k]
        a2 += w[b, k] * ee[k]
        a3 += w[b, k] * r[k]
        a4 += w[b, k] * rr[k]
        a5 += w[b, k] * w[b, k]
        b0 += w[c, k]
        b1 += w[c, k] * e[k]
        b2 += w[c, k] * ee[k]
        b3 += w[c, k] * r[k]
        b4 += w[c, k] * rr[k]
        b5 += w[c, k] * w[c, k]
    _store(out, b, a0, a1, a2, a3, a4, a5, b0, b1, b2, b3, b4, b5)


@njit(fastmath=_FAST, cache=True)
def _key_sums5(w, b, e, ee, r, rr, n_pad, out):
    """``_key_sums6`` without ``sum w^2`` (left 0), for betas whose double is on the grid."""
    c = b + 1
    a0 = a1 = a2 = a3 = a4 = np.float32(0.0)
    b0 = b1 = b2 = b3 = b4 = np.float32(0.0)
    for k in range(n_pad):
        a0 += w[b, k]
        a1 += w[b, k] * e[k]
        a2 += w[b, k] * ee[k]
        a3 += w[b, k] * r[k]
        a4 += w[b, k] * rr[k]
        b0 += w[c, k]
        b1 += w[c, k] * e[k]
        b2 += w[c, k] * ee[k]
        b3 += w[c, k] * r[k]
        b4 += w[c, k] * rr[k]
    zero = np.float32(0.0)
    _store(out, b, a0, a1, a2, a3, a4, zero, b0, b1, b2, b3, b4, zero)


@njit(fastmath=_FAST, cache=True)
def _key_sums1(w, b, e, ee, r, rr, n_pad, out):
    """``_key_sums6`` for the weight row ``b`` alone."""
    a0 = a1 = a2 = a3 = a4 = a5 = np.float32(0.0)
    for k in range(n_pad):
        a0 += w[b, k]
        a1 += w[b, k] * e[k]
        a2 += w[b, k] * ee[k]
        a3 += w[b, k] * r[k]
        a4 += w[b, k] * rr[k]
        a5 += w[b, k] * w[b, k]
    out[b, 0], out[b, 1], out[b, 2], out[b, 3], out[b, 4], out[b, 5] = a0, a1, a2, a3, a4, a5


@njit(inline="always", cache=True)
def _store(out, b, a0, a1, a2, a3, a4, a5, b0, b1, b2, b3, b4, b5):
    out[b, 0], out[b, 1], out[b, 2], out[b, 3], out[b, 4], out[b, 5] = a0, a1, a2, a3, a4, a5
    out[b + 1, 0], out[b + 1, 1], out[b + 1, 2], out[b + 1, 3], out[b + 1, 4], out[b + 1, 5] = b0, b1, b2, b3, b4, b5


@njit(fastmath=_FAST, inline="always", cache=True)
def _valid_range(mask, s, h, i):
    """``(count, lo, hi)`` of the valid keys ``mask[s, h, i]``; ``hi - lo == count`` when contiguous."""
    n_k = mask.shape[3]
    count = np.int32(0)
    for j in range(n_k):
        count += np.int32(mask[s, h, i, j])
    if count == n_k or count == 0:
        return count, 0, count
    lo = 0
    while not mask[s, h, i, lo]:
        lo += 1
    hi = n_k
    while not mask[s, h, i, hi - 1]:
        hi -= 1
    return count, lo, hi


@njit(fastmath=_FAST, inline="always", cache=True)
def _row_keys(logits, p, i, mask, s, h, iota, keys, x, e, ee, r, rr):
    """Write the padded key columns of row ``logits[p, i]`` with valid keys ``mask[s, h, i]``;
    returns ``(n, n_pad, m, j*, mean j, Var_u j)``. ``iota`` is ``0, 1, 2, ...`` in float32 (AVX2
    converts no int64 vector to float, so indices enter the vector loops through it).

    Valid keys are taken in place when they form one contiguous run (no mask, causal, padding)
    and compacted otherwise. ``x`` is the exponent column: ``e`` on excited keys and ``_FAR``
    (weight 0) on the ground state ``j*`` (the first maximum, like ``torch.max``) and on the
    padding, where ``e``, ``e^2``, ``r``, ``r^2`` are 0. The last two outputs are the mean and
    variance of the valid key indices with uniform weights.
    """
    mi = i if mask.shape[2] > 1 else 0
    n, lo, hi = _valid_range(mask, s, h, mi)
    if n == 0:
        return 0, 0, np.float32(0.0), -1, 0.0, 0.0
    if hi - lo == n:
        m = logits[p, i, lo]
        for j in range(lo + 1, hi):
            v = logits[p, i, j]
            m = v if v > m else m
        j_star = lo
        while logits[p, i, j_star] != m:
            j_star += 1
        # Few arrays per loop: LLVM vectorises a loop only if its runtime alias checks stay few.
        for k in range(n):
            v = m - logits[p, i, lo + k]
            e[k] = v
            ee[k] = v * v
            x[k] = v
        offset = np.float32(lo - j_star)
        for k in range(n):
            v = iota[k] + offset
            r[k] = v
            rr[k] = v * v
        mu_j = lo + (n - 1) / 2.0
        var_j = (n * n - 1.0) / 12.0
        k_star = j_star - lo
    else:
        n = 0
        j_star = -1
        k_star = 0
        m = np.float32(0.0)
        for j in range(logits.shape[2]):
            if mask[s, h, mi, j]:
                if j_star < 0 or logits[p, i, j] > m:
                    m = logits[p, i, j]
                    j_star = j
                    k_star = n
                keys[n] = j
                n += 1
        mu_j = 0.0
        for k in range(n):
            mu_j += keys[k]
        mu_j /= n
        var_j = 0.0
        for k in range(n):
            j = keys[k]
            var_j += (j - mu_j) ** 2
            v = m - logits[p, i, j]
            e[k] = v
            ee[k] = v * v
            x[k] = v
            w = np.float32(j - j_star)
            r[k] = w
            rr[k] = w * w
        var_j /= n
    x[k_star] = _FAR
    n_pad = -(-n // _LANES) * _LANES
    for k in range(n, n_pad):
        x[k] = _FAR
        e[k] = 0.0
        ee[k] = 0.0
        r[k] = 0.0
        rr[k] = 0.0
    return n, n_pad, m, j_star, mu_j, var_j


@njit(nogil=True, fastmath=_FAST, cache=True)
def panel_sums(logits, mask, n_heads, panel0, betas, order, source, double, out_beta, out_row):
    """Sums over the query rows of each panel (one sequence and head) of a block of panels.

    ``logits`` ``(n_panels, n_q, n_k)`` float32, panel ``p`` being sequence ``(panel0 + p) //
    n_heads``, head ``(panel0 + p) % n_heads``; ``mask`` ``(batch, heads, n_q, n_k)`` bool where a
    size-1 axis broadcasts; ``betas`` ``(n_b,)`` float64, visited in ``order`` (ascending); the
    weights of beta ``b`` are the squares of those of ``source[b]`` (``betas[b] = 2
    betas[source[b]]``) or, where ``source[b] < 0``, computed afresh; ``double`` ``(n_b + n_b % 2,)``
    is the index of ``2 betas[b]`` on the grid or -1 (and -1 for the pad entry of an odd grid).
    Adds into ``out_beta``
    ``(7, n_b, n_panels)`` the row sums of ``BETA_FIELDS`` — ``log z``, ``<e>``, ``Var e``, ``q``,
    ``q^2``, ``Var_p(j)``, ``<(j - i)^2>`` — and into ``out_row`` ``(5, n_panels)`` those of
    ``ROW_FIELDS``: 1, ``n``, ``m`` and the two uniform-attention moments, over rows with at least
    one valid key (the definitions are in ``thermolens.thermo.sums``).
    """
    n_panels, n_q, n_k = logits.shape
    n_b = betas.shape[0]
    scale = np.empty(n_b, dtype=np.float32)
    for b in range(n_b):
        scale[b] = np.float32(-betas[b]) * _LOG2E
    width = n_k + _LANES
    x = np.empty(width, dtype=np.float32)
    e = np.empty(width, dtype=np.float32)
    ee = np.empty(width, dtype=np.float32)
    r = np.empty(width, dtype=np.float32)
    rr = np.empty(width, dtype=np.float32)
    keys = np.empty(n_k, dtype=np.int64)
    iota = np.arange(n_k).astype(np.float32)
    weights = np.zeros((n_b + n_b % 2, width), dtype=np.float32)  # even: key sums run in pairs
    key_sums = np.zeros((n_b + n_b % 2, 6))
    acc = np.zeros((len(BETA_FIELDS), n_b))
    z_product = np.ones(n_b)  # the sum of log z as the log of a product, taken every _LOG_EVERY rows
    for p in range(n_panels):
        seq = (panel0 + p) // n_heads
        head = (panel0 + p) % n_heads
        ms = seq if mask.shape[0] > 1 else 0
        mh = head if mask.shape[1] > 1 else 0
        acc[:] = 0.0
        n_rows = 0
        for i in range(n_q):
            n, n_pad, m, j_star, mu_j, var_j = _row_keys(
                logits, p, i, mask, ms, mh, iota, keys, x, e, ee, r, rr)
            if n == 0:
                continue
            n_rows += 1
            d = float(j_star - i)
            out_row[0, p] += 1.0
            out_row[1, p] += n
            out_row[2, p] += m
            out_row[3, p] += var_j
            out_row[4, p] += var_j + (mu_j - i) ** 2
            for b in order:  # ascending beta: a weight row is filled before its square is taken
                if source[b] < 0:
                    _fill_exp(weights, b, x, scale[b], n_pad)
                else:
                    _fill_square(weights, b, source[b], n_pad)
            q_a = n / (n - 1.0) if n > 1 else 0.0  # q = a Y - c: (Y - 1/n) / (1 - 1/n), or 1 for one key
            q_c = 1.0 / (n - 1.0) if n > 1 else -1.0
            for b_pair in range(0, n_b, 2):
                # sum w^2 at beta is z - 1 at 2 beta where the grid has it: five sums, not six.
                if b_pair + 1 == n_b:  # the odd one out (a single temperature, say)
                    _key_sums1(weights, b_pair, e, ee, r, rr, n_pad, key_sums)
                elif double[b_pair] >= 0 and double[b_pair + 1] >= 0:
                    _key_sums5(weights, b_pair, e, ee, r, rr, n_pad, key_sums)
                else:
                    _key_sums6(weights, b_pair, e, ee, r, rr, n_pad, key_sums)
            for b in range(n_b):
                s0, s1, s2, s3, s4, s5 = key_sums[b]
                if double[b] >= 0:
                    s5 = key_sums[double[b], 0]
                z = 1.0 + s0  # the ground state's weight is exactly 1
                inv_z = 1.0 / z
                mean_e = s1 * inv_z
                mean_r = s3 * inv_z
                mean_rr = s4 * inv_z
                q = q_a * ((1.0 + s5) * inv_z * inv_z) - q_c
                z_product[b] *= z
                acc[1, b] += mean_e
                acc[2, b] += max(s2 * inv_z - mean_e * mean_e, 0.0)
                acc[3, b] += q
                acc[4, b] += q * q
                acc[5, b] += max(mean_rr - mean_r * mean_r, 0.0)
                acc[6, b] += mean_rr + 2.0 * d * mean_r + d * d
            if n_rows % _LOG_EVERY == 0:
                for b in range(n_b):
                    acc[0, b] += np.log(z_product[b])
                    z_product[b] = 1.0
        for b in range(n_b):
            acc[0, b] += np.log(z_product[b])
            z_product[b] = 1.0
        for f in range(len(BETA_FIELDS)):
            for b in range(n_b):
                out_beta[f, b, p] += acc[f, b]
