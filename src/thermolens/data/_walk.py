"""The sequential inner loop of Markov sampling, compiled (numba, cached on disk).

A chain is inherently sequential; in Python a million steps take seconds, compiled they take
milliseconds, which matters for the long single sequences the entropy estimators need.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def walk(cdf, start, uniforms, k, V, seq_len):  # pragma: no cover - compiled
    """``(n_seq, seq_len)`` tokens: the ``k`` base-``V`` digits of ``start[i]`` (most significant
    first), then one symbol per uniform by inverse CDF on the context's row; the context advances
    as ``s -> (s mod V^(k-1)) V + x``."""
    n_seq = start.shape[0]
    out = np.empty((n_seq, seq_len), dtype=np.int64)
    drop = V ** (k - 1)
    for i in range(n_seq):
        s = start[i]
        digit = drop
        for t in range(min(k, seq_len)):
            out[i, t] = (s // digit) % V
            digit //= V
        for t in range(k, seq_len):
            u = uniforms[i, t - k]
            x = np.searchsorted(cdf[s], u, side="right")
            if x >= V:  # u beyond a row sum that rounded below 1
                x = V - 1
            out[i, t] = x
            s = (s % drop) * V + x
    return out
