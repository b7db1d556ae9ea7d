"""When did a run generalize, when did its specific heat peak, and which came first.

Generalization onset (from the logged test accuracy ``a(t)``):

* ``onset_50`` / ``onset_90``: first step at which ``a`` reaches 0.5 / 0.9, linearly interpolated
  between the two logged steps around the crossing (NaN if never reached).
* ``sigmoid_mid``: midpoint ``t0`` of a least-squares fit
  ``a(t) = a0 + (a1 - a0) / (1 + exp(-(t - t0) / w))`` (NaN if the fit fails, ends on a bound of
  its search range, resolves no rise (``w`` below a quarter of the reading cadence), or the run
  never passed 0.5).

``onset_step`` — the headline — is ``onset_50``.

Specific-heat peak (from a logged series ``C(t)``): the series is smoothed with a Gaussian kernel
of ``smooth_points`` logged points (std), then ``scipy.signal.find_peaks`` keeps interior maxima
whose topographic prominence exceeds both 3x the noise (robust std, 1.4826 x MAD, of the series
about its smoothed version) and 1% of the series' median level; the most prominent one is the peak, its step refined
by a parabola through the three smoothed points around it. (A threshold relative to the series'
range would be dominated by the rise of C from ~0 at initialization.) A series without such a
maximum (monotone, or flat within noise) has no peak (NaN), never a clamped value. ``lead = onset_step - peak_step``: positive when the peak precedes generalization.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Onset:
    onset_50: float
    onset_90: float
    sigmoid_mid: float
    sigmoid_width: float

    @property
    def onset_step(self) -> float:
        return self.onset_50


@dataclass(frozen=True)
class Peak:
    """The most prominent smoothed maximum of a series (NaN fields when there is none)."""

    step: float
    value: float  # smoothed value at the peak
    prominence: float  # absolute prominence of the smoothed peak
    relative_prominence: float  # prominence / median level of the smoothed series

    @property
    def found(self) -> bool:
        return math.isfinite(self.step)


NO_PEAK = Peak(math.nan, math.nan, math.nan, math.nan)


def first_crossing(steps: np.ndarray, values: np.ndarray, level: float) -> float:
    """First step at which ``values`` reaches ``level``, linearly interpolated; NaN if never."""
    steps, values = np.asarray(steps, float), np.asarray(values, float)
    above = np.nonzero(values >= level)[0]
    if above.size == 0:
        return math.nan
    i = int(above[0])
    if i == 0:
        return float(steps[0])
    s0, s1, v0, v1 = steps[i - 1], steps[i], values[i - 1], values[i]
    return float(s0 + (level - v0) / (v1 - v0) * (s1 - s0))


def _sigmoid(t, a0, a1, t0, w):
    return a0 + (a1 - a0) / (1.0 + np.exp(-(t - t0) / w))


def fit_sigmoid(steps: np.ndarray, acc: np.ndarray) -> tuple[float, float]:
    """``(t0, w)`` of the sigmoid fit to test accuracy; NaNs if it fails or never reaches 0.5."""
    from scipy.optimize import curve_fit

    steps, acc = np.asarray(steps, float), np.asarray(acc, float)
    t50 = first_crossing(steps, acc, 0.5)
    if not math.isfinite(t50) or steps.size < 5:
        return math.nan, math.nan
    t90 = first_crossing(steps, acc, 0.9)
    width0 = max((t90 - t50) / 2.2 if math.isfinite(t90) else 0.05 * t50, float(np.min(np.diff(steps))) / 4)
    span = float(steps[-1] - steps[0])
    try:
        params, _ = curve_fit(
            _sigmoid, steps, acc, p0=(float(acc[0]), float(acc.max()), t50, width0),
            bounds=([-0.5, 0.0, steps[0], 1e-6 * span], [1.0, 1.5, steps[-1], span]),
            maxfev=20000,
        )
    except (RuntimeError, ValueError):
        return math.nan, math.nan
    t0, w = float(params[2]), float(params[3])
    tol = 1e-3 * span
    cadence = float(np.median(np.diff(steps)))
    if t0 - steps[0] < tol or steps[-1] - t0 < tol or span - w < tol or w < 0.25 * cadence:
        # on a bound of the search, or a rise shorter than the reading cadence: the midpoint is
        # not resolved by the data, so none is reported (never a clamped value)
        return math.nan, math.nan
    return t0, w


def detect_onset(steps: np.ndarray, test_acc: np.ndarray) -> Onset:
    t0, w = fit_sigmoid(steps, test_acc)
    return Onset(
        onset_50=first_crossing(steps, test_acc, 0.5),
        onset_90=first_crossing(steps, test_acc, 0.9),
        sigmoid_mid=t0,
        sigmoid_width=w,
    )


def smooth(values: np.ndarray, width: float) -> np.ndarray:
    """Gaussian smoothing with std ``width`` (in logged points), edges by reflection."""
    from scipy.ndimage import gaussian_filter1d

    values = np.asarray(values, float)
    return gaussian_filter1d(values, width, mode="nearest") if width > 0 else values.copy()


def detect_peak(
    steps: np.ndarray,
    values: np.ndarray,
    *,
    smooth_points: float = 2.0,
    noise_factor: float = 3.0,
    min_relative: float = 0.01,
) -> Peak:
    """The most prominent interior maximum of the smoothed series (see the module docstring).

    A maximum counts when its prominence is at least ``noise_factor`` times the noise (robust
    standard deviation, 1.4826 x MAD, of the series about its smoothed version) and at least
    ``min_relative`` of the series' median level.
    """
    from scipy.signal import find_peaks

    steps, values = np.asarray(steps, float), np.asarray(values, float)
    keep = np.isfinite(values)
    steps, values = steps[keep], values[keep]
    if values.size < 5:
        return NO_PEAK
    s = smooth(values, smooth_points)
    level = float(np.median(np.abs(s)))
    if not float(s.max() - s.min()) > 0:
        return NO_PEAK
    residual = values - s
    # robust noise scale (MAD): the steep rise of C at initialization leaves a few large residuals
    noise = 1.4826 * float(np.median(np.abs(residual - np.median(residual))))
    threshold = max(noise_factor * noise, min_relative * level, np.finfo(float).tiny)
    idx, props = find_peaks(s, prominence=threshold)
    if idx.size == 0:
        return NO_PEAK
    best = int(np.argmax(props["prominences"]))
    i = int(idx[best])
    step = float(steps[i])
    y0, y1, y2 = s[i - 1], s[i], s[i + 1]
    curvature = y0 - 2 * y1 + y2
    if curvature < 0 and np.allclose(np.diff(steps[i - 1 : i + 2]), steps[i + 1] - steps[i]):
        step += 0.5 * (y0 - y2) / curvature * float(steps[i + 1] - steps[i])
    prominence = float(props["prominences"][best])
    return Peak(step=step, value=float(y1), prominence=prominence,
                relative_prominence=prominence / level if level > 0 else math.nan)


def lead(onset_step: float, peak: Peak) -> float:
    """Steps by which the peak precedes the onset (negative: it follows); NaN if either is missing."""
    return float(onset_step - peak.step) if math.isfinite(onset_step) and peak.found else math.nan
