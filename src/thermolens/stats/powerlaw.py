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

Speed: the exponent of every candidate comes from suffix sums in O(n). The KS distance of a candidate
is bracketed from K points at evenly spaced tail ranks: between two sampled points both CDFs are
monotone, so the distance there is at most max(F2 - e1, e2 - F1). Candidates whose lower bound
exceeds the best exact distance are dropped; K grows eightfold per round until it covers every point of
the survivors. The answer is the exact minimum, not an approximation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

from thermolens.stats._data import MIN_TAIL, as_sample, check_tail

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
    """Root of E_alpha[log X] = mean_log (E is decreasing in alpha): Newton steps kept inside a bisection bracket.

    Returns (alpha, at_bound)."""
    lo = np.full_like(mean_log, _ALPHA_MIN_DISCRETE if (discrete or xmax is None) else _ALPHA_MIN_TRUNCATED)
    hi = np.full_like(mean_log, ALPHA_MAX)
    a = np.clip(alpha0, lo + 1e-6, hi - 1e-6)
    for _ in range(60):
        m, v = _mean_var_log(a, xmin, xmax, discrete)
        g = m - mean_log  # > 0: alpha too small
        lo = np.where(g > 0, a, lo)
        hi = np.where(g <= 0, a, hi)
        step = a + g / np.maximum(v, 1e-300)  # dE/dalpha = -Var
        inside = (step > lo) & (step < hi) & np.isfinite(step)
        new = np.where(inside, step, 0.5 * (lo + hi))
        done = np.abs(new - a) < 1e-11 * np.maximum(1.0, np.abs(a))
        a = new
        if done.all():
            break
    bound_lo = _ALPHA_MIN_DISCRETE if (discrete or xmax is None) else _ALPHA_MIN_TRUNCATED
    at_bound = (a - bound_lo < 1e-7) | (ALPHA_MAX - a < 1e-7)
    return a, at_bound


def _cdf_below(x, alpha, xmin, xmax, discrete):
    """P(X < x) for x >= xmin (arrays broadcast; alpha/xmin per row)."""
    if discrete:
        z_min = special.zeta(alpha, xmin)
        z_x = special.zeta(alpha, x)
        z_top = 0.0 if xmax is None else special.zeta(alpha, xmax + 1.0)
        return (z_min - z_x) / (z_min - z_top)
    t = -np.expm1((1.0 - alpha) * np.log(x / xmin))
    if xmax is None:
        return t
    return t / -np.expm1((1.0 - alpha) * np.log(xmax / xmin))


def loglikelihoods(x: np.ndarray, alpha: float, xmin: float, *, discrete: bool, xmax: float | None = None):
    """Pointwise log p(x) of the power law for tail values ``x`` (the building block of likelihood ratios)."""
    x = np.asarray(x, dtype=np.float64)
    if discrete:
        return -alpha * np.log(x) - _log_norm_discrete(np.asarray(alpha), np.asarray(xmin), xmax)
    if xmax is None:
        log_norm = np.log(alpha - 1.0) - np.log(xmin)
    elif alpha == 1.0:
        log_norm = -np.log(xmin) - np.log(np.log(xmax / xmin))
    else:  # (alpha - 1) / (xmin (1 - (xmax/xmin)^(1 - alpha))) > 0 for either sign of alpha - 1
        cut = -np.expm1((1.0 - alpha) * np.log(xmax / xmin))
        log_norm = np.log(abs(alpha - 1.0)) - np.log(xmin) - np.log(abs(cut))
    return log_norm - alpha * np.log(x / xmin)


# --------------------------------------------------------------------------------------------------
# KS distance of every candidate, exactly, with bracketing and pruning


@dataclass(frozen=True)
class _Tail:
    x: np.ndarray  # (n,) sorted data used for the fit
    logx: np.ndarray  # (n,) log x
    first: np.ndarray  # (n,) index of the first occurrence of x[j]'s value
    last: np.ndarray  # (n,) index of the last occurrence of x[j]'s value
    starts: np.ndarray  # (c,) first index of each candidate xmin
    xmins: np.ndarray  # (c,)
    alpha: np.ndarray  # (c,)
    discrete: bool
    xmax: float | None


def _distances(tail: _Tail, r: np.ndarray, i: np.ndarray, pos: np.ndarray):
    """|F - e| at data indices ``pos`` of candidates ``r`` (starting at data index ``i``), and the CDF pairs
    just below (f, e) and, for discrete data, at (f2, e2) = (F(X <= x), fraction <= x)."""
    m = tail.x.size - i
    alpha, xmin = tail.alpha[r][:, None], tail.xmins[r][:, None]
    e = (tail.first[pos] - i) / m
    if not tail.discrete:  # log x is precomputed: one exp per point instead of a log and an exp
        f = -np.expm1((1.0 - alpha) * (tail.logx[pos] - np.log(xmin)))
        if tail.xmax is not None:
            f = f / -np.expm1((1.0 - alpha) * np.log(tail.xmax / xmin))
        d = np.abs(f - e)
        return d, f, e, f, e
    xv = tail.x[pos]
    f = _cdf_below(xv, alpha, xmin, tail.xmax, True)
    d = np.abs(f - e)
    e2 = (tail.last[pos] + 1 - i) / m
    f2 = _cdf_below(xv + 1.0, alpha, xmin, tail.xmax, True)
    return np.maximum(d, np.abs(f2 - e2)), f, e, f2, e2


def _bracket(tail: _Tail, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lower and upper bounds of the KS distance of candidates ``rows`` from ``k`` points each, and the
    data index of the sampled point where the distance was largest."""
    n = tail.x.size
    lb = np.empty(rows.size)
    ub = np.empty(rows.size)
    peak = np.empty(rows.size, dtype=np.int64)
    chunk = max(1, (1 << 21) // k)
    ks = np.arange(k, dtype=np.int64)
    for s in range(0, rows.size, chunk):
        r = rows[s : s + chunk]
        i = tail.starts[r][:, None]  # (rows, 1)
        m = n - i
        pos = i + (ks[None, :] * (m - 1)) // (k - 1)  # (rows, k) tail ranks, both ends included
        d, f, e, f2, e2 = _distances(tail, r, i, pos)
        arg = d.argmax(axis=1)
        lo = d[np.arange(r.size), arg]
        # between two sampled points every CDF value lies between its values at the two ends
        gap = np.maximum(f2[:, 1:] - e[:, :-1], e2[:, 1:] - f[:, :-1]).max(axis=1)
        exact = m[:, 0] <= k  # every point was sampled
        lb[s : s + r.size] = lo
        ub[s : s + r.size] = np.where(exact, lo, np.maximum(lo, gap))
        peak[s : s + r.size] = pos[np.arange(r.size), arg]
    return lb, ub, peak


def _window(tail: _Tail, rows: np.ndarray, centre: np.ndarray, half: int) -> np.ndarray:
    """Largest |F - e| over the 2*half+1 consecutive points around ``centre`` (a lower bound of the KS
    distance that is usually exact: the coarse maximum sits next to the true one)."""
    n = tail.x.size
    out = np.empty(rows.size)
    offs = np.arange(-half, half + 1, dtype=np.int64)
    chunk = max(1, (1 << 21) // offs.size)
    for s in range(0, rows.size, chunk):
        r = rows[s : s + chunk]
        i = tail.starts[r][:, None]
        pos = np.clip(centre[s : s + chunk, None] + offs[None, :], i, n - 1)
        out[s : s + r.size] = _distances(tail, r, i, pos)[0].max(axis=1)
    return out


def _exact_ks(tail: _Tail, row: int) -> float:
    i = int(tail.starts[row])
    r = np.array([row])
    pos = np.arange(i, tail.x.size)[None, :]
    return float(_distances(tail, r, np.array([[i]]), pos)[0].max())


def _best_candidate(tail: _Tail) -> tuple[int, float]:
    """Index (into the candidates) and KS distance of the candidate with the smallest distance.

    Each round brackets the survivors' distances from K points, evaluates the few most promising
    candidates exactly (a tight bound on the minimum), and drops every candidate whose lower bound
    exceeds it. Ties go to the smallest xmin, as in ``plfit``/``powerlaw``."""
    m_all = tail.x.size - tail.starts
    exact: dict[int, float] = {}

    def evaluate(row: int) -> float:
        if row not in exact:
            exact[row] = _exact_ks(tail, row)
        return exact[row]

    alive = np.arange(tail.starts.size)
    best = np.inf
    k = 16
    while True:
        lb, ub, peak = _bracket(tail, alive, k)
        best = min(best, float(ub.min()))
        for j in np.argsort(lb)[:4]:
            best = min(best, evaluate(int(alive[j])))
        keep = lb <= best * (1 + 1e-12)
        alive, lb, ub, peak = alive[keep], lb[keep], ub[keep], peak[keep]
        half = int(min(256 if k > 16 else 32, -(-int(m_all[alive].max()) // (k - 1))))
        lb = np.maximum(lb, _window(tail, alive, peak, half))
        keep = lb <= best * (1 + 1e-12)
        alive, lb, ub = alive[keep], lb[keep], ub[keep]
        for row, d in zip(alive[m_all[alive] <= k], lb[m_all[alive] <= k]):
            exact[int(row)] = float(d)
        if (m_all[alive] <= k).all():
            break  # every survivor was evaluated at all of its points
        k = min(8 * k, int(m_all[alive].max()))
    for j in np.argsort(lb):
        if lb[j] > best * (1 + 1e-12):
            break
        best = min(best, evaluate(int(alive[j])))
    winners = [row for row in alive if exact.get(int(row), np.inf) <= best]
    return int(min(winners)), float(best)


# --------------------------------------------------------------------------------------------------
# the fitter


def _prepare(x: ArrayLike, discrete: bool, xmax: float | None) -> np.ndarray:
    """Sorted, validated data, cut at xmax."""
    data = as_sample(x, discrete=discrete)
    if xmax is None:
        return data
    if not np.isfinite(xmax) or xmax <= 0:
        raise ValueError(f"xmax={xmax} must be a positive finite number (or omitted)")
    if discrete and xmax != np.floor(xmax):
        raise ValueError(f"xmax={xmax} must be an integer for a discrete fit")
    kept = data[data <= xmax]
    if kept.size == 0 or kept.min() == kept.max():
        raise ValueError(f"xmax={xmax:g} leaves fewer than two distinct values; raise xmax")
    return kept


def _candidate_alphas(x, starts, xmins, discrete, xmax):
    """MLE exponent for every candidate xmin from suffix sums of log x."""
    n = x.size
    logx = np.log(x)
    suffix = np.concatenate([np.cumsum(logx[::-1])[::-1], [0.0]])
    m = (n - starts).astype(np.float64)
    mean_log = suffix[starts] / m
    rel = mean_log - np.log(xmins)  # mean log(x/xmin)
    if not discrete and xmax is None:
        with np.errstate(divide="ignore"):
            return 1.0 + 1.0 / rel, np.zeros(starts.size, dtype=bool)
    shift = np.log(xmins / np.maximum(xmins - 0.5, 0.5)) if discrete else 0.0
    alpha0 = 1.0 + 1.0 / np.maximum(rel + shift, 1e-12)  # Clauset eq. (3.7) approximation as the start
    return _solve_alpha(mean_log, xmins, xmax, discrete, alpha0)


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
    ``discrete``: integer data, Hurwitz-zeta normalisation.
    """
    if min_tail < 2:
        raise ValueError(f"min_tail={min_tail} must be at least 2")
    data = _prepare(x, discrete, xmax)
    n = data.size
    first = np.searchsorted(data, data, side="left")
    last = np.searchsorted(data, data, side="right") - 1
    fixed = xmin is not None and np.ndim(xmin) == 0
    if fixed:
        xmin_f = float(xmin)  # type: ignore[arg-type]
        if not np.isfinite(xmin_f) or xmin_f <= 0:
            raise ValueError(f"xmin={xmin} must be a positive finite number")
        if discrete and xmin_f != np.floor(xmin_f):
            raise ValueError(f"xmin={xmin_f:g} must be an integer for a discrete fit")
        if xmin_f > data[-1]:
            raise ValueError(f"xmin={xmin_f:g} is above the largest value {data[-1]:g}; lower xmin")
        starts = np.searchsorted(data, [xmin_f], side="left")
        check_tail(int(n - starts[0]), xmin_f)
        xmins = np.array([xmin_f])
    else:
        if xmin is None:
            starts = np.flatnonzero(np.r_[True, data[1:] != data[:-1]])[:-1]  # distinct values but the largest
            xmins = data[starts]
        else:
            grid = np.unique(np.asarray(xmin, dtype=np.float64))
            if grid.size == 0 or not np.all(np.isfinite(grid)) or (grid <= 0).any():
                raise ValueError("the xmin grid must hold positive finite values")
            if discrete and not np.all(grid == np.floor(grid)):
                raise ValueError("the xmin grid must hold integers for a discrete fit")
            grid = grid[grid < data[-1]]
            if grid.size == 0:
                raise ValueError(f"every xmin in the grid is at or above the largest value {data[-1]:g}; lower them")
            starts, xmins = np.searchsorted(data, grid, side="left"), grid
        ok = n - starts >= min_tail
        if not ok.any():
            raise ValueError(
                f"no xmin candidate leaves {min_tail} points in the tail ({n} points in all); pass more data"
            )
        starts, xmins = starts[ok], xmins[ok]
    alphas, at_bound = _candidate_alphas(data, starts, xmins, discrete, xmax)
    tail = _Tail(data, np.log(data), first, last, starts, xmins, alphas, discrete, xmax)
    best, ks = _best_candidate(tail)
    alpha = float(alphas[best])
    x_min = float(xmins[best])
    tail_x = data[starts[best] :]
    _, var = _mean_var_log(np.asarray(alpha), np.asarray(x_min), xmax, discrete)
    return PowerLawFit(
        alpha=alpha,
        xmin=x_min,
        n_tail=int(tail_x.size),
        ks_distance=ks,
        alpha_stderr=float(1.0 / np.sqrt(tail_x.size * var)),
        discrete=discrete,
        xmax=None if xmax is None else float(xmax),
        n=int(n),
        loglikelihood=float(loglikelihoods(tail_x, alpha, x_min, discrete=discrete, xmax=xmax).sum()),
        alpha_at_bound=bool(at_bound[best]),
        n_candidates=int(starts.size),
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
    def build(cls, alpha: float, xmin: float, *, discrete: bool, xmax: float | None = None, table_size: int = 20000):
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
