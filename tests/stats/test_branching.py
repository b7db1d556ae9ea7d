"""MR estimator: coefficients identical to `mrestimator`, m recovered under subsampling where the
conventional estimator is biased, bootstrap CIs, bad input."""

import logging

import numpy as np
import pytest

from thermolens import stats

mre = pytest.importorskip("mrestimator")
logging.getLogger("mrestimator").setLevel(logging.ERROR)


def _series(m, subsampling, n_steps=40000, seed=1, n_trials=1):
    # h chosen so the stationary mean h/(1-m) is 100 units
    return stats.simulate_branching(m, n_steps=n_steps, h=100 * (1 - m), subsampling=subsampling, n_trials=n_trials, seed=seed)


@pytest.mark.parametrize("method, peer_method", [("ts", "trialseparated"), ("sm", "stationarymean")])
@pytest.mark.parametrize("n_trials", [1, 4])
def test_coefficients_identical_to_mrestimator(method, peer_method, n_trials):
    a = _series(0.95, 0.3, n_steps=5000, n_trials=n_trials)
    steps, r = stats.coefficients(a, 100, method=method)
    peer = mre.coefficients(a, steps=(1, 100), method=peer_method, numboot=0)
    assert np.array_equal(steps, peer.steps)
    assert np.allclose(r, peer.coefficients, rtol=0, atol=1e-10)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # mrestimator's fit overflows while probing
@pytest.mark.parametrize("m", [0.9, 0.98, 0.99])
@pytest.mark.parametrize("subsampling", [0.02, 0.2, 1.0])
def test_mr_estimate_agrees_with_mrestimator_and_truth(m, subsampling):
    a = _series(m, subsampling, n_steps=40000, seed=2)
    kmax = int(min(400, 8 / -np.log(m)))
    ours = stats.branching_ratio(a[0], kmax, n_boot=20, seed=0)
    peer = mre.fit(mre.coefficients(a, steps=(1, kmax), method="ts", numboot=0), fitfunc="exponential")
    # same m as mrestimator (same coefficients, same model; only the optimiser differs)
    assert ours.m == pytest.approx(peer.mre, abs=2e-4)
    # and the truth within the bootstrap CI widened by the finite-series bias (a few 1/T_corr)
    lo, hi = ours.m_ci
    slack = 3 * (1 - m) / 4
    assert lo - slack <= m <= hi + slack
    assert ours.tau == pytest.approx(-1 / np.log(ours.m))


def test_conventional_estimator_biased_under_subsampling():
    # Wilting & Priesemann 2018: r_1 = b m with b = alpha^2 Var(A) / (alpha^2 Var(A) + alpha(1-alpha) <A>) < 1
    m, alpha = 0.98, 0.02
    a = _series(m, alpha, n_steps=80000, seed=3)
    res = stats.branching_ratio(a[0], 200, n_boot=0)
    mean_a = 100.0
    var_a = 100.0 / (1 - m**2)  # Poisson branching with immigration: Var(A) = <A>/(1 - m^2)
    b = alpha**2 * var_a / (alpha**2 * var_a + alpha * (1 - alpha) * mean_a)
    assert res.m_conventional == pytest.approx(b * m, abs=0.05)
    assert res.m_conventional < 0.6 < m - 0.3
    assert abs(res.m - m) < 0.01


def test_offset_fit_and_trials_bootstrap():
    a = _series(0.95, 0.5, n_steps=4000, n_trials=20, seed=4)
    res = stats.branching_ratio(a, 60, fit="exponential_offset", n_boot=50, seed=1)
    assert abs(res.m - 0.95) < 0.02 and abs(res.offset) < 0.05
    assert res.m_ci[0] < res.m < res.m_ci[1]
    assert np.all(res.coefficient_stderr > 0)
    frame = res.to_frame()
    assert list(frame.columns) == ["k", "r_k", "r_k_stderr", "fit"] and len(frame) == 60


def test_seeded_bootstrap_reproducible():
    a = _series(0.9, 1.0, n_steps=20000)
    one = stats.branching_ratio(a[0], 50, n_boot=30, seed=7)
    two = stats.branching_ratio(a[0], 50, n_boot=30, seed=7)
    assert one.m_ci == two.m_ci


@pytest.mark.parametrize(
    "activity, kwargs, message",
    [
        (np.ones(1000), {"kmax": 10}, "constant"),
        (np.r_[np.arange(1000.0), np.nan], {"kmax": 10}, "NaN"),
        (np.arange(30.0), {"kmax": 20}, "too short"),
        (np.random.default_rng(0).random(500), {"kmax": 2}, "kmax >= kmin"),
        (np.random.default_rng(0).random(500), {"kmax": 20, "method": "xx"}, "method"),
        (np.random.default_rng(0).random(500), {"kmax": 20, "fit": "power"}, "fit="),
    ],
)
def test_bad_input(activity, kwargs, message):
    with pytest.raises(ValueError, match=message):
        stats.branching_ratio(activity, **kwargs)
