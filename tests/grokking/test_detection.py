"""Onset and peak detection recover known parameters from synthetic series (fixed seeds)."""

import math

import numpy as np
import pytest

from thermolens.experiments.grokking import detection


def _sigmoid(t, t0, w):
    return 0.01 + 0.99 / (1 + np.exp(-(t - t0) / w))


def test_onset_of_a_sigmoid():
    steps = np.arange(0, 10000, 100.0)
    acc = _sigmoid(steps, 5230.0, 300.0)
    onset = detection.detect_onset(steps, acc)
    # the 0.5 crossing of 0.01 + 0.99 s(t) is at t0 + w ln(0.49/0.50) = t0 - 6.06
    assert onset.onset_50 == pytest.approx(5230 - 6.06, abs=15)  # linear interpolation error
    assert onset.sigmoid_mid == pytest.approx(5230, abs=1)
    assert onset.sigmoid_width == pytest.approx(300, rel=0.01)
    # 0.9 crossing: t0 + w ln(0.89 / 0.10)
    assert onset.onset_90 == pytest.approx(5230 + 300 * math.log(0.89 / 0.10), abs=15)


def test_no_onset_when_the_run_never_generalizes():
    steps = np.arange(0, 5000, 100.0)
    onset = detection.detect_onset(steps, np.full(steps.size, 0.05))
    assert math.isnan(onset.onset_50) and math.isnan(onset.sigmoid_mid)


def test_first_crossing_interpolates():
    assert detection.first_crossing(np.array([0, 10, 20]), np.array([0.0, 0.4, 0.8]), 0.5) == pytest.approx(12.5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_noisy_bump_peak_is_recovered(seed):
    rng = np.random.default_rng(seed)
    steps = np.arange(0, 8000, 100.0)
    clean = 0.3 + 0.2 * np.exp(-0.5 * ((steps - 3100) / 500) ** 2) + 0.00002 * steps
    peak = detection.detect_peak(steps, clean + rng.normal(0, 0.01, steps.size))
    assert peak.found
    assert peak.step == pytest.approx(3100, abs=200)
    assert detection.lead(5000.0, peak) == pytest.approx(1900, abs=200)


def test_monotone_or_flat_series_has_no_peak():
    steps = np.arange(0, 5000, 100.0)
    assert not detection.detect_peak(steps, 1 - np.exp(-steps / 1000)).found
    assert not detection.detect_peak(steps, np.full(steps.size, 0.3)).found
    assert math.isnan(detection.lead(100.0, detection.NO_PEAK))


def test_small_wiggles_are_not_peaks():
    # a rising series with 1% noise: no interior maximum holds 10% of the range after smoothing
    rng = np.random.default_rng(5)
    steps = np.arange(0, 5000, 100.0)
    values = steps / 5000 + rng.normal(0, 0.01, steps.size)
    assert not detection.detect_peak(steps, values).found


def test_sigmoid_midpoint_on_the_boundary_is_not_reported():
    # generalization within the first reading: the fit can only put t0 on its lower bound
    steps = np.arange(0, 5000, 100.0)
    acc = np.where(steps > 0, 0.8 + 0.0001 * steps / 50, 0.05)
    onset = detection.detect_onset(steps, acc)
    assert onset.onset_50 == pytest.approx(100 * 0.45 / (0.8002 - 0.05), rel=1e-3)
    assert math.isnan(onset.sigmoid_mid)


def test_small_bump_after_the_initial_rise_is_found():
    # the shape seen in training: C rises from ~0 at initialization within a few hundred steps,
    # then a 5% bump; a threshold relative to the full range (0 -> 0.3) would miss it
    rng = np.random.default_rng(7)
    steps = np.arange(0, 10000, 100.0)
    clean = 0.3 * (1 - np.exp(-steps / 300)) + 0.015 * np.exp(-0.5 * ((steps - 5000) / 600) ** 2)
    peak = detection.detect_peak(steps, clean + rng.normal(0, 0.001, steps.size))
    assert peak.found and peak.step == pytest.approx(5000, abs=250)
