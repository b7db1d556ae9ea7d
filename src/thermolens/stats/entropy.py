"""Entropy rates of symbol sequences: exact for Markov chains, estimated from a sample otherwise.

All values are in **bits per symbol**. Three functions:

* :func:`markov_entropy_rate` — the exact rate of a stationary Markov chain,
  ``H = -sum_s pi_s sum_t P_st log2 P_st`` (Cover & Thomas, *Elements of Information Theory*,
  Thm 4.2.4).
* :func:`plugin_entropy_rate` — the plug-in (maximum-likelihood) conditional block entropy
  ``H(X_{k+1} | X_1..X_k) = H_{k+1} - H_k`` from the empirical ``(k+1)``-gram counts, with the
  Miller–Madow correction (Miller 1955) on by default. ``order`` = ``k`` is the number of preceding
  symbols conditioned on (``order=0``: the entropy of the marginal). For a Markov chain of order
  ``<= k`` it converges to the entropy rate; the uncorrected estimate is biased low by about
  ``(m_{k+1} - m_k) / (2 N ln 2)`` bits, with ``m_j`` the number of distinct ``j``-grams seen and
  ``N`` the number of windows — which is what Miller–Madow adds back.
* :func:`lz_entropy_rate` — the increasing-window match-length estimator of Kontoyiannis, Algoet,
  Suhov & Wyner (1998, IEEE Trans. Inf. Theory 44:1319; Grassberger 1989):
  ``H = [ (1/n) sum_i Lambda_i / log2(i) ]^-1`` where ``Lambda_i`` is the length of the shortest
  string starting at position ``i`` that does not start anywhere in ``x_0..x_{i-1}`` (the match
  may run past ``i``). It needs no order, so it also sees long-range structure, but it converges
  slowly (bias of order ``1/log n``); see docs/sources.md for a table against the exact values.
  ``form="ratio"`` is the mean-of-ratios variant (Gao, Kontoyiannis & Bienenstock 2008), robust
  to the long verbatim repeats of real text.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "LZ_FORMS",
    "entropy_bits",
    "lz_entropy_rate",
    "markov_entropy_rate",
    "match_lengths",
    "plugin_entropy_rate",
    "stationary_distribution",
]


def _as_sequence(seq: ArrayLike, *, min_length: int) -> np.ndarray:
    """A 1-D int64 array of symbols, relabelled ``0..m-1`` (the labels do not change any entropy)."""
    x = np.asarray(seq)
    if x.ndim != 1:
        raise ValueError(f"the sequence must be 1-D (one stream of symbols), got shape {x.shape}; flatten it first")
    if x.size < min_length:
        raise ValueError(f"the sequence has {x.size} symbols; need at least {min_length} for this estimate")
    if not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"symbols must be integers, got dtype {x.dtype}; map your symbols to integer ids")
    return np.unique(x, return_inverse=True)[1].astype(np.int64).reshape(-1)


def entropy_bits(p: ArrayLike) -> float:
    """Shannon entropy ``-sum p log2 p`` of a probability vector (zeros contribute nothing)."""
    p = np.asarray(p, dtype=np.float64)
    nz = p[p > 0]
    return float(-(nz * np.log2(nz)).sum())


# --------------------------------------------------------------------------------------------------
# exact: Markov chains


def stationary_distribution(P: ArrayLike) -> np.ndarray:
    """The stationary distribution ``pi = pi P`` of an irreducible row-stochastic matrix ``P``."""
    P = np.asarray(P, dtype=np.float64)
    if P.ndim != 2 or P.shape[0] != P.shape[1]:
        raise ValueError(f"P must be a square transition matrix, got shape {P.shape}")
    if np.any(P < 0) or not np.allclose(P.sum(axis=1), 1.0, atol=1e-10):
        raise ValueError("P must be row-stochastic (non-negative rows summing to 1)")
    n = P.shape[0]
    # pi (P - I) = 0 with sum(pi) = 1: replace one (redundant) equation by the normalization
    A = (P - np.eye(n)).T
    A[-1, :] = 1.0
    b = np.zeros(n)
    b[-1] = 1.0
    pi = np.linalg.solve(A, b)
    if np.any(pi < -1e-12):
        raise ValueError("P has no unique stationary distribution (is the chain irreducible?)")
    return np.clip(pi, 0.0, None) / np.clip(pi, 0.0, None).sum()


def markov_entropy_rate(P: ArrayLike, pi: ArrayLike | None = None) -> float:
    """Exact entropy rate (bits/step) ``-sum_s pi_s sum_t P_st log2 P_st`` of a stationary chain.

    ``P`` is ``(n_states, n_next)``: row ``s`` is the distribution of the next symbol in state
    ``s``. For a first-order chain ``n_next = n_states`` and ``pi`` defaults to the stationary
    distribution; for a higher-order chain (state = last ``k`` symbols) pass its stationary ``pi``.
    """
    P = np.asarray(P, dtype=np.float64)
    if P.ndim != 2:
        raise ValueError(f"P must be 2-D (n_states, n_next), got shape {P.shape}")
    if pi is None:
        pi = stationary_distribution(P)
    pi = np.asarray(pi, dtype=np.float64)
    if pi.shape != (P.shape[0],):
        raise ValueError(f"pi has shape {pi.shape}; need ({P.shape[0]},), one weight per row of P")
    if not math.isclose(float(pi.sum()), 1.0, abs_tol=1e-9) or np.any(pi < 0):
        raise ValueError("pi must be a probability vector (non-negative, summing to 1)")
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(P > 0, P * np.log2(np.where(P > 0, P, 1.0)), 0.0)
    return float(-(pi[:, None] * plogp).sum())


# --------------------------------------------------------------------------------------------------
# plug-in conditional block entropy


def _block_codes(x: np.ndarray, length: int) -> np.ndarray:
    """Integer ids of the ``length``-grams starting at ``0..len(x)-length`` (equal ids = equal blocks).

    Built one symbol at a time, ``id_j = rank(id_{j-1} * m + x_{i+j})``, so no id ever overflows.
    """
    n = x.size - length + 1
    m = int(x.max()) + 1
    codes = x[:n].copy()
    for j in range(1, length):
        codes = np.unique(codes * m + x[j : j + n], return_inverse=True)[1].reshape(-1)
    return codes


def plugin_entropy_rate(seq: ArrayLike, order: int, *, miller_madow: bool = True) -> float:
    """Plug-in ``H(X_{k+1} | X_1..X_k)`` in bits, ``k = order``, with the Miller–Madow correction.

    Counts every window of ``k+1`` consecutive symbols (``N = len(seq) - k`` of them). The estimate
    is ``sum_c (N_c / N) H_c`` over contexts ``c`` (the first ``k`` symbols of a window), ``H_c``
    the empirical entropy of the next symbol after ``c``; Miller–Madow adds
    ``(m_c - 1) / (2 N_c ln 2)`` to each ``H_c`` (``m_c`` = distinct next symbols seen after ``c``),
    i.e. ``(m_{k+1} - m_k) / (2 N ln 2)`` in total.
    """
    if not isinstance(order, (int, np.integer)) or order < 0:
        raise ValueError(f"order must be a non-negative integer (symbols of context), got {order!r}")
    x = _as_sequence(seq, min_length=int(order) + 2)
    order = int(order)
    m = int(x.max()) + 1
    # id of the k symbols before each predicted symbol x[order:]
    context = _block_codes(x[:-1], order) if order > 0 else np.zeros(x.size, dtype=np.int64)
    nxt = x[order:]
    joint = np.unique(context * m + nxt, return_inverse=True)[1].reshape(-1)
    n = nxt.size
    joint_counts = np.bincount(joint).astype(np.float64)
    context_counts = np.bincount(context).astype(np.float64)
    context_counts = context_counts[context_counts > 0]
    # H(X_{k+1} | context) = H(joint) - H(context), both plug-in over the same N windows
    h_joint = -np.sum(joint_counts / n * np.log2(joint_counts / n))
    h_context = -np.sum(context_counts / n * np.log2(context_counts / n))
    h = float(h_joint - h_context)
    if miller_madow:
        h += (joint_counts.size - context_counts.size) / (2.0 * n * math.log(2.0))
    return max(h, 0.0)


# --------------------------------------------------------------------------------------------------
# Lempel-Ziv match lengths


def match_lengths(seq: ArrayLike) -> np.ndarray:
    """``Lambda_i`` for every position ``i``: 1 + the longest ``l`` such that ``x_i..x_{i+l-1}``
    also starts at some ``j < i`` (overlap allowed). Positions whose match runs into the end of the
    sequence get ``-1`` (their ``Lambda`` is not determined by the data).

    Exact, from the suffix and LCP arrays (longest previous factors, see ``stats/_strings.py``).
    """
    from thermolens.stats._strings import lcp_array, longest_previous_factor, suffix_array

    x = _as_sequence(seq, min_length=2)
    sa = suffix_array(x)
    lpf = longest_previous_factor(sa, lcp_array(x, sa))
    lam = lpf + 1
    lam[np.arange(x.size) + lpf >= x.size] = -1
    return lam


LZ_FORMS = ("kontoyiannis", "ratio")


def lz_entropy_rate(seq: ArrayLike, *, form: str = "kontoyiannis") -> float:
    """Increasing-window Lempel–Ziv estimate of the entropy rate, bits/symbol.

    ``form="kontoyiannis"``: ``[ (1/n) sum_{i>=2} Lambda_i / log2 i ]^-1``, Kontoyiannis et al.
    (1998), IEEE Trans. Inf. Theory 44:1319 (the estimator the package uses by default).
    ``form="ratio"``: ``(1/n) sum_{i>=2} log2(i) / Lambda_i``, the mean-of-ratios form of Gao,
    Kontoyiannis & Bienenstock (2008, arXiv:0802.4363); a few very long matches (verbatim repeated
    passages in a text) barely move it, whereas they dominate the mean of ``Lambda_i`` in the first
    form and drive it towards 0. A match that runs into the end of the data counts with its lower
    bound ``Lambda_i = n - i + 1``.
    """
    if form not in LZ_FORMS:
        raise ValueError(f"form must be one of {LZ_FORMS}, got {form!r}")
    lam = match_lengths(seq)
    i = np.arange(lam.size, dtype=np.float64)
    # a match that runs into the end is at least n - i long: count it with that lower bound
    # (only the last ~log n positions of typical data; every position of periodic data)
    lam = np.where(lam > 0, lam, lam.size - i + 1.0)
    use = i >= 2
    if use.sum() < 2:
        raise ValueError("the sequence is too short for the LZ estimate; pass at least 4 symbols")
    if form == "ratio":
        return float(np.mean(np.log2(i[use]) / lam[use]))
    return float(1.0 / np.mean(lam[use] / np.log2(i[use])))
