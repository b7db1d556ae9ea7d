"""Data generation and AMP on finite instances against state evolution."""

import math

import numpy as np
import pytest

from thermolens.committee import AMPConfig, SEConfig, amp_over_seeds, generate, run_amp, solve_fixed_point


def test_generate_is_seeded_and_well_formed():
    a = generate(300, 1.5, K=2, prior="binary", seed=4)
    b = generate(300, 1.5, K=2, prior="binary", seed=4)
    assert a.X.shape == (450, 300) and a.W_star.shape == (300, 2) and a.alpha == 1.5
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.y, b.y)
    assert set(np.unique(a.y)) <= {-1.0, 0.0, 1.0} and set(np.unique(a.W_star)) == {-1.0, 1.0}
    # K = 2 labels: P(0) = 1/2, P(+-1) = 1/4 (independent teacher units)
    big = generate(400, 20.0, K=2, prior="gaussian", seed=0)
    assert np.mean(big.y == 0) == pytest.approx(0.5, abs=4 * math.sqrt(0.25 / big.m))
    # odd K never ties
    assert set(np.unique(generate(200, 1.0, K=3, seed=1).y)) == {-1.0, 1.0}


@pytest.mark.parametrize("kwargs, match", [
    (dict(K=0), "K="), (dict(prior="uniform"), "unknown prior"), (dict(activation="tanh"), "unknown activation"),
    (dict(alpha=-1.0), "alpha"),
])
def test_generate_rejects_bad_input(kwargs, match):
    args = dict(n=50, alpha=1.0, K=2, prior="gaussian") | kwargs
    with pytest.raises(ValueError, match=match):
        generate(args.pop("n"), args.pop("alpha"), **args)


def _compare(K, prior, alpha, n=2000, seeds=(0, 1, 2)):
    amp = amp_over_seeds(alpha, n, seeds, AMPConfig(K=K, prior=prior, n_test=10_000))
    se = solve_fixed_point(alpha, SEConfig(K=K, prior=prior))
    return amp, se


def test_amp_perceptron_agrees_with_state_evolution():
    # Gaussian perceptron, alpha = 2 (no transition): AMP overlap and test error vs SE. Allowed gap:
    # 3 standard errors across seeds plus 1/sqrt(n) for the finite-size bias.
    amp, se = _compare(1, "gaussian", 2.0)
    assert amp.all_converged
    tol = lambda err: 3 * err + 1 / math.sqrt(amp.n)  # noqa: E731
    assert amp.q_d[0] == pytest.approx(se.q_d, abs=tol(amp.q_d[1]))
    assert amp.eps_test[0] == pytest.approx(se.eps_plugin, abs=tol(amp.eps_test[1]))
    # Nishimori identity at the Bayes-optimal fixed point: W_hat^T W_hat / n = W_hat^T W* / n
    for r in amp.runs:
        np.testing.assert_allclose(r.Q_self, r.Q, atol=3 / math.sqrt(amp.n))


def test_amp_k2_non_specialized_phase_agrees_with_state_evolution():
    # K = 2, Gaussian prior, alpha = 1 (below alpha_spec ~ 2.05): AMP stays non-specialized.
    amp, se = _compare(2, "gaussian", 1.0)
    tol = lambda err: 3 * err + 1 / math.sqrt(amp.n)  # noqa: E731
    assert amp.q_a[0] == pytest.approx(se.q_a, abs=tol(amp.q_a[1]))
    assert abs(amp.q_d[0]) < 2 / math.sqrt(amp.n)
    assert amp.eps_test[0] == pytest.approx(se.eps_plugin, abs=tol(amp.eps_test[1]))


def test_amp_k2_specialized_phase_agrees_with_state_evolution():
    # K = 2, Gaussian prior, alpha = 4 (well above alpha_spec ~ 2.05): AMP specializes like SE; the
    # Gibbs error at AMP's overlap and its test error against SE's eps_g and plug-in error.
    amp, se = _compare(2, "gaussian", 4.0)
    assert amp.all_converged
    tol = lambda err: 3 * err + 1 / math.sqrt(amp.n)  # noqa: E731
    assert amp.q_d[0] == pytest.approx(se.q_d, abs=tol(amp.q_d[1]))
    assert amp.eps_gibbs[0] == pytest.approx(se.eps_g, abs=tol(amp.eps_gibbs[1]))
    assert amp.eps_test[0] == pytest.approx(se.eps_plugin, abs=tol(amp.eps_test[1]))
    for r in amp.runs:  # Nishimori, as above
        np.testing.assert_allclose(r.Q_self, r.Q, atol=3 / math.sqrt(amp.n))


@pytest.mark.parametrize("K, alpha", [(1, 2.0), (2, 2.5)])
def test_amp_binary_prior_learns_perfectly_above_alpha_alg(K, alpha):
    # Above the algorithmic threshold AMP reaches perfect generalization: K = 1, alpha = 2 > 1.493
    # (Barbier et al. 2019); K = 2, alpha = 2.5 > our SE spinodal (~1.95-2.0, docs/committee.md).
    data = generate(1000, alpha, K=K, prior="binary", seed=3)
    r = run_amp(data, AMPConfig(K=K, prior="binary", n_test=5000), seed=3)
    assert r.converged
    # the recovered weights are the teacher's, so Q is the teacher's own Gram matrix W*^T W* / n
    np.testing.assert_allclose(r.Q, data.W_star.T @ data.W_star / data.n, atol=1e-5)
    assert r.eps_test == 0.0


def test_amp_small_n_warns_and_tiny_n_fails():
    with pytest.warns(UserWarning, match="finite-size"):
        amp_over_seeds(1.0, 100, [0], AMPConfig(K=1, n_test=200, max_iter=5))
    with pytest.raises(ValueError, match="too small"):
        amp_over_seeds(1.0, 5, [0], AMPConfig(K=1))
    with pytest.raises(ValueError, match="needs odd K"):
        AMPConfig(K=4)
    with pytest.raises(ValueError, match="odd K <= 11"):
        AMPConfig(K=13)
    with pytest.raises(ValueError, match="start="):
        AMPConfig(start="planted")
    data = generate(600, 1.0, K=1, seed=0)
    with pytest.raises(ValueError, match="config has K=2"):
        run_amp(data, AMPConfig(K=2))
