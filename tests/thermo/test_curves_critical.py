"""Curves (xi, chi), the refined critical temperature and its bootstrap interval."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import brentq

from thermolens.thermo import (
    SequenceSums,
    bootstrap_critical_temperature,
    critical_temperature,
    curves,
    ensemble,
    sequence_sums,
)
from thermolens.thermo.sums import SUM_FIELDS

T = np.geomspace(0.05, 20, 48)


def test_uniform_attention_curves():
    # Equal logits: p uniform over n contiguous keys at every T, so S = log n, C = 0, q = 0, chi = 0
    # and xi^2 = Var of a discrete uniform on n points = (n^2 - 1) / 12; xi / xi_inf = 1.
    n = 10
    ss = sequence_sums(torch.zeros(2, 3, 4, n), 1 / T)
    cv = curves(ss, T)
    assert cv.heat_capacity.shape == (3, T.size)
    np.testing.assert_allclose(cv.entropy, np.log(n), rtol=1e-6)
    np.testing.assert_allclose(cv.heat_capacity, 0, atol=1e-12)
    np.testing.assert_allclose(cv.concentration, 0, atol=1e-6)
    np.testing.assert_allclose(cv.susceptibility, 0, atol=1e-6)
    np.testing.assert_allclose(cv.correlation_length, np.sqrt((n**2 - 1) / 12), rtol=1e-6)
    np.testing.assert_allclose(cv.correlation_length_ratio, 1, rtol=1e-6)
    np.testing.assert_array_equal(cv.n_rows, 8)
    np.testing.assert_array_equal(cv.mean_keys, n)
    frame = cv.to_frame()
    assert len(frame) == 3 * T.size and {"head", "T", "heat_capacity", "susceptibility"} <= set(frame)


def test_frozen_and_mixed_rows_give_known_xi_q_and_chi():
    # Rows 0..3 of a head: a key 1000 above the rest (frozen at every T in the grid: q -> 1, xi -> 0,
    # distance = |j* - i|); rows 4..7 uniform (q = 0). Half the rows at q = 1, half at q = 0:
    # chi = Var(q) = 1/2 - 1/4 = 1/4 exactly (the largest value a [0, 1] variable can have).
    n = 8
    logits = torch.zeros(1, 1, 8, n, dtype=torch.float64)
    j_star = [5, 0, 7, 3]
    for i, j in enumerate(j_star):
        logits[0, 0, i, j] = 1000.0
    cv = curves(sequence_sums(logits, 1 / T, precision="float64"), T)
    np.testing.assert_allclose(cv.concentration[0], 0.5, rtol=1e-12)
    np.testing.assert_allclose(cv.susceptibility[0], 0.25, rtol=1e-12)
    # xi^2 = mean over rows of Var_p(j) = (4 * 0 + 4 * (n^2 - 1)/12) / 8
    np.testing.assert_allclose(cv.correlation_length[0], np.sqrt((n**2 - 1) / 24), rtol=1e-12)
    # distance^2 = mean over rows of <(j - i)^2>: frozen rows (j* - i)^2, uniform rows mean_j (j - i)^2
    d2 = [(j - i) ** 2 for i, j in enumerate(j_star)]
    d2 += [np.mean((np.arange(n) - i) ** 2) for i in range(4, 8)]
    np.testing.assert_allclose(cv.distance[0], np.sqrt(np.mean(d2)), rtol=1e-12)


def test_curve_potentials_are_row_means_of_the_ensemble():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 2, 6, 9, generator=g, dtype=torch.float64) * 2
    mask = torch.ones(6, 9, dtype=torch.bool).tril(diagonal=3)[None, None]
    cv = curves(sequence_sums(logits, 1 / T, mask, precision="float64"), T)
    ens = ensemble(logits.numpy(), 1 / T, mask.numpy())
    for name in ("free_energy", "energy", "entropy", "heat_capacity"):
        want = getattr(ens, name).transpose(2, 0, 1, 3).reshape(2, T.size, -1).mean(-1)  # (heads, T)
        np.testing.assert_allclose(getattr(cv, name), want, rtol=1e-10, atol=1e-12)


def test_curves_reject_a_grid_that_is_not_the_sums_grid():
    ss = sequence_sums(torch.zeros(1, 1, 2, 3), 1 / T)
    with pytest.raises(ValueError, match="1/betas"):
        curves(ss, T[::-1])


def _gaussian_bump(t, x0, width=0.4, height=2.0):
    return height * np.exp(-((np.log(t) - x0) ** 2) / (2 * width**2))


def test_refinement_recovers_a_peak_between_grid_points():
    # A smooth peak in log T at x0 = 0.3771 (T = 1.458...), deliberately between grid points.
    x0 = 0.37710
    errors = []
    for n in (25, 49, 97):
        grid = np.geomspace(0.05, 20, n)
        cp = critical_temperature(grid, _gaussian_bump(grid, x0))
        assert cp.refined and not cp.at_edge
        errors.append(abs(np.log(cp.T_star) - x0))
        assert abs(cp.C_max - 2.0) < 5e-3  # the bump's height is 2
        # the grid point alone is off by far more
        assert abs(np.log(grid[cp.index]) - x0) > 10 * errors[-1]
    assert errors[0] < 3e-4  # h = 0.25 in log T
    # halving h shrinks the error at least like h^2 (ratio 4; 3 allows for the constant)
    assert errors[0] / errors[1] > 3 and errors[1] / errors[2] > 3


def test_schottky_peak_temperature():
    # Two-level row, gap D, g0 = g1 = 1: C = x^2 e^x / (1 + e^x)^2 with x = D/T. dC/dx = 0 gives
    # x tanh(x/2) = 2, x = 2.39936 (the Schottky anomaly peak at T = 0.4168 D; e.g. Kittel &
    # Kroemer, Thermal Physics, ch. 3). The root is computed here independently with brentq.
    x_peak = brentq(lambda x: x * np.tanh(x / 2) - 2, 1, 4)
    gap = 1.7
    grid = np.geomspace(0.1, 5, 40)
    c = ensemble(np.array([0.0, -gap]), 1 / grid).heat_capacity
    cp = critical_temperature(grid, c)
    np.testing.assert_allclose(cp.T_star, gap / x_peak, rtol=2e-4)
    np.testing.assert_allclose(cp.C_max, x_peak**2 * np.exp(x_peak) / (1 + np.exp(x_peak)) ** 2, rtol=1e-5)


def test_edge_maximum_is_flagged_not_clamped():
    grid = np.geomspace(0.1, 10, 20)
    stack = np.stack([grid, 1 / grid, _gaussian_bump(grid, 0.0), np.full(20, np.nan)])
    cp = critical_temperature(grid, stack)
    assert list(cp.at_edge) == [True, True, False, False]
    assert list(cp.refined) == [False, False, True, False]
    assert cp.T_star[0] == grid[-1] and cp.T_star[1] == grid[0]
    assert np.isnan(cp.T_star[3]) and cp.index[3] == -1
    assert len(cp.to_frame()) == 4
    with pytest.raises(ValueError, match="ascending"):
        critical_temperature(grid[::-1], grid)
    with pytest.raises(ValueError, match="temperatures"):
        critical_temperature(grid, grid[:-1])


def _synthetic_sums(rng, n_seq, n_heads, grid, x0s, noise):
    """Per-sequence sums whose C curve is a known bump plus independent per-sequence noise."""
    rows = rng.integers(50, 150, size=(n_seq, n_heads)).astype(float)
    c_true = np.stack([_gaussian_bump(grid, x0) for x0 in x0s], axis=-1)  # (n_T, heads)
    # per-sequence curve: the truth with a random shift of the peak and random amplitude noise
    shift = rng.normal(0, noise, size=(n_seq, n_heads))
    c_seq = np.stack([[_gaussian_bump(grid, x0s[h] + shift[s, h]) for h in range(n_heads)]
                      for s in range(n_seq)])  # (n_seq, heads, n_T)
    heat = (c_seq * rows[..., None]).transpose(2, 0, 1)
    fields = {k: np.zeros_like(heat) for k in SUM_FIELDS}
    fields["rows"] = np.broadcast_to(rows, heat.shape).copy()
    fields["heat_capacity"] = heat
    return SequenceSums(betas=1 / grid, **fields), c_true


def test_bootstrap_interval_covers_the_truth_at_about_the_nominal_rate():
    # 60 independent data sets of 40 sequences; the population T* is the peak of the average of
    # bumps with normally distributed log-shifts, which for small shifts is at exp(x0) (symmetry).
    rng = np.random.default_rng(0)
    grid = np.geomspace(0.1, 10, 40)
    x0s = [0.1, -0.6]
    covered = []
    for _ in range(60):
        sums, _ = _synthetic_sums(rng, 40, 2, grid, x0s, noise=0.15)
        bc = bootstrap_critical_temperature(sums, grid, n_boot=200, seed=int(rng.integers(1 << 31)))
        assert np.all(bc.T_low <= bc.point.T_star) and np.all(bc.point.T_star <= bc.T_high)
        covered.append((bc.T_low <= np.exp(x0s)) & (np.exp(x0s) <= bc.T_high))
    rate = np.mean(covered)
    assert 0.85 <= rate <= 1.0, rate  # nominal 0.95; 120 intervals -> binomial sd ~ 0.02


def test_bootstrap_shapes_and_bad_input():
    rng = np.random.default_rng(1)
    grid = np.geomspace(0.1, 10, 30)
    sums, _ = _synthetic_sums(rng, 10, 3, grid, [0.0, 0.5, -0.5], noise=0.1)
    bc = bootstrap_critical_temperature(sums, grid, n_boot=50, seed=3)
    assert bc.T_star_replicates.shape == (50, 3) and bc.edge_fraction.shape == (3,)
    again = bootstrap_critical_temperature(sums, grid, n_boot=50, seed=3)
    np.testing.assert_array_equal(bc.T_low, again.T_low)  # same seed, same numbers
    assert list(bc.to_frame().columns[:2]) == ["head", "T_star"]
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_critical_temperature(sums, grid, n_boot=0)
    with pytest.raises(ValueError, match="at least 2"):
        bootstrap_critical_temperature(sums.select([0]), grid)
