"""Avalanches from event data, their exponents, and the crackling-noise scaling relation.

Events are binned with width ``dt``. An avalanche is a maximal run of consecutive bins holding more than
``threshold`` events, bounded by quiet bins (Beggs & Plenz 2003); its size S is the number of events in
the run, its duration T the number of bins. Runs touching the first or last bin are incomplete and
dropped. Near criticality P(S) ~ S^-tau, P(T) ~ T^-tau_t and the mean size at fixed duration scales as
<S>(T) ~ T^gamma; scaling theory requires (tau_t - 1)/(tau - 1) = gamma (Sethna, Dahmen & Myers 2001,
arXiv:cond-mat/0102091; mean-field branching: tau = 3/2, tau_t = 2, gamma = 2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from thermolens.stats.powerlaw import PowerLawFit, fit_power_law


@dataclass(frozen=True)
class Avalanches:
    """Sizes (events), durations (bins; times are ``durations * dt``) and first bins of each avalanche."""

    sizes: np.ndarray
    durations: np.ndarray
    starts: np.ndarray
    dt: float
    n_bins: int
    n_events: int

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame(
            {"start_bin": self.starts, "size": self.sizes, "duration_bins": self.durations, "duration": self.durations * self.dt}
        )


@dataclass(frozen=True)
class CracklingResult:
    """Exponents of sizes and durations, gamma from <S>(T), and the scaling-relation check.
    ``deviation_sigma`` = |gamma_fit - gamma_predicted| / combined standard error."""

    tau: float
    tau_stderr: float
    tau_t: float
    tau_t_stderr: float
    gamma_fit: float
    gamma_fit_stderr: float
    gamma_predicted: float
    gamma_predicted_stderr: float
    deviation_sigma: float
    size_fit: PowerLawFit
    duration_fit: PowerLawFit
    durations: np.ndarray  # distinct durations used for gamma
    mean_sizes: np.ndarray  # <S> at those durations
    counts: np.ndarray  # avalanches per duration


def avalanches_from_counts(counts: ArrayLike, *, dt: float = 1.0, threshold: float = 0.0) -> Avalanches:
    """Avalanches of already-binned activity ``counts`` (events per bin, shape (n_bins,))."""
    c = np.asarray(counts, dtype=np.float64).ravel()
    if c.size == 0:
        raise ValueError("the activity is empty; pass event counts per time bin")
    if not np.all(np.isfinite(c)) or (c < 0).any():
        raise ValueError("event counts must be finite and >= 0")
    if dt <= 0:
        raise ValueError(f"dt={dt} must be positive")
    active = c > threshold
    edges = np.diff(np.r_[0, active.astype(np.int8), 0])
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)  # exclusive
    complete = (starts > 0) & (ends < c.size)
    starts, ends = starts[complete], ends[complete]
    csum = np.r_[0.0, np.cumsum(c)]
    return Avalanches(
        sizes=csum[ends] - csum[starts],
        durations=ends - starts,
        starts=starts,
        dt=float(dt),
        n_bins=int(c.size),
        n_events=int(round(csum[-1])),
    )


def avalanches(events: ArrayLike, dt: float = 1.0, *, threshold: float = 0.0) -> Avalanches:
    """Avalanches of event times ``events`` (any units) binned with width ``dt`` from the first event."""
    t = np.asarray(events, dtype=np.float64).ravel()
    if t.size == 0:
        raise ValueError("no events; pass event times (one per event)")
    if not np.all(np.isfinite(t)):
        raise ValueError("event times must be finite")
    if dt <= 0:
        raise ValueError(f"dt={dt} must be positive (the bin width, in the units of the event times)")
    bins = np.floor((t - t.min()) / dt).astype(np.int64)
    # one quiet bin on each side so avalanches at the ends of the recording count as complete
    counts = np.bincount(bins + 1, minlength=int(bins.max()) + 3)
    return avalanches_from_counts(counts, dt=dt, threshold=threshold)


def _mean_size_exponent(sizes, durations, tmin, tmax, min_count):
    """Weighted least squares of log <S> on log T over durations in [tmin, tmax] with >= min_count avalanches."""
    d_values, inverse, counts = np.unique(durations, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=sizes)
    keep = (counts >= min_count) & (d_values >= tmin) & (d_values <= tmax)
    if keep.sum() < 3:
        raise ValueError(
            f"only {int(keep.sum())} durations in [{tmin:g}, {tmax:g}] have >= {min_count} avalanches; "
            "need 3 to fit <S>(T): record longer or lower min_count"
        )
    t, mean_s, n_t = d_values[keep].astype(np.float64), sums[keep] / counts[keep], counts[keep]
    x, y, w = np.log(t), np.log(mean_s), n_t.astype(np.float64)
    xm, ym = np.average(x, weights=w), np.average(y, weights=w)
    sxx = np.sum(w * (x - xm) ** 2)
    slope = np.sum(w * (x - xm) * (y - ym)) / sxx
    resid = y - ym - slope * (x - xm)
    dof = max(1, x.size - 2)
    s2 = np.sum(w * resid**2) / dof
    return float(slope), float(np.sqrt(s2 / sxx)), t, mean_s, n_t


def crackling_relation(
    av: Avalanches,
    *,
    size_xmin: float | None = None,
    duration_xmin: float | None = None,
    gamma_range: tuple[float, float] | None = None,
    min_count: int = 10,
) -> CracklingResult:
    """Fit tau (sizes) and tau_t (durations) as discrete power laws (xmin by KS unless given), gamma from
    <S>(T) over ``gamma_range`` of durations in bins (default: from the duration xmin to the largest
    duration with ``min_count`` avalanches), and test (tau_t - 1)/(tau - 1) = gamma with error propagation."""
    if av.sizes.size < 100:
        raise ValueError(f"only {av.sizes.size} avalanches; need at least 100 to fit exponents")
    size_fit = fit_power_law(av.sizes, discrete=True, xmin=size_xmin)
    duration_fit = fit_power_law(av.durations, discrete=True, xmin=duration_xmin)
    tmin, tmax = gamma_range if gamma_range is not None else (duration_fit.xmin, np.inf)
    gamma, gamma_se, t, mean_s, n_t = _mean_size_exponent(av.sizes, av.durations, tmin, tmax, min_count)
    a, sa = size_fit.alpha, size_fit.alpha_stderr
    b, sb = duration_fit.alpha, duration_fit.alpha_stderr
    pred = (b - 1) / (a - 1)
    pred_se = abs(pred) * np.sqrt((sb / (b - 1)) ** 2 + (sa / (a - 1)) ** 2)
    combined = np.hypot(gamma_se, pred_se)
    return CracklingResult(
        tau=a,
        tau_stderr=sa,
        tau_t=b,
        tau_t_stderr=sb,
        gamma_fit=gamma,
        gamma_fit_stderr=gamma_se,
        gamma_predicted=float(pred),
        gamma_predicted_stderr=float(pred_se),
        deviation_sigma=float(abs(gamma - pred) / combined) if combined > 0 else float("inf"),
        size_fit=size_fit,
        duration_fit=duration_fit,
        durations=t,
        mean_sizes=mean_s,
        counts=n_t,
    )
