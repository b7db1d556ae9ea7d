"""Suffix array, LCP array and longest previous factors of an integer string (numba-compiled loops).

The Lempel–Ziv entropy estimators need, for every position ``i``, the length of the longest string
starting at ``i`` that also starts somewhere before ``i`` — the *longest previous factor*
``LPF[i]`` (Crochemore & Ilie 2008, Inf. Process. Lett. 106:75). With the suffix array ``SA`` and
``LCP`` array, the best earlier start is one of the two lexicographic neighbours of suffix ``i``
among the suffixes that start before it (the nearest smaller ``SA`` value on either side in ``SA``
order), and the common prefix with a suffix ``r`` ranks away is the minimum of ``LCP`` in between.
Cost: ``O(n log n)`` for the suffix array (prefix doubling), ``O(n)`` for the rest.
"""

from __future__ import annotations

import numpy as np
from numba import njit


def suffix_array(x: np.ndarray) -> np.ndarray:
    """Start positions of the suffixes of ``x`` (non-negative ints) in lexicographic order.

    Prefix doubling (Manber & Myers 1993): rank by the first ``2k`` symbols from the ranks of the
    first ``k``; stops as soon as all ranks differ, i.e. after ``log2`` of the longest repeat.
    """
    n = x.size
    rank = np.unique(x, return_inverse=True)[1].reshape(-1).astype(np.int64)
    k = 1
    while True:
        second = np.full(n, -1, dtype=np.int64)
        second[: n - k] = rank[k:]
        order = np.lexsort((second, rank))
        r, s = rank[order], second[order]
        new = np.empty(n, dtype=np.int64)
        new[order] = np.cumsum(np.r_[0, (r[1:] != r[:-1]) | (s[1:] != s[:-1])])
        rank = new
        if rank[order[-1]] == n - 1 or k >= n:
            return order.astype(np.int64)
        k *= 2


@njit(cache=True)
def lcp_array(x, sa):  # pragma: no cover - compiled
    """``lcp[r]`` = common prefix length of suffixes ``sa[r-1]`` and ``sa[r]`` (``lcp[0] = 0``); Kasai et al. 2001."""
    n = x.shape[0]
    rank = np.empty(n, dtype=np.int64)
    for r in range(n):
        rank[sa[r]] = r
    lcp = np.zeros(n, dtype=np.int64)
    h = 0
    for i in range(n):
        r = rank[i]
        if r > 0:
            j = sa[r - 1]
            while i + h < n and j + h < n and x[i + h] == x[j + h]:
                h += 1
            lcp[r] = h
            if h > 0:
                h -= 1
        else:
            h = 0
    return lcp


@njit(cache=True)
def longest_previous_factor(sa, lcp):  # pragma: no cover - compiled
    """``lpf[i]`` = the longest ``l`` with ``x[i:i+l] == x[j:j+l]`` for some ``j < i`` (0 if none).

    Two monotone-stack passes over ``SA`` order; each stack entry carries the minimum ``LCP``
    between it and the current rank, so the common prefix with the nearest earlier-starting
    suffix on that side is known when it is found.
    """
    n = sa.shape[0]
    lpf = np.zeros(n, dtype=np.int64)
    stack_rank = np.empty(n, dtype=np.int64)
    stack_min = np.empty(n, dtype=np.int64)
    # left neighbours: nearest rank q < r with sa[q] < sa[r]; lcp = min(lcp[q+1..r])
    top = 0
    for r in range(n):
        carried = lcp[r] if r > 0 else 0
        # entries popped had sa >= sa[r]; fold their minima into the one below
        while top > 0 and sa[stack_rank[top - 1]] > sa[r]:
            carried = min(carried, stack_min[top - 1])
            top -= 1
        if top > 0:
            lpf[sa[r]] = carried
        stack_rank[top] = r
        stack_min[top] = carried if top > 0 else 0
        top += 1
    # right neighbours: nearest rank q > r with sa[q] < sa[r]; lcp = min(lcp[r+1..q])
    top = 0
    for r in range(n - 1, -1, -1):
        carried = lcp[r + 1] if r + 1 < n else 0
        while top > 0 and sa[stack_rank[top - 1]] > sa[r]:
            carried = min(carried, stack_min[top - 1])
            top -= 1
        if top > 0 and carried > lpf[sa[r]]:
            lpf[sa[r]] = carried
        stack_rank[top] = r
        stack_min[top] = carried if top > 0 else 0
        top += 1
    return lpf
