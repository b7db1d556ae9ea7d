"""Cascade extraction: events against a baseline, the two lattice definitions, branching between layers, the
nulls, and recovery of known branching exponents from a synthetic network through the same code."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy import stats as sps

from thermolens.experiments.avalanches.fits import beats_null
from thermolens.experiments.avalanches.measure import lattice_stats
from thermolens.experiments.avalanches.cascades import (
    LatticeBuilder,
    _poisson_binomial_pmf,
    cascades,
    descendants_per_ancestor,
    fit_baseline,
    layer_counts,
    rate_matched_counts,
    shuffle_layers,
    susceptibility,
    synthetic_branching_network,
)

# --------------------------------------------------------------------------------------------------
# events


def test_zscore_events_match_a_direct_count():
    g = torch.Generator().manual_seed(0)
    ref = torch.randn(500, 40, generator=g) * torch.linspace(0.5, 2.0, 40) + 3.0
    x = torch.randn(200, 40, generator=g) * 2 + 3.0
    base = fit_baseline({0: ref}, (2.0, 3.0))
    counts, unit_events = layer_counts(x, base, 0)
    z = (x.double() - ref.double().mean(0)).abs() / ref.double().std(0)
    np.testing.assert_array_equal(counts[0].numpy(), (z > 2.0).sum(-1).numpy())
    np.testing.assert_array_equal(counts[1].numpy(), (z > 3.0).sum(-1).numpy())
    np.testing.assert_array_equal(unit_events.numpy(), (z > 2.0).sum(0).numpy())


def test_quantile_events_fire_at_the_chosen_rate_and_dead_units_never_fire():
    g = torch.Generator().manual_seed(1)
    ref = torch.randn(4000, 30, generator=g)
    ref[:, 0] = 5.0  # a constant unit has no baseline spread: it must never fire
    base = fit_baseline({0: ref}, (0.9,), method="quantile")
    counts, unit_events = layer_counts(ref, base, 0)
    assert unit_events[0] == 0
    # on its own reference, each live unit exceeds its 0.9-quantile deviation 10% of the time (by construction)
    rates = unit_events[1:].double() / ref.shape[0]
    np.testing.assert_allclose(rates.numpy(), 0.1, atol=0.002)


def test_quantile_baseline_widths_are_numpys_quantiles():
    g = torch.Generator().manual_seed(2)
    ref = torch.randn(301, 5, generator=g)
    base = fit_baseline({0: ref}, (0.9, 0.99), method="quantile")
    dev = np.abs(ref.double().numpy() - np.median(ref.double().numpy(), axis=0))
    np.testing.assert_allclose(base.width[0].numpy(), np.quantile(dev, [0.9, 0.99], axis=0), rtol=1e-6)


def test_bad_thresholds_say_what_to_do():
    ref = {0: torch.randn(10, 3)}
    with pytest.raises(ValueError, match="z-score thresholds must be > 0"):
        fit_baseline(ref, (0.0,))
    with pytest.raises(ValueError, match=r"quantile thresholds must lie in \(0, 1\)"):
        fit_baseline(ref, (1.5,), method="quantile")
    with pytest.raises(ValueError, match="baseline 'median' is unknown"):
        fit_baseline(ref, (1.0,), method="median")


# --------------------------------------------------------------------------------------------------
# cascades on hand-made lattices


def _lattice(rows):
    """counts (1 sequence, n_pos, n_layers) from a list of per-token layer rows."""
    c = np.asarray(rows, dtype=np.int32)[None]
    return c, np.ones(c.shape[:2], dtype=bool)


def test_layer_time_runs_and_censoring():
    counts, valid = _lattice([
        [2, 1, 0, 3],  # run (2,1): size 3, 2 layers; run (3) reaches the last layer: censored
        [0, 0, 0, 0],
        [0, 4, 5, 0],  # size 9, 2 layers
        [1, 0, 1, 0],  # two runs of size 1
    ])
    c = cascades(counts, valid, "layer-time")
    assert sorted(zip(c.sizes.tolist(), c.durations.tolist())) == [(1, 1), (1, 1), (3, 2), (9, 2)]
    assert c.n_censored == 1


def test_token_layer_clusters_connect_in_token_and_layer_but_not_diagonally():
    counts, valid = _lattice([
        [0, 0, 0],  # first token quiet: nothing censored at the start
        [1, 0, 0],
        [2, 3, 0],  # joins (1, 0): cluster {1,0 ; 2,0 ; 2,1} size 6, tokens 1..2
        [0, 0, 4],  # diagonal to (2, 1) only: its own cluster, size 4, one token
        [0, 0, 0],
        [0, 5, 0],
        [0, 0, 0],
    ])
    c = cascades(counts, valid, "token-layer")
    assert sorted(zip(c.sizes.tolist(), c.durations.tolist())) == [(4, 1), (5, 1), (6, 2)]
    assert c.n_censored == 0
    counts[0, 0, 0] = 7  # joins the size-6 cluster, which now touches the first token: censored
    counts[0, 6, 2] = 1  # a cluster on the last real token: censored
    c = cascades(counts, valid, "token-layer")
    assert sorted(c.sizes.tolist()) == [4, 5] and c.n_censored == 2
    valid[0, 6] = False  # padding is not a site: the last real token is now 5, whose cluster is censored
    c = cascades(counts, valid, "token-layer")
    assert c.sizes.tolist() == [4] and c.n_censored == 2


def test_descendants_per_ancestor_and_susceptibility():
    counts, valid = _lattice([[2, 4, 2], [1, 1, 0], [0, 3, 3]])
    sigma_l, se_l, sigma, _ = descendants_per_ancestor(counts, valid)
    # layer 0 -> 1 over tokens with c_0 > 0: 4/2, 1/1 -> 1.5; layer 1 -> 2: 2/4, 0/1, 3/3 -> 0.5
    np.testing.assert_allclose(sigma_l, [1.5, 0.5])
    assert sigma == pytest.approx((2 + 1 + 0.5 + 0 + 1) / 5)
    rho = counts[valid].ravel() / 10
    assert susceptibility(counts, valid, 10) == pytest.approx(10 * rho.var())


# --------------------------------------------------------------------------------------------------
# nulls


def test_shuffle_layers_keeps_each_tokens_counts():
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 5, (3, 7, 6)).astype(np.int32)
    shuffled = shuffle_layers(counts, rng)
    np.testing.assert_array_equal(np.sort(shuffled, axis=-1), np.sort(counts, axis=-1))
    assert not np.array_equal(shuffled, counts)


def test_poisson_binomial_pmf_is_exact():
    # equal rates: the binomial law (scipy.stats.binom)
    np.testing.assert_allclose(_poisson_binomial_pmf(np.full(12, 0.3)), sps.binom.pmf(np.arange(13), 12, 0.3), atol=1e-14)
    # unequal rates: brute-force enumeration of all 2^4 outcomes
    p = np.array([0.1, 0.5, 0.7, 0.25])
    brute = np.zeros(5)
    for bits in range(16):
        on = np.array([(bits >> i) & 1 for i in range(4)], dtype=bool)
        brute[on.sum()] += np.prod(np.where(on, p, 1 - p))
    np.testing.assert_allclose(_poisson_binomial_pmf(p), brute, atol=1e-15)


def test_rate_matched_counts_have_the_poisson_binomial_moments():
    rng = np.random.default_rng(3)
    rates = rng.uniform(0, 0.2, (2, 50))
    valid = np.ones((40, 100), dtype=bool)
    valid[-1, 60:] = False
    c = rate_matched_counts(rates, valid, rng)
    assert (c[~valid] == 0).all()
    for layer in range(2):
        sample = c[..., layer][valid]
        mean, var = rates[layer].sum(), (rates[layer] * (1 - rates[layer])).sum()
        assert sample.mean() == pytest.approx(mean, abs=4 * np.sqrt(var / sample.size))
        assert sample.var() == pytest.approx(var, rel=0.08)


# --------------------------------------------------------------------------------------------------
# a synthetic network of known branching ratio, through the same extraction and statistics


def _synthetic_lattice(m: float, n_trials: int, n_layers: int, n_units: int, seed: int = 0):
    """Run the synthetic network's activations through fit_baseline -> LatticeBuilder (layer_counts)."""
    builder = None
    for layer, trials, x in synthetic_branching_network(m, n_trials=n_trials, n_layers=n_layers, n_units=n_units,
                                                        seed=seed):
        if builder is None:  # every layer is alike: one reference (layer 0's first rows) serves them all
            one = fit_baseline({0: x[:1000]}, (3.0,))
            base = dataclasses.replace(one, centre={k: one.centre[0] for k in range(n_layers)},
                                       width={k: one.width[0] for k in range(n_layers)})
            builder = LatticeBuilder(base, n_trials, 1, n_layers)
        builder.add(layer, trials, np.zeros(len(trials), dtype=np.int64), x)
    return builder.build(np.ones((n_trials, 1), dtype=bool))


def _synthetic_stats(m, n_trials, n_layers, n_units, seed=0):
    lat = _synthetic_lattice(m, n_trials, n_layers, n_units, seed)
    fit, c, _, _ = lattice_stats(lat.main, lat.valid, lat.n_units, source="model", lattice="layer-time", n_boot=0,
                                 n_boot_branching=0, seed=0, mr=False)
    return lat, fit


def test_synthetic_network_events_are_exactly_the_branching_process():
    # with one seed per trial, layer 0 holds exactly one event per trial, and nothing else fires
    lat = _synthetic_lattice(1.0, 300, 5, 256, seed=4)
    assert (lat.main[:, 0, 0] == 1).all()
    assert lat.main.sum() == pytest.approx(lat.unit_rates.sum() * 300)


@pytest.fixture(scope="module")
def critical_run():
    return _synthetic_stats(1.0, 5000, 100, 1024, seed=0)


@pytest.fixture(scope="module")
def critical(critical_run):
    return critical_run[1]


@pytest.fixture(scope="module")
def subcritical():
    return _synthetic_stats(0.9, 20000, 100, 1024, seed=1)[1]


def _exact_duration_alpha(xmin: float, t_max: int) -> float:
    """What the duration fit must give on an exact critical Galton-Watson process (Poisson(1)
    offspring, one seed) of depth ``t_max + 1``.

    Extinction by generation t: q_{t+1} = exp(q_t - 1), q_0 = 0 (Harris 1963, The Theory of Branching
    Processes, ch. I), so P(T = t) = q_t - q_{t-1}, asymptotically ~ 2 / t^2 but with slowly decaying
    corrections (local log-slope -1.86 over t = 5..100, -1.98 over 100..1000). Cascades reaching the
    last layer are dropped as censored, so the observed law is P(T = t | T <= t_max); the fit models it
    as an untruncated discrete power law from ``xmin``, whose expected maximum-likelihood exponent is
    the argmax over alpha of sum_t P(t) log(t^-alpha / zeta(alpha, xmin)).
    """
    from scipy.optimize import minimize_scalar
    from scipy.special import zeta

    q = [0.0]
    for _ in range(t_max):
        q.append(np.exp(q[-1] - 1.0))
    t = np.arange(1, t_max + 1)
    p = np.diff(q)[int(xmin) - 1:]
    p, t = p / p.sum(), t[int(xmin) - 1:]
    return float(minimize_scalar(lambda a: (p * a * np.log(t)).sum() + np.log(zeta(a, xmin)),
                                 bounds=(1.05, 4.0), method="bounded").x)


def test_critical_branching_recovers_mean_field_exponents(critical):
    # Critical Galton-Watson (Poisson(1) offspring): P(s) ~ s^-3/2 (Borel law), P(T) ~ T^-2, m = 1
    # (Harris 1963; mean-field avalanches, Sethna, Dahmen & Myers 2001, arXiv:cond-mat/0102091).
    fit = critical
    assert fit.tau == pytest.approx(1.5, abs=max(3 * fit.tau_stderr, 0.05))
    # Durations: the exponent 2 is only asymptotic; on this 100-layer network the exact process's law,
    # fitted the same way from the same xmin, gives 2.20 (xmin 9) — the extraction must reproduce that.
    assert fit.tau_duration == pytest.approx(_exact_duration_alpha(fit.duration_xmin, 99),
                                             abs=3 * fit.tau_duration_stderr)
    assert fit.branching_ratio == pytest.approx(1.0, abs=3 * fit.branching_ratio_stderr + 0.005)
    assert fit.is_power_law


def test_subcritical_branching_shows_the_exponential_cutoff(subcritical, critical):
    fit = subcritical
    assert fit.branching_ratio == pytest.approx(0.9, abs=3 * fit.branching_ratio_stderr + 0.005)
    # over all sizes the truncated power law beats the pure one (nested LR test, p < 0.01) ...
    assert fit.lr_cutoff < 0 and fit.p_cutoff < 0.01
    # ... with the Borel-law cutoff s_c = 1/(m - 1 - ln m) = 186.6 for m = 0.9 (Stirling on
    # P(s) = e^{-ms} (ms)^{s-1} / s!), well below the finite-depth cutoff of the critical network
    s_c_theory = 1.0 / (0.9 - 1.0 - np.log(0.9))
    assert 0.5 * s_c_theory < fit.s_c < 2.0 * s_c_theory
    assert fit.tpl_alpha == pytest.approx(1.5, abs=0.1)
    assert fit.s_c < critical.s_c / 3


def test_real_branching_beats_both_nulls(critical_run):
    lat, fit = critical_run
    model_c = cascades(lat.main, lat.valid, "layer-time")
    rng = np.random.default_rng(5)
    for counts in (shuffle_layers(lat.main, rng), rate_matched_counts(lat.unit_rates, lat.valid, rng)):
        null, null_c, _, _ = lattice_stats(counts, lat.valid, lat.n_units, source="null", lattice="layer-time",
                                           n_boot=0, n_boot_branching=0, seed=0, mr=False)
        assert beats_null(fit, model_c.sizes, null, null_c.sizes)


@pytest.mark.slow
def test_critical_branching_deep_network():
    _, fit = _synthetic_stats(1.0, 20000, 300, 4096, seed=2)
    assert fit.tau == pytest.approx(1.5, abs=max(3 * fit.tau_stderr, 0.03))
    # the exact law fitted the same way (xmin 6: 1.955): within 3 standard errors
    assert fit.tau_duration == pytest.approx(_exact_duration_alpha(fit.duration_xmin, 299),
                                             abs=3 * fit.tau_duration_stderr)
    assert fit.branching_ratio == pytest.approx(1.0, abs=3 * fit.branching_ratio_stderr + 0.005)
    assert fit.gamma_fit == pytest.approx(2.0, abs=0.3)  # <S>(T) ~ T^2 with finite-T corrections
