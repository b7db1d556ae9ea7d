"""Branching ratio of an activity time series: conventional and multistep-regression (MR) estimators.

For a branching process with immigration, A_{t+1} = m A_t + h + noise, the regression of A_{t+k} on A_t
has slope r_k = m^k. Under subsampling (each unit seen with probability alpha) the slopes become
r_k = b m^k with an unknown b < 1, so the conventional estimator m_hat = r_1 is biased towards 0, while
fitting r_k = b m^k over k = 1..kmax recovers m (Wilting & Priesemann 2018, Nat. Commun. 9, 2325,
arXiv:1608.07035; the MR estimator of the `mrestimator` package, Spitzner et al. 2021, arXiv:2007.03367).

Coefficients, for trials i (rows) of length T and lag k, with front = a[:T-k], back = a[k:]:

    trial-separated ("ts")  r_k = mean_i Cov_i(front, back) / Var_i(front)         (per-trial means)
    stationary mean ("sm")  r_k = pooled covariance / pooled variance about the across-trial means

exactly as `mrestimator.coefficients`. All lags come from one FFT autocorrelation and prefix sums
(O(T log T)) instead of one pass per lag. Fits: ``exponential`` r_k = b m^k, ``exponential_offset``
r_k = b m^k + c (unweighted least squares, as `mrestimator.fit` without bootstrap errors). The
autocorrelation time is tau = -dt / ln m. Confidence intervals: percentile bootstrap over trials, or
over contiguous blocks of a single long trial.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import optimize

FITS = ("exponential", "exponential_offset")
METHODS = ("ts", "sm")


@dataclass(frozen=True)
class BranchingResult:
    """MR estimate of the branching ratio. ``m_conventional`` is r_1 (the biased single-step regression).
    ``tau`` is in units of ``dt``; it is +inf for m = 1 and negative for m > 1 (growing activity)."""

    m: float
    m_ci: tuple[float, float]
    tau: float
    tau_ci: tuple[float, float]
    amplitude: float
    offset: float
    m_conventional: float
    fit: str
    method: str
    steps: np.ndarray  # (kmax - kmin + 1,) lags k
    coefficients: np.ndarray  # r_k
    coefficient_stderr: np.ndarray  # bootstrap standard error of r_k (NaN without a bootstrap)
    dt: float
    n_trials: int
    n_timesteps: int
    n_boot: int
    confidence: float

    def fitted(self, k: ArrayLike | None = None) -> np.ndarray:
        k = self.steps if k is None else np.asarray(k, dtype=np.float64)
        return self.amplitude * self.m**k + self.offset

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame(
            {"k": self.steps, "r_k": self.coefficients, "r_k_stderr": self.coefficient_stderr, "fit": self.fitted()}
        )


# --------------------------------------------------------------------------------------------------
# coefficients


@dataclass(frozen=True)
class _PerTrial:
    """Per-trial, per-lag moments (trials, lags): means of front and back, E[front*back], E[front^2]."""

    mx: np.ndarray
    my: np.ndarray
    xy: np.ndarray
    xx: np.ndarray


def _per_trial(data: np.ndarray, steps: np.ndarray) -> _PerTrial:
    n_trials, t_len = data.shape
    centred = data - data.mean()  # both estimators are invariant to a common shift; centring avoids cancellation
    size = 1 << int(np.ceil(np.log2(2 * t_len)))
    spec = np.fft.rfft(centred, size, axis=1)
    auto = np.fft.irfft(spec * np.conj(spec), size, axis=1)[:, steps]  # sum_t c_t c_{t+k}
    csum = np.concatenate([np.zeros((n_trials, 1)), np.cumsum(centred, axis=1)], axis=1)
    csq = np.concatenate([np.zeros((n_trials, 1)), np.cumsum(centred**2, axis=1)], axis=1)
    cnt = (t_len - steps).astype(np.float64)
    front_sum = csum[:, t_len - steps]
    back_sum = csum[:, [t_len]] - csum[:, steps]
    return _PerTrial(front_sum / cnt, back_sum / cnt, auto / cnt, csq[:, t_len - steps] / cnt)


def _reduce(pt: _PerTrial, method: str, choice: np.ndarray | None = None) -> np.ndarray:
    mx, my, xy, xx = (a if choice is None else a[choice] for a in (pt.mx, pt.my, pt.xy, pt.xx))
    if method == "ts":
        return np.mean((xy - mx * my) / (xx - mx**2), axis=0)
    mxk, myk = mx.mean(axis=0), my.mean(axis=0)
    num = np.mean(xy - mx * myk - my * mxk, axis=0) + mxk * myk
    return num / np.mean(xx - 2 * mx * mxk + mxk**2, axis=0)


def coefficients(activity: ArrayLike, kmax: int, *, kmin: int = 1, method: str = "ts") -> tuple[np.ndarray, np.ndarray]:
    """(steps, r_k) for k = kmin..kmax; ``activity`` is (T,) or (trials, T)."""
    data = _as_activity(activity, kmax)
    steps = _steps(kmin, kmax)
    return steps, _reduce(_per_trial(data, steps), _check_method(method))


# --------------------------------------------------------------------------------------------------
# fits


def _fit_exponential(k: np.ndarray, r: np.ndarray, kind: str) -> tuple[float, float, float]:
    """(b, m, c) of r_k = b m^k + c by least squares, started from a log-linear fit of the positive r_k."""
    pos = r > 0
    if pos.sum() >= 2:
        slope, icpt = np.polyfit(k[pos], np.log(r[pos]), 1)
        m0, b0 = float(np.clip(np.exp(slope), 1e-6, 1.5)), float(np.exp(icpt))
    else:
        m0, b0 = 0.5, float(max(r[0], 1e-3))
    if kind == "exponential":
        f = lambda kk, b, m: b * m**kk  # noqa: E731
        p0 = (b0, m0)
    else:
        f = lambda kk, b, m, c: b * m**kk + c  # noqa: E731
        p0 = (b0, m0, 0.0)
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            # overflow while the optimiser probes large m, and an unestimable covariance, are harmless here
            warnings.simplefilter("ignore", RuntimeWarning)
            warnings.simplefilter("ignore", optimize.OptimizeWarning)
            popt, _ = optimize.curve_fit(f, k, r, p0=p0, maxfev=20000)
    except RuntimeError:  # no convergence: reported as NaN
        return float("nan"), float("nan"), float("nan")
    b, m = float(popt[0]), float(popt[1])
    return b, m, float(popt[2]) if kind == "exponential_offset" else 0.0


def _tau(m: float, dt: float) -> float:
    if not np.isfinite(m) or m <= 0:
        return float("nan")
    if m == 1.0:
        return float("inf")
    return float(-dt / np.log(m))


# --------------------------------------------------------------------------------------------------
# the estimator


def _check_method(method: str) -> str:
    aliases = {"trialseparated": "ts", "stationarymean": "sm"}
    method = aliases.get(method, method)
    if method not in METHODS:
        raise ValueError(f"method={method!r}; choose 'ts' (trial-separated) or 'sm' (stationary mean)")
    return method


def _steps(kmin: int, kmax: int) -> np.ndarray:
    if kmin < 1 or kmax < kmin + 2:
        raise ValueError(f"need 1 <= kmin and kmax >= kmin + 2 (got kmin={kmin}, kmax={kmax}) to fit an exponential")
    return np.arange(kmin, kmax + 1)


def _as_activity(activity: ArrayLike, kmax: int) -> np.ndarray:
    try:
        data = np.asarray(activity, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("activity must be numbers") from None
    if data.ndim == 1:
        data = data[None, :]
    if data.ndim != 2 or data.size == 0:
        raise ValueError("activity must be a non-empty (T,) series or a (trials, T) array")
    if not np.all(np.isfinite(data)):
        raise ValueError(f"activity has {int((~np.isfinite(data)).sum())} NaN or infinite values; remove them first")
    if data.shape[1] < 2 * kmax + 10:
        raise ValueError(f"a trial of {data.shape[1]} steps is too short for kmax={kmax}; lower kmax below T/2 or pass more data")
    if np.any(data.std(axis=1) == 0):
        raise ValueError("a trial of the activity is constant; the branching ratio needs fluctuating activity")
    return data


def branching_ratio(
    activity: ArrayLike,
    kmax: int,
    *,
    kmin: int = 1,
    method: str = "ts",
    fit: str = "exponential",
    dt: float = 1.0,
    n_boot: int = 100,
    n_blocks: int | None = None,
    confidence: float = 0.95,
    seed: int = 0,
) -> BranchingResult:
    """MR estimate of the branching ratio m of ``activity`` ((T,) or (trials, T), counts per time bin).

    ``fit``: "exponential" or "exponential_offset". The bootstrap resamples trials; a single trial is cut
    into ``n_blocks`` contiguous blocks (default: as many blocks of at least 10*kmax steps as fit, up to
    50) that are resampled instead. ``n_boot=0`` skips it (CIs are NaN).
    """
    method = _check_method(method)
    if fit not in FITS:
        raise ValueError(f"fit={fit!r}; choose from {', '.join(FITS)}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence} must lie in (0, 1)")
    if dt <= 0:
        raise ValueError(f"dt={dt} must be positive")
    if n_boot < 0:
        raise ValueError(f"n_boot={n_boot} must be >= 0")
    data = _as_activity(activity, kmax)
    steps = _steps(kmin, kmax)
    pt = _per_trial(data, steps)
    r = _reduce(pt, method)
    b, m, c = _fit_exponential(steps.astype(np.float64), r, fit)
    r1 = _reduce(_per_trial(data, np.array([1])), method)[0]

    nan2 = (float("nan"), float("nan"))
    m_ci, tau_ci, r_se = nan2, nan2, np.full(steps.size, np.nan)
    if n_boot > 0:
        units, boot_method = pt, method
        if data.shape[0] == 1:
            # blocks of one stationary series share its mean: pool them ("sm"); per-block means would bias r_k
            boot_method = "sm"
            t_len = data.shape[1]
            blocks = n_blocks or int(min(50, t_len // max(10 * kmax, 2 * kmax + 10)))
            if blocks >= 2:
                usable = (t_len // blocks) * blocks
                units = _per_trial(data[0, :usable].reshape(blocks, -1), steps)
            else:
                units = None
        if units is not None:
            rng = np.random.default_rng(seed)
            n_units = units.mx.shape[0]
            boot_r = np.empty((n_boot, steps.size))
            boot_m = np.empty(n_boot)
            for i in range(n_boot):
                boot_r[i] = _reduce(units, boot_method, rng.integers(0, n_units, n_units))
                boot_m[i] = _fit_exponential(steps.astype(np.float64), boot_r[i], fit)[1]
            q = [(1 - confidence) / 2 * 100, (1 + confidence) / 2 * 100]
            ok = np.isfinite(boot_m)
            if ok.any():
                lo, hi = np.percentile(boot_m[ok], q)
                m_ci = (float(lo), float(hi))
                taus = np.array([_tau(v, dt) for v in boot_m[ok]])
                taus = taus[np.isfinite(taus)]
                if taus.size:
                    t_lo, t_hi = np.percentile(taus, q)
                    tau_ci = (float(t_lo), float(t_hi))
            r_se = boot_r.std(axis=0, ddof=1)
    return BranchingResult(
        m=m,
        m_ci=m_ci,
        tau=_tau(m, dt),
        tau_ci=tau_ci,
        amplitude=b,
        offset=c,
        m_conventional=float(r1),
        fit=fit,
        method=method,
        steps=steps,
        coefficients=r,
        coefficient_stderr=r_se,
        dt=float(dt),
        n_trials=int(data.shape[0]),
        n_timesteps=int(data.shape[1]),
        n_boot=int(n_boot),
        confidence=float(confidence),
    )


def simulate_branching(
    m: float, *, n_steps: int, h: float = 10.0, subsampling: float = 1.0, n_trials: int = 1, seed: int = 0
) -> np.ndarray:
    """Branching process with immigration, A_{t+1} ~ Poisson(m A_t + h), started at its stationary mean
    h/(1 - m), observed through binomial subsampling a_t ~ Binomial(A_t, subsampling). Returns
    (n_trials, n_steps) counts (the setting of Wilting & Priesemann 2018, Fig. 2)."""
    if not 0 <= m < 1:
        raise ValueError(f"m={m} must lie in [0, 1) for a stationary process")
    if not 0 < subsampling <= 1:
        raise ValueError(f"subsampling={subsampling} must lie in (0, 1]")
    rng = np.random.default_rng(seed)
    a = np.empty((n_trials, n_steps))
    cur = np.full(n_trials, round(h / (1 - m)), dtype=np.float64)
    for t in range(n_steps):
        cur = rng.poisson(m * cur + h).astype(np.float64)
        a[:, t] = cur
    if subsampling < 1:
        a = rng.binomial(a.astype(np.int64), subsampling).astype(np.float64)
    return a
