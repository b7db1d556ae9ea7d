"""Power-law fits: maximum-likelihood exponent and the KS-optimal lower cutoff (Clauset et al. 2009).

Model above ``xmin`` (and below an optional ``xmax``)::

    continuous  p(x) = (alpha - 1)/xmin * (x/xmin)^-alpha        (normalised on [xmin, xmax])
    discrete    p(x) = x^-alpha / zeta(alpha, xmin)              (Hurwitz zeta; minus zeta(alpha, xmax+1))

``alpha`` is the MLE (closed form 1 + n / sum log(x/xmin) for the continuous, untruncated law; otherwise
the root of the score equation E_alpha[log X] = mean(log x), solved by a safeguarded Newton
iteration); its standard error is 1/sqrt(n Var_alpha(log X)) (Fisher information), which for the
continuous untruncated law is (alpha - 1)/sqrt(n). ``xmin`` minimises the KS distance between the tail
and the fitted law over every distinct data value (all but the largest), arXiv:0706.1062 §3.3.

KS distance conventions, those of Clauset's reference code ``plfit``: continuous data compare the CDFs
just below each tail point, D = max_j |F(x_j) - j/n| (also what ``powerlaw`` does); discrete data compare
P(X <= u) with the empirical fraction <= u at every integer u >= xmin, the true sup distance between the
two step functions. (``powerlaw`` compares discrete CDFs only just below each value, which never tests
the jump at a value, e.g. at xmin itself; its discrete KS distances are therefore smaller than these.)

Speed (``_kssearch.py``, numba): the exponent of every candidate comes from suffix sums of log x in O(n),
and the KS distances are searched by branch and bound: between two evaluated points both CDFs are
monotone, which bounds the distance there; a candidate is dropped as soon as one of its points is farther
from its law than the best exact distance found so far, and every other candidate is evaluated exactly.
The answer is the exact minimum over every candidate, not an approximation (no grid, no subsampling).
Time grows as ~n (1e8 values: about 15 s on one core) and memory as ~16 bytes per value: the sorted
sample and one exponent per candidate (benchmarks/bench_fit_scale.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

from thermolens.stats import _kssearch
from thermolens.stats._data import MIN_TAIL, as_sample, blocks, check_tail

ALPHA_MAX = 40.0  # upper end of the exponent search where no closed form exists; reaching it is reported
_ALPHA_MIN_DISCRETE = 1.0 + 1e-9  # the untruncated discrete law needs alpha > 1
_ALPHA_MIN_TRUNCATED = -20.0
_H = 1e-4  # step of the central differences of log zeta (error ~h^2 ~ 1e-8 in alpha)


@dataclass(frozen=True)
class PowerLawFit:
    """A fitted power law. ``alpha_at_bound`` is True when the MLE sits at the edge of the searched range
    (then ``alpha`` is that edge, not an optimum). ``n`` counts the data used (those <= ``xmax``)."""

    alpha: float
    xmin: float
    n_tail: int
    ks_distance: float
    alpha_stderr: float
    discrete: bool
    xmax: float | None
    n: int
    loglikelihood: float
    alpha_at_bound: bool
    n_candidates: int
    xmin_fixed: bool

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame([asdict(self)])


# --------------------------------------------------------------------------------------------------
# normalisation and moments of log X, vectorised over candidate (alpha, xmin, xmax)


def _log_norm_discrete(alpha: np.ndarray, xmin: np.ndarray, xmax: float | None) -> np.ndarray:
    """log sum_{x=xmin}^{xmax} x^-alpha (alpha > 1)."""
    z = special.zeta(alpha, xmin)
    if xmax is not None:
        z = z - special.zeta(alpha, xmax + 1.0)
    return np.log(z)


def _mean_var_log(alpha, xmin, xmax, discrete):
    """E[log X] and Var[log X] under the law; for the discrete law by central differences of log Z."""
    alpha = np.asarray(alpha, dtype=np.float64)
    xmin = np.asarray(xmin, dtype=np.float64)
    if discrete:
        a = np.maximum(alpha, _ALPHA_MIN_DISCRETE + _H)
        lz0 = _log_norm_discrete(a, xmin, xmax)
        lzp = _log_norm_discrete(a + _H, xmin, xmax)
        lzm = _log_norm_discrete(a - _H, xmin, xmax)
        return -(lzp - lzm) / (2 * _H), (lzp - 2 * lz0 + lzm) / _H**2
    lam = alpha - 1.0  # u = log(x/xmin) is exponential with rate lam, truncated at L = log(xmax/xmin)
    if xmax is None:
        return np.log(xmin) + 1.0 / lam, 1.0 / lam**2
    big_l = np.log(xmax / xmin)
    z = lam * big_l
    small = np.abs(z) < 1e-6
    zs = np.where(small, 1.0, z)
    lam_s = np.where(small, 1.0, lam)
    mean = np.where(small, big_l / 2 - lam * big_l**2 / 12, 1.0 / lam_s - big_l / np.expm1(zs))
    # Var = 1/lam^2 - L^2 e^z/(e^z - 1)^2; e^z/(e^z-1)^2 = 1/(4 sinh^2(z/2))
    var = np.where(small, big_l**2 / 12, 1.0 / lam_s**2 - big_l**2 / (4 * np.sinh(zs / 2) ** 2))
    return np.log(xmin) + mean, var


def _solve_alpha(mean_log, xmin, xmax, discrete, alpha0):
    """Root of E_alpha[log X] = mean_log (E is decreasing in alpha): Newton steps kept inside a bisection bracket,
    each entry until its step falls below 1e-11 relative (converged entries leave the iteration).

    Returns (alpha, at_bound)."""
    mean_log = np.asarray(mean_log, dtype=np.float64)
    xmin = np.broadcast_to(np.asarray(xmin, dtype=np.float64), mean_log.shape)
    lo = np.full_like(mean_log, _ALPHA_MIN_DISCRETE if (discrete or xmax is None) else _ALPHA_MIN_TRUNCATED)
    hi = np.full_like(mean_log, ALPHA_MAX)
    a = np.clip(alpha0, lo + 1e-6, hi - 1e-6)
    active = np.arange(a.size)
    for _ in range(60):
        a_k, lo_k, hi_k = a[active], lo[active], hi[active]
        m, v = _mean_var_log(a_k, xmin[active], xmax, discrete)
        g = m - mean_log[active]  # > 0: alpha too small
        lo_k = np.where(g > 0, a_k, lo_k)
        hi_k = np.where(g <= 0, a_k, hi_k)
        step = a_k + g / np.maximum(v, 1e-300)  # dE/dalpha = -Var
        inside = (step > lo_k) & (step < hi_k) & np.isfinite(step)
        new = np.where(inside, step, 0.5 * (lo_k + hi_k))
        done = np.abs(new - a_k) < 1e-11 * np.maximum(1.0, np.abs(a_k))
        a[active], lo[active], hi[active] = new, lo_k, hi_k
        active = active[~done]
        if active.size == 0:
            break
    return a, _at_bound(a, discrete, xmax)


def _at_bound(alpha, discrete, xmax):
    """True where an exponent from ``_solve_alpha`` sits at an edge of the searched range."""
    bound_lo = _ALPHA_MIN_DISCRETE if (discrete or xmax is None) else _ALPHA_MIN_TRUNCATED
    return (alpha - bound_lo < 1e-7) | (ALPHA_MAX - alpha < 1e-7)


def _log_norm_continuous(alpha: float, xmin: float, xmax: float | None) -> float:
    """log of the continuous law's prefactor: log p(x) = this - alpha log(x/xmin)."""
    if xmax is None:
        return np.log(alpha - 1.0) - np.log(xmin)
    if alpha == 1.0:
        return -np.log(xmin) - np.log(np.log(xmax / xmin))
    # (alpha - 1) / (xmin (1 - (xmax/xmin)^(1 - alpha))) > 0 for either sign of alpha - 1
    cut = -np.expm1((1.0 - alpha) * np.log(xmax / xmin))
    return np.log(abs(alpha - 1.0)) - np.log(xmin) - np.log(abs(cut))


def loglikelihoods(x: np.ndarray, alpha: float, xmin: float, *, discrete: bool, xmax: float | None = None):
    """Pointwise log p(x) of the power law for tail values ``x`` (the building block of likelihood ratios)."""
    x = np.asarray(x, dtype=np.float64)
    if discrete:
        return -alpha * np.log(x) - _log_norm_discrete(np.asarray(alpha), np.asarray(xmin), xmax)
    return _log_norm_continuous(alpha, xmin, xmax) - alpha * np.log(x / xmin)


# --------------------------------------------------------------------------------------------------
# the candidates and their exponents


def _full_candidates(data: np.ndarray, min_tail: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(starts, xmins, count) of the full search: every distinct value but the largest with ``min_tail`` points
    at or above it. Mostly distinct data get empty ``starts`` (the candidates are the leading point indices,
    a view of ``data`` their xmins); heavily tied data (integers) list the first index of each value."""
    n = data.size
    c = min(n - min_tail + 1, int(np.searchsorted(data, data[-1], side="left")))
    if c <= 0:
        raise ValueError(
            f"no xmin candidate leaves {min_tail} points in the tail ({n} points in all); pass more data"
        )
    n_distinct = 1 + sum(
        int(np.count_nonzero(data[sl.start + 1 : sl.stop + 1] != data[sl])) for sl in blocks(c - 1)
    )
    if 2 * n_distinct > c:
        return np.empty(0, dtype=np.int64), data[:c], n_distinct
    starts = np.concatenate(
        [[0]]
        + [
            sl.start + 1 + np.flatnonzero(data[sl.start + 1 : sl.stop + 1] != data[sl])
            for sl in blocks(c - 1)
        ]
    ).astype(np.int64)
    return starts, data[starts], n_distinct


def _candidate_alphas(data, starts, xmins, discrete, xmax) -> np.ndarray:
    """MLE exponent of every candidate from suffix sums of log x (block by block: no n-sized temporaries).

    ``starts`` empty means candidate r starts at point r (``xmins.size`` of them)."""
    n, c = data.size, xmins.size
    alphas = np.empty(c)
    closed_form = not discrete and xmax is None
    if closed_form and starts.size == 0:
        _kssearch.tail_log_sums(data, starts, alphas, True)
        return alphas
    _kssearch.tail_log_sums(data, starts, alphas, False)  # sums of log x, turned into alphas in place
    for sl in blocks(c):
        first = starts[sl] if starts.size else np.arange(sl.start, sl.stop)
        mean_log = alphas[sl] / (n - first).astype(np.float64)
        rel = mean_log - np.log(xmins[sl])  # mean log(x/xmin)
        if closed_form:
            with np.errstate(divide="ignore"):
                alphas[sl] = 1.0 + 1.0 / rel
            continue
        shift = np.log(xmins[sl] / np.maximum(xmins[sl] - 0.5, 0.5)) if discrete else 0.0
        alpha0 = 1.0 + 1.0 / np.maximum(rel + shift, 1e-12)  # Clauset eq. (3.7) approximation as the start
        alphas[sl] = _solve_alpha(mean_log, xmins[sl], xmax, discrete, alpha0)[0]
    return alphas


def _search_order(data: np.ndarray, starts: np.ndarray, c: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeds (candidates whose tails hold about n/2, n/4, ... points) and the strides 16^j, ..., 16, 1 of the
    coarse-to-fine visit (the first stride leaves 16 to 256 candidates)."""
    n = data.size
    sizes = n // 2 ** np.arange(1, max(2, int(np.log2(n))), dtype=np.int64)
    if starts.size:
        seeds = np.searchsorted(
            starts, n - sizes, side="left"
        )  # first candidate with at most that many points
    else:
        seeds = np.searchsorted(data, data[np.clip(n - sizes, 0, n - 1)], side="left")  # first of its value
    seeds = np.unique(seeds[seeds < c]).astype(np.int64)
    strides = [1]
    while strides[-1] * 16 * 16 <= c:
        strides.append(strides[-1] * 16)
    return seeds, np.array(strides[::-1], dtype=np.int64)


# --------------------------------------------------------------------------------------------------
# the fitter


def _prepare(x: ArrayLike, discrete: bool, xmax: float | None) -> np.ndarray:
    """Sorted, validated data, cut at xmax (a view: no copy)."""
    data = as_sample(x, discrete=discrete)
    if xmax is None:
        return data
    if not np.isfinite(xmax) or xmax <= 0:
        raise ValueError(f"xmax={xmax} must be a positive finite number (or omitted)")
    if discrete and xmax != np.floor(xmax):
        raise ValueError(f"xmax={xmax} must be an integer for a discrete fit")
    kept = data[: np.searchsorted(data, xmax, side="right")]
    if kept.size == 0 or kept[0] == kept[-1]:
        raise ValueError(f"xmax={xmax:g} leaves fewer than two distinct values; raise xmax")
    return kept


def _grid_candidates(data, xmin, discrete, min_tail, fixed):
    """(starts, xmins) of a fixed xmin or a user grid of them."""
    if fixed:
        xmin_f = float(xmin)
        if not np.isfinite(xmin_f) or xmin_f <= 0:
            raise ValueError(f"xmin={xmin} must be a positive finite number")
        if discrete and xmin_f != np.floor(xmin_f):
            raise ValueError(f"xmin={xmin_f:g} must be an integer for a discrete fit")
        if xmin_f > data[-1]:
            raise ValueError(f"xmin={xmin_f:g} is above the largest value {data[-1]:g}; lower xmin")
        starts = np.searchsorted(data, [xmin_f], side="left")
        check_tail(int(data.size - starts[0]), xmin_f)
        return starts, np.array([xmin_f])
    grid = np.unique(np.asarray(xmin, dtype=np.float64))
    if grid.size == 0 or not np.all(np.isfinite(grid)) or (grid <= 0).any():
        raise ValueError("the xmin grid must hold positive finite values")
    if discrete and not np.all(grid == np.floor(grid)):
        raise ValueError("the xmin grid must hold integers for a discrete fit")
    grid = grid[grid < data[-1]]
    if grid.size == 0:
        raise ValueError(f"every xmin in the grid is at or above the largest value {data[-1]:g}; lower them")
    starts = np.searchsorted(data, grid, side="left")
    ok = data.size - starts >= min_tail
    if not ok.any():
        raise ValueError(
            f"no xmin candidate leaves {min_tail} points in the tail ({data.size} points in all); pass more data"
        )
    return starts[ok], grid[ok]


def _loglikelihood(
    alpha: float, xmin: float, m: int, sum_log: float, discrete: bool, xmax: float | None
) -> float:
    """Sum of log p(x) over a tail of ``m`` points whose logs sum to ``sum_log`` (the law's sufficient statistic)."""
    if discrete:
        return -alpha * sum_log - m * float(_log_norm_discrete(np.asarray(alpha), np.asarray(xmin), xmax))
    return float(m * _log_norm_continuous(alpha, xmin, xmax) - alpha * (sum_log - m * np.log(xmin)))


def fit_power_law(
    x: ArrayLike,
    *,
    discrete: bool = False,
    xmin: float | Sequence[float] | None = None,
    xmax: float | None = None,
    min_tail: int = MIN_TAIL,
) -> PowerLawFit:
    """Fit a power law to the tail of ``x`` (Clauset, Shalizi & Newman 2009, arXiv:0706.1062).

    ``xmin``: ``None`` searches every distinct value (except the largest) whose tail holds at least
    ``min_tail`` points; a sequence searches only those values; a number fixes xmin. ``xmax``: optional
    upper truncation (data above it are discarded; the law is normalised on [xmin, xmax]).
    ``discrete``: integer data, Hurwitz-zeta normalisation. ``x`` may be any 1-D array of numbers (ints and
    float32 are converted once); a sorted float64 array is used without a copy.
    """
    if min_tail < 2:
        raise ValueError(f"min_tail={min_tail} must be at least 2")
    data = _prepare(x, discrete, xmax)
    n = data.size
    fixed = xmin is not None and np.ndim(xmin) == 0
    if xmin is None:
        starts, xmins, n_candidates = _full_candidates(data, min_tail)
    else:
        starts, xmins = _grid_candidates(data, xmin, discrete, min_tail, fixed)
        n_candidates = starts.size
    alphas = _candidate_alphas(data, starts, xmins, discrete, xmax)
    seeds, strides = _search_order(data, starts, xmins.size)
    best, ks = _kssearch.search(
        starts, xmins, alphas, data, discrete, 0.0 if xmax is None else float(xmax), seeds, strides
    )
    alpha = float(alphas[best])
    x_min = float(xmins[best])
    start = np.array([starts[best] if starts.size else best])
    n_tail = int(n - start[0])
    sum_log = np.empty(1)
    _kssearch.tail_log_sums(data, start, sum_log, False)
    _, var = _mean_var_log(np.asarray(alpha), np.asarray(x_min), xmax, discrete)
    closed_form = not discrete and xmax is None
    return PowerLawFit(
        alpha=alpha,
        xmin=x_min,
        n_tail=n_tail,
        ks_distance=float(ks),
        alpha_stderr=float(1.0 / np.sqrt(n_tail * var)),
        discrete=discrete,
        xmax=None if xmax is None else float(xmax),
        n=int(n),
        loglikelihood=_loglikelihood(alpha, x_min, n_tail, float(sum_log[0]), discrete, xmax),
        alpha_at_bound=False if closed_form else bool(_at_bound(alpha, discrete, xmax)),
        n_candidates=int(n_candidates),
        xmin_fixed=bool(fixed),
    )


# --------------------------------------------------------------------------------------------------
# sampling from a fitted law (synthetic data sets for the bootstrap and for tests)


@dataclass(frozen=True)
class PowerLawSampler:
    """Draws from the power law (alpha, xmin[, xmax]). Discrete draws use an exact inverse-CDF table for
    the first ``table_size`` integers and Clauset's rounding approximation (arXiv:0706.1062 eq. D.6)
    beyond it, where it is accurate to better than 1e-4 in probability."""

    alpha: float
    xmin: float
    xmax: float | None
    discrete: bool
    table: np.ndarray  # survival P(X >= xmin + k), k = 0..table_size (discrete only)

    @classmethod
    def build(
        cls, alpha: float, xmin: float, *, discrete: bool, xmax: float | None = None, table_size: int = 20000
    ):
        if discrete:
            top = table_size if xmax is None else min(table_size, int(xmax - xmin) + 1)
            k = xmin + np.arange(top + 1, dtype=np.float64)
            z_top = 0.0 if xmax is None else special.zeta(alpha, xmax + 1.0)
            z_min = special.zeta(alpha, xmin)
            table = (special.zeta(alpha, k) - z_top) / (z_min - z_top)
        else:
            table = np.empty(0)
        return cls(alpha, xmin, xmax, discrete, table)

    def sample(self, size: int, rng: np.random.Generator) -> np.ndarray:
        u = rng.random(size)
        a, xmin = self.alpha, self.xmin
        if not self.discrete:
            if self.xmax is None:
                return xmin * (1.0 - u) ** (-1.0 / (a - 1.0))
            cut = -np.expm1((1 - a) * np.log(self.xmax / xmin))
            return xmin * (1.0 - u * cut) ** (-1.0 / (a - 1.0))
        surv = 1.0 - u  # in (0, 1]
        # X = xmin + k where table[k] >= surv > table[k+1]; table is decreasing
        k = np.searchsorted(-self.table, -surv, side="right") - 1
        out = xmin + k.astype(np.float64)
        beyond = k >= self.table.size - 1
        if beyond.any():
            x0 = xmin + self.table.size - 1
            s0 = self.table[-1]
            rel = surv[beyond] / s0  # conditional survival beyond x0
            if self.xmax is not None:
                cut = -np.expm1((1 - a) * np.log((self.xmax + 0.5) / (x0 - 0.5)))
                rel = 1.0 - (1.0 - rel) * cut
            out[beyond] = np.floor((x0 - 0.5) * rel ** (-1.0 / (a - 1.0)) + 0.5)
            if self.xmax is not None:
                out = np.minimum(out, self.xmax)
        return out


def sample_power_law(
    alpha: float, xmin: float, size: int, *, discrete: bool = False, xmax: float | None = None, seed: int = 0
) -> np.ndarray:
    """``size`` independent draws from the power law (see ``PowerLawSampler``)."""
    if alpha <= 1 and xmax is None:
        raise ValueError(f"alpha={alpha} must exceed 1 for an untruncated power law")
    sampler = PowerLawSampler.build(alpha, xmin, discrete=discrete, xmax=xmax)
    return sampler.sample(size, np.random.default_rng(seed))
