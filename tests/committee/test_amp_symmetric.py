"""AMP at odd K: the compiled committee-symmetric output channel and AMP against state evolution."""

import itertools
import math

import numpy as np
import pytest
from scipy.special import log_ndtr, ndtr
from scipy.stats import multivariate_normal

from thermolens.committee import AMPConfig, generate, run_amp
from thermolens.committee._poisson import label_sums, scaled_cdf
from thermolens.committee.channels import common_factor_rule, g_out_symmetric, symmetric_projection
from thermolens.committee.general_k import SymmetricConfig, label_probability, solve_symmetric


def test_scaled_cdf_matches_scipy_off_the_real_line():
    # Phi(x) exp(-(Im x)^2 / 2) for complex x: scipy's log_ndtr (Faddeeva-based) is the reference
    rng = np.random.default_rng(0)
    x = rng.normal(size=4000) * 5 + 1j * rng.normal(size=4000) * 5
    np.testing.assert_allclose(scaled_cdf(x), np.exp(log_ndtr(x) - 0.5 * x.imag**2), rtol=0, atol=1e-9)


@pytest.mark.parametrize("b", [0.4, -0.4])
def test_k1_split_of_the_noise_is_exact(b):
    # K = 1: any split V = v_d + b of the noise (real common factor for b > 0, imaginary for b < 0)
    # must give Z(y | omega) = Phi(y omega / sqrt(V)) and dZ = y phi(omega / sqrt V) / sqrt V (V = 1)
    rng = np.random.default_rng(1)
    omega, y = rng.normal(size=(500, 1)) * 1.5, np.sign(rng.normal(size=500))
    v_d = 1.0 - b
    Z, dZ = label_sums(omega, y, math.sqrt(v_d), *common_factor_rule(v_d, b, 1, 60))
    np.testing.assert_allclose(Z, ndtr(y * omega[:, 0]), atol=1e-9)
    np.testing.assert_allclose(dZ[:, 0], y * np.exp(-0.5 * omega[:, 0] ** 2) / math.sqrt(2 * math.pi), atol=1e-9)


@pytest.mark.parametrize("q_d, q_a", [(0.0, 0.9), (0.3, 0.4), (0.9, 0.05)])
def test_odd_k_channel_matches_the_state_evolution_quadrature(q_d, q_a):
    # the SE's numpy/scipy label probabilities (general_k.label_probability, many nodes) as reference
    K = 3
    rng = np.random.default_rng(2)
    omega, y = rng.normal(size=(60, K)) * 0.7, np.sign(rng.normal(size=60))
    Z, dZ = label_sums(omega, y, math.sqrt(1 - q_d), *common_factor_rule(1 - q_d, -q_a / K, K, 40))
    Zr, dZr = label_probability(omega, q_d, q_a, K, n_u=80)
    rows = np.arange(60)
    label = (y > 0).astype(int)
    np.testing.assert_allclose(Z, Zr[label, rows], atol=1e-9)
    np.testing.assert_allclose(dZ, dZr[label, rows], atol=1e-9)


def test_odd_k_channel_matches_orthant_probabilities_with_positive_common_part():
    # V = 0.5 I + 0.2 1 1^T (real common factor): P(majority positive) as a sum of trivariate orthant
    # probabilities (scipy's Genz integration, ~1e-5 absolute)
    K = 3
    V = 0.5 * np.eye(K) + 0.2
    rng = np.random.default_rng(3)
    omega = rng.normal(size=(4, K)) * 0.5
    Z, _ = label_sums(omega, np.ones(4), math.sqrt(0.5), *common_factor_rule(0.5, 0.2, K, 40))
    for i in range(4):
        total = 0.0
        for s in itertools.product((-1.0, 1.0), repeat=K):
            if sum(s) > 0:
                D = np.diag(s)
                total += multivariate_normal(mean=np.zeros(K), cov=D @ V @ D).cdf(D @ omega[i])
        assert Z[i] == pytest.approx(total, abs=5e-5)


def test_gradient_matches_finite_differences_k5():
    K, h = 5, 1e-5
    V = 0.6 * np.eye(K) - 0.05
    rng = np.random.default_rng(4)
    omega, y = rng.normal(size=(20, K)) * 0.6, np.sign(rng.normal(size=20))
    rule = common_factor_rule(*symmetric_projection(V), K, 40)
    Z, dZ = label_sums(omega, y, math.sqrt(symmetric_projection(V)[0]), *rule)
    for l in range(K):
        e = np.zeros(K)
        e[l] = h
        up = label_sums(omega + e, y, math.sqrt(symmetric_projection(V)[0]), *rule)[0]
        down = label_sums(omega - e, y, math.sqrt(symmetric_projection(V)[0]), *rule)[0]
        np.testing.assert_allclose(dZ[:, l], (up - down) / (2 * h), atol=1e-7)
    # labels sum to one: Z(+1) + Z(-1) = 1 for odd K
    Zm = label_sums(omega, -y, math.sqrt(symmetric_projection(V)[0]), *rule)[0]
    np.testing.assert_allclose(Z + Zm, 1.0, atol=1e-9)


def test_symmetric_projection_and_bad_input():
    V = np.array([[1.0, 0.2, 0.0], [0.2, 0.8, 0.1], [0.0, 0.1, 0.9]])
    v_d, b = symmetric_projection(V)
    assert b == pytest.approx(0.1) and v_d == pytest.approx(0.9 - 0.1)
    with pytest.raises(ValueError, match="odd K >= 3"):
        g_out_symmetric(np.ones(3), np.zeros((3, 2)), np.eye(2))
    with pytest.raises(ValueError, match="labels"):
        g_out_symmetric(np.zeros(3), np.zeros((3, 3)), np.eye(3))
    with pytest.raises(ValueError, match="positive definite"):
        common_factor_rule(1.0, -0.5, 3)


def test_amp_k3_non_specialized_matches_state_evolution():
    # K = 3, Gaussian prior, alpha = 12 (< alpha_alg: the uninformed branch stays at q_d = 0 with
    # q_a = 0.9178, docs/committee.md): AMP from a random start at n = 3000 lands there
    alpha, n = 12.0, 3000
    se = solve_symmetric(alpha, SymmetricConfig(K=3), branch="uninformed")
    data = generate(n, alpha, 3, "gaussian", seed=np.random.default_rng([0, 0]))
    r = run_amp(data, AMPConfig(K=3, n_test=4000), seed=0)
    assert r.converged
    assert abs(r.q_d) < 2 / math.sqrt(n)
    assert r.q_a == pytest.approx(se.q_a, abs=2 / math.sqrt(n))
    # Nishimori: W_hat^T W_hat / n = W_hat^T W* / n at the Bayes-optimal fixed point
    np.testing.assert_allclose(r.Q_self, r.Q, atol=3 / math.sqrt(n))


@pytest.mark.slow
def test_amp_k3_informed_start_finds_the_specialized_state():
    # same alpha: the specialized branch exists (spinodal in (10, 11)) with q_d = 0.843, q_a = 0.098
    # (docs/committee.md, committee-symmetric SE); AMP planted at q0 = 0.99 settles there, the random start does not
    alpha, n = 12.0, 2000
    se = solve_symmetric(alpha, SymmetricConfig(K=3), branch="informed", q0=np.array([0.99, 0.99]))
    data = generate(n, alpha, 3, "gaussian", seed=np.random.default_rng([1, 0]))
    informed = run_amp(data, AMPConfig(K=3, start="informed", n_test=4000), seed=1)
    assert informed.q_d == pytest.approx(se.q_d, abs=3 / math.sqrt(n))
    assert informed.eps_test < run_amp(data, AMPConfig(K=3, n_test=4000), seed=1).eps_test - 0.02
