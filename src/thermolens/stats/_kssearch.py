"""The KS-optimal lower cutoff of a power law, searched exactly over every candidate (numba-compiled loops).

Data layout. ``x`` is the sorted sample (n points, ties allowed). A candidate is a start index ``i`` (the
first point of its value; its tail is ``x[i:]``, ``m = n - i`` points), its ``xmin`` (``x[i]``, or a grid
value <= ``x[i]``) and exponent ``alpha``. In a full search over distinct values the candidates are the
point indices themselves (``starts`` empty; indices inside a run of ties are skipped), so 1e8 values
need no index arrays; heavily tied data (integers) list their candidates in ``starts``. Where a value
repeats, its first and last index are found by galloping from the point (one comparison when it does
not repeat). Logarithms are taken where they are needed rather than stored.

The distance of one candidate (``ks_distance``). At a tail value ``x[k]`` the model CDF just below it,
``F(X < x[k])``, is compared with the tail fraction below it, ``(first(k) - i) / m``; discrete laws also
compare ``F(X <= x[k])`` with the fraction ``<= x[k]`` (see ``powerlaw.py`` for the conventions). Both
CDFs are non-decreasing, so between two evaluated points ``a < b`` every value strictly between theirs
has ``|F - e| <= max(F(b-) - e(a+), e(b-) - F(a+))`` (``a+``: at or below ``x[a]``; ``b-``: below
``x[b]``); points equal to ``x[a]`` or ``x[b]`` share their values. This is a branch and bound for the
maximum: ``_K`` evenly spaced points, then every block whose bound exceeds the largest distance seen
so far is cut into ``_SPLIT`` parts (or evaluated point by point once shorter than ``_LEAF``). Blocks
far from the maximum are closed by their bound; only the neighbourhood of the maximum is refined down
to single points. With a threshold ``thr`` the search stops as soon as a distance above ``thr`` is
seen: the candidate cannot win.

The search over candidates (``search``). Candidates are visited coarse to fine: a few with
geometrically spaced tails, then every ``16**j``-th candidate for decreasing ``j`` down to every one,
each visit with the smallest exact distance so far as its threshold. Most candidates are discarded by
one evaluation at the point where the previously visited candidate's distance was found (the maximum
moves little between neighbouring candidates); the others run the branch and bound. Every candidate is
either shown to be worse than a distance that some candidate attains or evaluated exactly, so the result
is the exact minimum; ties go to the smallest xmin.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from scipy import special

_EPS = float(np.finfo(np.float64).eps)
# Euler-Maclaurin coefficients B_2j / (2j)!, j = 1..12 (DLMF 24.2.1 numbers; remainder terms of DLMF 2.10.1)
_B = special.bernoulli(24)
_EM = np.array([_B[2 * j] / math.factorial(2 * j) for j in range(1, 13)])

_K = 16  # blocks of the first, even sampling of a tail
_SPLIT = 4  # a block that may hold the maximum is cut into this many
_LEAF = 16  # blocks this short are evaluated point by point
_SLACK = 1e-13  # rounding allowance of a block bound (distances are O(1), each evaluated to ~1e-16)
_STACK = 512  # open blocks at most: _K + (_SPLIT - 1) * depth, depth <= log_4(n) < 32


@njit(cache=True, error_model="numpy")
def hurwitz_zeta(s, q):
    """zeta(s, q) = sum_{k>=0} (q + k)^-s for s > 1, q > 0 (the normalisation of the discrete power law).

    Direct terms until ``w = q + N >= 10`` with ``N >= 9`` (none for ``q > 1e8``), then the
    Euler-Maclaurin remainder ``w^(1-s)/(s-1) + w^-s/2 + sum_j B_2j/(2j)! s(s+1)...(s+2j-2) w^(-s-2j+1)``,
    stopped when a term falls below rounding. Relative error ~1e-15 for 1 < s <= 40 (tested against
    ``scipy.special.zeta``)."""
    total = 0.0
    w = q
    n_terms = 0
    while w < 10.0 or (n_terms < 9 and q <= 1e8):
        term = w**-s
        total += term
        w += 1.0
        n_terms += 1
        if term * w <= _EPS * (s - 1.0) * total:  # the remainder, below w^(1-s)/(s-1), is negligible
            return total
    ws = w**-s
    total += w * ws / (s - 1.0) + 0.5 * ws
    rising = s  # s (s+1) ... (s+2j-2)
    wpow = ws / w  # w^(-s-2j+1)
    for j in range(_EM.size):
        t = _EM[j] * rising * wpow
        total += t
        if abs(t) <= _EPS * total:
            break
        rising *= (s + 2 * j + 1) * (s + 2 * j + 2)
        wpow /= w * w
    return total


@njit(cache=True)
def _first_far(x, k):
    """First index of the run of ties that holds ``k`` (``x[k - 1] == x[k]``): gallop down, then bisect."""
    val = x[k]
    hi = k - 1  # x[hi] == val
    step = 1
    lo = hi - step
    while lo >= 0 and x[lo] == val:
        hi = lo
        step *= 2
        lo = hi - step
    lo = max(lo, -1)  # x[lo] < val, or before the start
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if x[mid] == val:
            hi = mid
        else:
            lo = mid
    return hi


@njit(cache=True)
def _end_far(x, k):
    """One past the last index of the run of ties that holds ``k`` (``x[k + 1] == x[k]``)."""
    val = x[k]
    n = x.size
    lo = k + 1  # x[lo] == val
    step = 1
    hi = lo + step
    while hi < n and x[hi] == val:
        lo = hi
        step *= 2
        hi = lo + step
    hi = min(hi, n)  # x[hi] > val, or past the end
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if x[mid] == val:
            lo = mid
        else:
            hi = mid
    return hi


@njit(cache=True, inline="always")
def _first(x, k):
    """Points smaller than ``x[k]``."""
    if k == 0 or x[k - 1] != x[k]:
        return k
    return _first_far(x, k)


@njit(cache=True, inline="always")
def _end(x, k):
    """Points at most ``x[k]``."""
    if k == x.size - 1 or x[k + 1] != x[k]:
        return k + 1
    return _end_far(x, k)


@njit(cache=True, inline="always", error_model="numpy")
def _cdfs(k, x, discrete, a, lx, zmin, scale, i, m):
    """At tail value ``x[k]``: (F(X < x), tail fraction < x, F(X <= x), tail fraction <= x). Continuous laws
    compare only just below each point (Clauset's convention), so the last two repeat the first two."""
    e_lo = (_first(x, k) - i) / m
    if discrete:
        z = hurwitz_zeta(a, x[k])
        f_lo = (zmin - z) / scale
        f_hi = (zmin - z + x[k] ** -a) / scale
        e_hi = (_end(x, k) - i) / m
        return f_lo, e_lo, f_hi, e_hi
    f_lo = -math.expm1((1.0 - a) * (math.log(x[k]) - lx)) / scale
    return f_lo, e_lo, f_lo, e_lo


@njit(cache=True, inline="always")
def _push(blocks, ends, top, lo, hi, f_lo_end, e_lo_end, f_hi_end, e_hi_end):
    """Open block (lo, hi): the CDFs at or below x[lo] (f, e) and just below x[hi] (f, e)."""
    blocks[top, 0] = lo
    blocks[top, 1] = hi
    ends[top, 0] = f_lo_end
    ends[top, 1] = e_lo_end
    ends[top, 2] = f_hi_end
    ends[top, 3] = e_hi_end
    return top + 1


@njit(cache=True, inline="always")
def _bound(ends, t):
    return max(ends[t, 2] - ends[t, 1], ends[t, 3] - ends[t, 0])


@njit(cache=True)
def _order(blocks, ends, base, top):
    """Sort the open blocks base..top-1 by bound, largest last (popped first): insertion sort of <= _SPLIT rows."""
    for t in range(base + 1, top):
        u = t
        while u > base and _bound(ends, u - 1) > _bound(ends, u):
            for c in range(2):
                blocks[u, c], blocks[u - 1, c] = blocks[u - 1, c], blocks[u, c]
            for c in range(4):
                ends[u, c], ends[u - 1, c] = ends[u - 1, c], ends[u, c]
            u -= 1


@njit(cache=True, error_model="numpy")
def ks_distance(i, a, xv, thr, hint, x, discrete, xmax, blocks, ends):
    """KS distance of the candidate (start ``i``, exponent ``a``, xmin ``xv``) when it is at most ``thr``;
    otherwise some distance above ``thr`` met on the way. ``hint`` (a tail index, or -1) is evaluated
    first. ``xmax <= 0`` means no upper truncation. Returns (distance, index where it was found)."""
    last = x.size - 1
    m = float(x.size - i)
    lx = math.log(xv)
    zmin = 0.0
    if discrete:
        zmin = hurwitz_zeta(a, xv)
        scale = zmin - (hurwitz_zeta(a, xmax + 1.0) if xmax > 0 else 0.0)
    else:
        scale = 1.0 if xmax <= 0 else -math.expm1((1.0 - a) * math.log(xmax / xv))
    best = 0.0
    arg = i
    if i < hint <= last:
        f_lo, e_lo, f_hi, e_hi = _cdfs(hint, x, discrete, a, lx, zmin, scale, i, m)
        best = max(abs(f_lo - e_lo), abs(f_hi - e_hi))
        arg = hint
        if best > thr:
            return best, arg
    # first pass: _K + 1 evenly spaced points, both ends included
    n_blocks = max(1, min(_K, last - i))  # a tail of one distinct value has one point to see
    top = 0
    pk = i
    pf, pe = 0.0, 0.0
    for j in range(n_blocks + 1):
        k = i + (j * (last - i)) // n_blocks
        f_lo, e_lo, f_hi, e_hi = _cdfs(k, x, discrete, a, lx, zmin, scale, i, m)
        g = max(abs(f_lo - e_lo), abs(f_hi - e_hi))
        if g > best:
            best, arg = g, k
            if best > thr:
                return best, arg
        if k - pk > 1 and x[pk] != x[k]:
            top = _push(blocks, ends, top, pk, k, pf, pe, f_lo, e_lo)
        pk, pf, pe = k, f_hi, e_hi
    # refine the blocks that may hold a larger distance, most promising first
    while top > 0:
        top -= 1
        if _bound(ends, top) + _SLACK <= best:
            continue
        lo, hi = blocks[top, 0], blocks[top, 1]
        fa, ea, fb, eb = ends[top, 0], ends[top, 1], ends[top, 2], ends[top, 3]
        if hi - lo <= _LEAF:
            for k in range(lo + 1, hi):
                f_lo, e_lo, f_hi, e_hi = _cdfs(k, x, discrete, a, lx, zmin, scale, i, m)
                g = max(abs(f_lo - e_lo), abs(f_hi - e_hi))
                if g > best:
                    best, arg = g, k
                    if best > thr:
                        return best, arg
            continue
        base = top
        pk, pf, pe = lo, fa, ea
        for j in range(1, _SPLIT + 1):
            if j == _SPLIT:
                k, f_lo, e_lo, f_hi, e_hi = hi, fb, eb, fb, eb
            else:
                k = lo + (j * (hi - lo)) // _SPLIT
                f_lo, e_lo, f_hi, e_hi = _cdfs(k, x, discrete, a, lx, zmin, scale, i, m)
                g = max(abs(f_lo - e_lo), abs(f_hi - e_hi))
                if g > best:
                    best, arg = g, k
                    if best > thr:
                        return best, arg
            if k - pk > 1 and x[pk] != x[k]:  # a block inside one run of ties holds nothing new
                top = _push(blocks, ends, top, pk, k, pf, pe, f_lo, e_lo)
            pk, pf, pe = k, f_hi, e_hi
        _order(blocks, ends, base, top)
    return best, arg


@njit(cache=True, error_model="numpy")
def search(starts, xmins, alphas, x, discrete, xmax, seeds, strides):
    """Index of the candidate with the smallest KS distance (ties: the smallest index) and that distance.

    Candidate ``r`` starts at ``starts[r]``; with ``starts`` empty, at point ``r`` (and ``r`` inside a run of
    ties is no candidate). ``seeds`` are visited first, then every ``strides[j]``-th candidate for each
    stride in turn (each a divisor of the one before; the last is 1), skipping those the previous stride
    visited."""
    blocks = np.empty((_STACK, 2), dtype=np.int64)
    ends = np.empty((_STACK, 4))
    best_d = np.inf
    best_r = -1
    hint = -1
    for p in range(seeds.size + strides.size):
        if p < seeds.size:
            first, stop, step = seeds[p], seeds[p] + 1, 1
        else:
            first, stop, step = 0, alphas.size, strides[p - seeds.size]
            hint = -1
        previous = strides[p - seeds.size - 1] if p > seeds.size else 0
        for r in range(first, stop, step):
            if previous > 0 and r % previous == 0:
                continue
            if starts.size == 0 and r > 0 and x[r - 1] == x[r]:
                continue
            i = starts[r] if starts.size else r
            dist, hint = ks_distance(i, alphas[r], xmins[r], best_d, hint, x, discrete, xmax, blocks, ends)
            if dist < best_d or (dist == best_d and r < best_r):
                best_d, best_r = dist, r
    return best_r, best_d


@njit(cache=True, error_model="numpy")
def tail_log_sums(x, starts, out, closed_form):
    """``out[r]`` = sum of log x over the tail of candidate ``r`` (the points from ``starts[r]`` on, ``starts``
    ascending; empty: from point ``r`` on, for ``r < out.size``). Summed one point at a time from the
    largest down, as ``numpy.cumsum`` of the reversed data does. With ``closed_form`` (``starts`` empty)
    ``out[r]`` is instead the continuous untruncated MLE 1 + m / sum log(x / x[r]) (Clauset eq. 3.1) in the
    operations of ``1 + 1 / (sum/m - log xmin)``; entries inside a run of ties are not candidates and are
    left meaningless."""
    n = x.size
    r = out.size - 1
    s = 0.0
    y = 0.0
    for k in range(n - 1, -1, -1):
        if k == n - 1 or x[k] != x[k + 1]:
            y = math.log(x[k])
        s += y
        if starts.size == 0:
            if k <= r:
                out[k] = 1.0 + 1.0 / (s / (n - k) - y) if closed_form else s
        else:
            while r >= 0 and starts[r] == k:
                out[r] = s
                r -= 1
            if r < 0:
                break
