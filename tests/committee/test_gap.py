"""The gap study's statistics: logistic crossover, 1/sqrt(n) extrapolation, thresholds on the SE grid."""

import math

import numpy as np
import pandas as pd
import pytest

from thermolens.committee import AMPConfig
from thermolens.committee.gap import GapConfig, extrapolate, grid_thresholds, logistic_fit


def test_logistic_fit_recovers_a_known_crossover():
    # 40 runs at each of 9 alphas drawn from P = 1 / (1 + exp(-(alpha - 2) / 0.1)): the fit must find
    # alpha_50 = 2 within 3 of its own standard errors
    rng = np.random.default_rng(0)
    alpha = np.repeat(np.linspace(1.6, 2.4, 9), 40)
    success = rng.random(alpha.size) < 1.0 / (1.0 + np.exp(-(alpha - 2.0) / 0.1))
    fit = logistic_fit(alpha, success)
    assert fit["status"] == "fit"
    assert fit["alpha_50"] == pytest.approx(2.0, abs=3 * fit["alpha_50_err"])
    assert 0.0 < fit["alpha_50_err"] < 0.05 and fit["width"] == pytest.approx(0.1, rel=0.5)


def test_logistic_fit_edge_cases():
    a = np.array([1.0, 1.0, 2.0, 2.0])
    assert logistic_fit(a, np.ones(4))["status"] == "below"
    assert logistic_fit(a, np.zeros(4))["status"] == "above"
    step = logistic_fit(a, np.array([0, 0, 1, 1]))
    assert step["status"] == "step" and step["alpha_50"] == 1.5 and step["alpha_50_err"] == 0.5
    # one scattered failure at the low end: the maximum-likelihood a50 falls below the grid, not located
    grid = np.repeat([1.5, 1.6, 1.7, 1.8], 10)
    scattered = np.ones(grid.size)
    scattered[[0, 11]] = 0
    assert logistic_fit(grid, scattered) == {"alpha_50": None, "alpha_50_err": None, "width": None, "status": "below"}


def test_extrapolation_is_exact_on_a_line():
    ns = [1000, 4000, 16000]
    a50 = [2.0 + 3.0 / math.sqrt(n) for n in ns]
    ext = extrapolate(ns, a50, [0.01, 0.01, 0.01])
    assert ext["alpha_inf"] == pytest.approx(2.0) and ext["slope"] == pytest.approx(3.0)
    assert ext["alpha_inf_err"] > 0
    assert extrapolate([1000], [2.0], [0.1])["alpha_inf"] is None


def _se_table(alpha, q_u, q_i, f_u, f_i):
    rows = [{"alpha": a, "branch": "uninformed", "q_d": q, "free_entropy": f} for a, q, f in zip(alpha, q_u, f_u)]
    rows += [{"alpha": a, "branch": "informed", "q_d": q, "free_entropy": f} for a, q, f in zip(alpha, q_i, f_i)]
    return pd.DataFrame(rows)


def test_grid_thresholds():
    alpha = [1.0, 2.0, 3.0, 4.0]
    # specialized branch from alpha = 2, wins between 2 and 3 (f difference -0.1 -> +0.3: crossing at 2.25);
    # AMP's branch specializes at 4
    se = _se_table(alpha, [0, 0, 0, 1], [0, 0.9, 0.95, 1], [0, 0, 0, 0], [-1, -0.1, 0.3, 0])
    th = grid_thresholds(se, 0.5)
    assert th["alpha_it"] == pytest.approx(2.25) and not th["alpha_it_upper_bound"]
    assert th["alpha_alg"] == 4.0 and th["alpha_spinodal"] == 2.0
    # already winning where it first appears: only an upper bound
    se = _se_table(alpha, [0, 0, 0, 0], [0, 0.9, 0.95, 1], [0, 0, 0, 0], [-1, 0.1, 0.3, 0.5])
    th = grid_thresholds(se, 0.5)
    assert th["alpha_it"] == 2.0 and th["alpha_it_upper_bound"] and th["alpha_alg"] is None


@pytest.mark.parametrize("kwargs, match", [
    (dict(K=4), "needs odd K"), (dict(K=13), "odd K <= 11"), (dict(K=0), "K=0"),
    (dict(alphas=(2.0, 1.0)), "ascending"), (dict(ns=(5,)), "n >= 10"),
    (dict(ns=(10,), alphas=(0.01, 1.0)), "fewer than 1 sample"), (dict(seeds=()), "seeds"),
    (dict(starts=("warm",)), "starts"), (dict(success_q=1.0), "success_q"), (dict(learners=("sgd",)), "learners"),
    (dict(learner_n=999), "learner_n"), (dict(prior="laplace"), "unknown prior"),
])
def test_gap_config_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GapConfig(**({"amp": AMPConfig()} | kwargs))


def test_gap_study_runs_learners_where_asked_and_skips_se():
    from thermolens.committee.gap import gap_study

    config = GapConfig(K=1, prior="gaussian", alphas=(2.0, 4.0), ns=(100,), seeds=(0, 1), se=False,
                       learners=("adam",), learner_seeds=1, learner_alphas=(4.0,), amp=AMPConfig(n_test=500))
    with pytest.warns(UserWarning, match="finite-size"):
        study = gap_study(config)
    assert len(study.amp) == 2 * 2 * 2 and len(study.se) == 0 and study.thresholds == {}
    assert study.learners[["alpha", "seed"]].values.tolist() == [[4.0, 0]]
    s = study.summary()
    assert s["learners"]["adam"]["eps_test"][0] is None and 0.0 < s["learners"]["adam"]["eps_test"][1] < 0.5
    # the Gaussian perceptron has no gap: both starts end at the same overlap on every instance
    r, i = (study.amp[study.amp.start == x].sort_values(["alpha", "seed"]) for x in ("random", "informed"))
    np.testing.assert_allclose(r.q_d.to_numpy(), i.q_d.to_numpy(), atol=0.02)
