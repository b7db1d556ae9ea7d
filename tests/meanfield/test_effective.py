"""beta_eff from logits and K_eff from updates (thermolens.meanfield.effective), on data with known parameters."""

from __future__ import annotations

import numpy as np
import pytest

from thermolens.meanfield.effective import (
    CouplingSums,
    LogitSums,
    bootstrap_sums,
    coupling_sums,
    interaction_field,
    logit_sums,
)


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_logit_slope_recovers_beta_through_row_constants_and_noise():
    rng = np.random.default_rng(0)
    S, H, n, d = 30, 3, 40, 12
    u = _unit(rng.standard_normal((S, n, d)))
    cos = u @ u.transpose(0, 2, 1)
    betas = np.array([0.5, 2.0, 6.0])
    row_shift = 3.0 * rng.standard_normal((S, H, n, 1))  # a softmax does not see these
    logits = betas[None, :, None, None] * cos[:, None] + row_shift
    sums = logit_sums(logits, np.ones((1, 1, n, n), bool), u)
    totals = (sums.sxy.sum(0), sums.sxx.sum(0), sums.syy.sum(0))
    np.testing.assert_allclose(LogitSums.beta(*totals), betas, rtol=1e-9)
    np.testing.assert_allclose(LogitSums.r2(*totals), 1.0, rtol=1e-9)  # the cosine explains everything
    noisy = logits + rng.standard_normal(logits.shape)
    sums = logit_sums(noisy, np.ones((1, 1, n, n), bool), u)
    est, lo, hi = bootstrap_sums(LogitSums.beta, (sums.sxy, sums.sxx, sums.syy), n_boot=300, seed=1)
    assert np.all((lo < betas) & (betas < hi)), (est, lo, hi)


def test_row_centring_with_masks_matches_a_direct_loop():
    rng = np.random.default_rng(1)
    S, H, n, d = 3, 2, 9, 4
    u = rng.standard_normal((S, n, d))
    logits = rng.standard_normal((S, H, n, n))
    valid = np.tril(np.ones((n, n), bool))[None, None].repeat(S, 0).repeat(H, 1)  # causal
    sums = logit_sums(np.where(valid, logits, -np.inf), valid, u)
    un = _unit(u)
    cos = un @ un.transpose(0, 2, 1)
    expected = np.zeros((S, H))
    for s in range(S):
        for h in range(H):
            for i in range(n):
                keys = valid[s, h, i]
                a = logits[s, h, i, keys] - logits[s, h, i, keys].mean()
                b = cos[s, i, keys] - cos[s, i, keys].mean()
                expected[s, h] += a @ b
    np.testing.assert_allclose(sums.sxy, expected, atol=1e-12)


def test_interaction_field_is_tangent_and_matches_its_definition():
    rng = np.random.default_rng(2)
    u = _unit(rng.standard_normal((2, 7, 5)))
    m = interaction_field(u, 1.7)
    np.testing.assert_allclose(np.einsum("snd,snd->sn", m, u), 0.0, atol=1e-12)
    i = 3
    direct = np.mean([np.exp(1.7 * u[0, i] @ u[0, j]) * (u[0, j] - (u[0, i] @ u[0, j]) * u[0, i]) for j in range(7)], 0)
    np.testing.assert_allclose(m[0, i], direct, rtol=1e-12)
    np.testing.assert_allclose(interaction_field(u, 1.7, dtype=np.float32), m, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtau", [1e-3, 2e-2])
def test_coupling_recovers_K_and_the_step_from_one_noisy_step(dtau):
    # One step of dx = 2 K m dtau + sqrt(2) dB with the projective retraction, from a clustered start
    # (where the field is strong enough to be seen): K_eff and dtau come back (module docstring).
    rng = np.random.default_rng(3)
    S, n, d, beta, K = 300, 32, 8, 1.5, 2.0
    u = _unit(np.eye(d)[0] + 0.9 * rng.standard_normal((S, n, d)))
    xi = rng.standard_normal((S, n, d))
    xi -= np.einsum("snd,snd->sn", xi, u)[..., None] * u
    v = _unit(u + 2 * K * interaction_field(u, beta) * dtau + np.sqrt(2 * dtau) * xi)
    sums = coupling_sums(u, v, beta)
    est, lo, hi = bootstrap_sums(sums.statistic("K"), sums.totals, n_boot=300, seed=0)
    assert lo < K < hi and abs(est - K) < 0.15 * K, (est, lo, hi)
    assert sums.statistic("dtau")(*(t.sum(0) for t in sums.totals)) == pytest.approx(dtau, rel=0.03)


def test_large_turns_are_left_out():
    u = _unit(np.random.default_rng(4).standard_normal((1, 5, 3)))
    v = u.copy()
    v[0, 0] = -u[0, 0]  # a token flipped: no small tangent step
    sums = coupling_sums(u, v, 1.0)
    assert sums.count[0] == 4


def test_bootstrap_without_resamples_gives_nan_intervals():
    est, lo, hi = bootstrap_sums(lambda a, b: a / b, (np.ones(4), 2 * np.ones(4)), n_boot=0, seed=0)
    assert est == pytest.approx(0.5) and np.isnan(lo) and np.isnan(hi)


def test_bad_input():
    with pytest.raises(ValueError, match="systems, heads"):
        logit_sums(np.ones((2, 3, 4)), np.ones((2, 3, 4), bool), np.ones((2, 4, 3)))
    with pytest.raises(ValueError, match="do not match"):
        logit_sums(np.ones((2, 1, 4, 4)), np.ones((2, 1, 4, 4), bool), np.ones((2, 5, 3)))
    with pytest.raises(ValueError, match="differ in shape"):
        coupling_sums(np.ones((1, 3, 2)), np.ones((1, 4, 2)), 1.0)
    with pytest.raises(ValueError, match="finite"):
        coupling_sums(np.ones((1, 3, 2)), np.ones((1, 3, 2)), float("nan"))
    assert isinstance(coupling_sums(np.eye(3)[None], np.eye(3)[None], 1.0), CouplingSums)
