"""Clauset's bootstrap goodness of fit: reproducible, parallel-invariant, calibrated; published p-values."""

from pathlib import Path

import numpy as np
import pytest

from thermolens import stats

powerlaw = pytest.importorskip("powerlaw")
REFERENCE = Path(powerlaw.__file__).parent / "reference_data"


def _pl_data(seed, n=1500):
    return stats.sample_power_law(2.5, 1.0, n, seed=seed)


def test_same_seed_same_p_on_any_number_of_cores():
    x = _pl_data(1)
    fit = stats.fit_power_law(x)
    one = stats.goodness_of_fit(fit, x, n_boot=24, seed=3, n_jobs=1)
    two = stats.goodness_of_fit(fit, x, n_boot=24, seed=3, n_jobs=2)
    assert np.array_equal(one.ks_synthetic, two.ks_synthetic)
    assert one.p_value == two.p_value
    other = stats.goodness_of_fit(fit, x, n_boot=24, seed=4, n_jobs=1)
    assert not np.array_equal(one.ks_synthetic, other.ks_synthetic)


def test_true_power_law_is_plausible_and_exponential_is_not():
    x = _pl_data(2)
    g = stats.goodness_of_fit(stats.fit_power_law(x), x, n_boot=40, seed=0, n_jobs=1)
    # p is uniform on (0,1) for a true power law; 0.1 has probability 0.1 of failing -- seed fixed, checked
    assert g.plausible and g.n_failed == 0
    # exponential data over the whole range (xmin fixed at the smallest value): the power law is rejected
    y = np.random.default_rng(5).exponential(10.0, 3000) + 1.0
    g = stats.goodness_of_fit(stats.fit_power_law(y, xmin=float(y.min())), y, n_boot=40, seed=0, n_jobs=1)
    assert g.p_value == 0.0


def test_progress_callback_and_stderr():
    x = _pl_data(3, n=600)
    seen = []
    g = stats.goodness_of_fit(stats.fit_power_law(x), x, n_boot=20, seed=0, n_jobs=1, progress=seen.append)
    assert seen[-1] == 20 and seen == sorted(seen)
    assert g.p_stderr == pytest.approx(np.sqrt(max(g.p_value * (1 - g.p_value), 1 / 20) / 20))


def test_fixed_xmin_is_kept_in_replicates():
    x = _pl_data(4, n=800)
    fit = stats.fit_power_law(x, xmin=1.0)
    g = stats.goodness_of_fit(fit, x, n_boot=10, seed=0, n_jobs=1)
    assert g.ks_synthetic.size == 10


@pytest.mark.parametrize("n_boot", [0, -5])
def test_bad_n_boot(n_boot):
    x = _pl_data(5, n=300)
    with pytest.raises(ValueError, match="at least 1 replicate"):
        stats.goodness_of_fit(stats.fit_power_law(x), x, n_boot=n_boot)


def test_wrong_data_is_refused():
    x = _pl_data(6, n=300)
    with pytest.raises(ValueError, match="pass the data that was fitted"):
        stats.goodness_of_fit(stats.fit_power_law(x), x[:200], n_boot=5)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, discrete, factor, published_p",
    [
        # Clauset, Shalizi & Newman 2009 (arXiv:0706.1062) Table 6.1, p-values from 2500 replicates.
        ("blackouts", False, 1e-3, 0.62),
        ("cities", False, 1e-3, 0.76),
        ("fires", False, 1, 0.05),
        ("flares", False, 1, 1.00),
        ("terrorism", True, 1, 0.68),
        ("words", True, 1, 0.49),
    ],
)
def test_published_p_values(name, discrete, factor, published_p):
    """Verdicts (p > 0.1: power law plausible) as published. The numbers themselves differ where noted in
    docs/stats.md: words gives p ~ 0.70 here (500 replicates, +-0.02) against the published 0.49;
    Clauset's discrete code quantised alpha to steps of 0.01, which changes the synthetic KS distances."""
    x = np.loadtxt(REFERENCE / f"{name}.txt") * factor
    x = x[x > 0]
    fit = stats.fit_power_law(x, discrete=discrete)
    g = stats.goodness_of_fit(fit, x, n_boot=500, seed=0)
    assert g.plausible == (published_p > 0.1)
    if name != "words":
        assert abs(g.p_value - published_p) < 0.1 + 3 * g.p_stderr
