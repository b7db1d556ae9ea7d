"""Null models: matched structure and variance, and the Gaussian null's T* against the exact
finite-n expectation of the random energy model (Derrida 1981, Phys. Rev. B 24, 2613)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar

from thermolens.thermo import (
    bootstrap_critical_temperature,
    compare_to_null,
    curves,
    gaussian_null_logits,
    logit_std,
    sequence_sums,
    shuffled_null_logits,
    within_row_sums,
)


def _causal(n_q, n_k):
    return torch.ones(n_q, n_k, dtype=torch.bool).tril(diagonal=n_k - n_q)[None, None]


def test_logit_std_is_the_pooled_within_row_std():
    g = torch.Generator().manual_seed(0)
    scale = torch.tensor([1.0, 2.0, 0.5])[:, None, None]
    logits = torch.randn(2, 3, 7, 9, generator=g, dtype=torch.float64) * scale
    logits = logits + 5.0 * torch.randn(2, 3, 7, 1, generator=g, dtype=torch.float64)  # row offsets
    mask = _causal(7, 9)
    x, m = logits.numpy(), np.broadcast_to(mask.numpy(), logits.shape)
    for h in range(3):
        ss = dof = 0.0
        for s in range(2):
            for i in range(7):
                row = x[s, h, i][m[s, h, i]]
                ss += np.sum((row - row.mean()) ** 2)
                dof += row.size - 1
        np.testing.assert_allclose(logit_std(logits, mask)[h].item(), np.sqrt(ss / dof), rtol=1e-12)
    s1, d1 = within_row_sums(logits[:1], mask)
    s2, d2 = within_row_sums(logits[1:], mask)
    pooled = torch.sqrt((s1 + s2) / (d1 + d2)).numpy()
    np.testing.assert_allclose(pooled, logit_std(logits, mask).numpy(), rtol=1e-12)


def test_gaussian_null_matches_structure_and_variance():
    mask = _causal(64, 64).expand(8, 1, 64, 64).clone()
    mask[3, ..., 50:] = False  # padding
    sigma = torch.tensor([0.5, 1.0, 3.0])
    x = gaussian_null_logits(mask, sigma, torch.Generator().manual_seed(1))
    assert x.shape == (8, 3, 64, 64) and x.dtype == torch.float32
    assert (x[~mask.expand_as(x)] == 0).all()
    # pooled within-row std estimates sigma; ~8*64*32 dof per head -> relative sd ~ 0.5%
    np.testing.assert_allclose(logit_std(x, mask).numpy(), sigma.numpy(), rtol=0.03)
    again = gaussian_null_logits(mask, sigma, torch.Generator().manual_seed(1))
    assert torch.equal(x, again)
    with pytest.raises(ValueError, match="heads"):
        gaussian_null_logits(torch.ones(1, 2, 3, 3, dtype=torch.bool), sigma)


def test_shuffled_null_redeals_the_pooled_centred_logits():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 3, 10, 12, generator=g) * 2 + 7.0
    mask = _causal(10, 12) & (torch.rand(2, 1, 1, 12, generator=g) < 0.8)
    mask[..., 0] = True
    out = shuffled_null_logits(logits, mask, torch.Generator().manual_seed(3))
    full = mask.expand_as(logits)
    assert out.shape == logits.shape and (out[~full] == 0).all()
    centred = logits.double() - (torch.where(full, logits.double(), 0).sum(-1, keepdim=True)
                                 / full.sum(-1, keepdim=True))
    for s in range(2):
        for h in range(3):
            a = torch.sort(out[s, h][full[s, h]].double()).values
            b = torch.sort(centred[s, h][full[s, h]]).values
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)  # same multiset per (sequence, head)
    assert not torch.allclose(out[full], centred.float()[full])  # and actually re-dealt


def expected_heat_capacity(beta, n, sigma=1.0, n_l=2001, n_s=601):
    """Quenched E[C] at inverse temperature beta for n i.i.d. N(0, sigma^2) logits, by quadrature.

    With w = exp(beta l), Z = sum_j w_j and C = beta^2 (sum p l^2 - (sum p l)^2), use
    1/Z = int_0^inf e^{-tZ} dt and 1/Z^2 = int_0^inf t e^{-tZ} dt, which factorise over i.i.d. keys:
      E[sum p l^2]   = n int dt E[w l^2 e^{-tw}] phi^{n-1},                      phi(t) = E[e^{-tw}]
      E[(sum p l)^2] = int t dt (n E[w^2 l^2 e^{-tw}] phi^{n-1} + n(n-1) E[w l e^{-tw}]^2 phi^{n-2}).
    The Gaussian expectations are trapezoid sums over l in [-12 sigma, 12 sigma] and t = e^s runs
    over the range where 1/Z lives. Checked against 2e5-row Monte Carlo to < 0.1% while writing.
    """
    l = np.linspace(-12 * sigma, 12 * sigma, n_l)
    g = np.exp(-0.5 * (l / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi)) * (l[1] - l[0])
    bl = beta * l
    s = np.linspace(-bl.max() - np.log(n) - 12, -bl.min() + 5, n_s)
    x = np.exp(s)[:, None] * np.exp(bl)[None, :]  # t w
    ex = np.exp(-x)
    log_phi = np.log(ex @ g)
    a = (x * ex * l**2) @ g
    b = (x * x * ex * l**2) @ g
    d = (x * ex * l) @ g
    ds = s[1] - s[0]
    m2 = n * np.sum(a * np.exp((n - 1) * log_phi)) * ds
    m1sq = np.sum(n * b * np.exp((n - 1) * log_phi) + n * (n - 1) * d**2 * np.exp((n - 2) * log_phi)) * ds
    return beta**2 * (m2 - m1sq)


def test_gaussian_null_peak_sits_at_the_finite_n_rem_expectation():
    # n = 128 keys, sigma = 1.7. The REM freezing point T_c = sigma / sqrt(2 ln n) = 0.5457 is the
    # n -> infinity peak; at n = 128 the peak of the exact quenched E[C](T) is higher
    # (T*/T_c = 1.28, found by maximising the quadrature above). The Gaussian null run through
    # the scan's own path (sequence_sums -> bootstrap) must find that finite-n peak.
    n, sigma = 128, 1.7
    t_c = sigma / np.sqrt(2 * np.log(n))
    best = minimize_scalar(lambda t: -expected_heat_capacity(1 / t, n, sigma), bounds=(0.8 * t_c, 2 * t_c),
                           method="bounded", options={"xatol": 1e-4})
    t_exact = best.x
    assert 1.2 < t_exact / t_c < 1.36  # finite-size shift above the REM T_c
    mask = torch.ones(48, 1, 32, n, dtype=torch.bool)
    x = gaussian_null_logits(mask, [sigma], torch.Generator().manual_seed(4))
    grid = np.geomspace(0.2, 3.0, 40)
    bc = bootstrap_critical_temperature(sequence_sums(x, 1 / grid, mask), grid, n_boot=300, seed=5)
    assert bc.T_low[0] <= t_exact <= bc.T_high[0], (bc.T_low, t_exact, bc.T_high)
    assert abs(bc.point.T_star[0] / t_exact - 1) < 0.02
    np.testing.assert_allclose(bc.point.C_max[0], -best.fun, rtol=0.03)


def test_null_susceptibility_peaks_in_the_frozen_phase():
    # REM frozen phase: Y = sum p^2 is not self-averaging; for n -> infinity Var(Y) = mu (1 - mu) / 3
    # with mu = T / T_c (Derrida & Toulouse 1985; Mezard, Parisi & Virasoro 1987, ch. I), largest
    # (1/12) at T = T_c / 2 and zero above T_c. At n = 128 we check the qualitative statement:
    # chi peaks below T_c, near T_c / 2, and is small above T_c.
    n = 128
    mask = torch.ones(64, 1, 16, n, dtype=torch.bool)
    x = gaussian_null_logits(mask, [1.0], torch.Generator().manual_seed(6))
    grid = np.geomspace(0.05, 2.0, 60)
    cv = curves(sequence_sums(x, 1 / grid, mask), grid)
    t_c = 1 / np.sqrt(2 * np.log(n))
    t_chi = grid[np.argmax(cv.susceptibility[0])]
    assert 0.35 * t_c < t_chi < 0.75 * t_c
    assert 0.05 < cv.susceptibility[0].max() < 0.12
    assert cv.susceptibility[0][grid > 2 * t_c].max() < 0.2 * cv.susceptibility[0].max()


def test_compare_to_null_separates_a_structured_head_from_its_gaussian_null():
    # Head 0: every row has a 2-fold "sink" 6 sigma above Gaussian keys (a two-level-like peak at
    # low T, far from the REM peak of its matched Gaussian null). Head 1: plain Gaussian logits,
    # i.e. a sample of its own null, which must not be declared different.
    g = torch.Generator().manual_seed(7)
    n_seq, n_q, n = 40, 16, 64
    logits = torch.randn(n_seq, 2, n_q, n, generator=g)
    logits[:, 0, :, :2] += 6.0
    mask = torch.ones(n_seq, 1, n_q, n, dtype=torch.bool)
    grid = np.geomspace(0.1, 5.0, 40)
    real = bootstrap_critical_temperature(sequence_sums(logits, 1 / grid), grid, n_boot=200, seed=1)
    null_logits = gaussian_null_logits(mask, logit_std(logits), torch.Generator().manual_seed(8))
    null = bootstrap_critical_temperature(sequence_sums(null_logits, 1 / grid, mask), grid, n_boot=200, seed=2)
    cmp = compare_to_null(real, null)
    assert cmp.differs[0] and not cmp.differs[1], (cmp.ratio_low, cmp.ratio_high)
    assert cmp.ratio_low[1] < 1 < cmp.ratio_high[1]
    assert not cmp.at_edge.any()
    with pytest.raises(ValueError, match="n_boot"):
        compare_to_null(real, bootstrap_critical_temperature(sequence_sums(logits, 1 / grid), grid, n_boot=10))
