"""Committee-symmetric state evolution for odd K (general_k.py): channel, quadrature, fixed points, CLI."""

import json
import math

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.stats import norm
from typer.testing import CliRunner

from thermolens.cli import app
from thermolens.committee import SEConfig, SymmetricConfig, solve_fixed_point, solve_symmetric
from thermolens.committee.channels import bvn_cdf
from thermolens.committee.general_k import (
    label_probability,
    n_outer_nodes,
    symmetric_map,
    symmetric_output,
    symmetric_prior,
)
from thermolens.committee.quadrature import gauss_hermite, perceptron_output, prior_integrals, psd_sqrt

K3 = SymmetricConfig(K=3)
K5 = SymmetricConfig(K=5)


@pytest.mark.parametrize("omega", [[0.2, -0.5, 0.7], [1.0, 0.1, -0.3], [-1.5, -0.2, 0.4]])
def test_label_probability_matches_inclusion_exclusion(omega):
    # Independent route for K = 3: 1{at least 2 of 3 positive} = sum_{i<j} 1_i 1_j - 2 * 1_1 1_2 1_3, with the
    # pair terms from Owen's T (bvn_cdf) and the triple P(X < a) by adaptive quad over X_1 (given X_1 = x the
    # others are bivariate normal with means rho x, variances 1 - rho^2, correlation rho / (1 + rho)).
    q_d, q_a = 0.3, 0.4
    V = (1 - q_d) * np.eye(3) - (q_a / 3) * np.ones((3, 3))
    sd, rho = math.sqrt(V[0, 0]), V[0, 1] / V[0, 0]
    a = np.array(omega) / sd
    pairs = sum(bvn_cdf(a[i], a[k], rho) for i in range(3) for k in range(i + 1, 3))
    s2 = math.sqrt(1 - rho * rho)

    def integrand(x):
        return norm.pdf(x) * float(bvn_cdf((a[1] - rho * x) / s2, (a[2] - rho * x) / s2, rho / (1 + rho)))

    triple = quad(integrand, -np.inf, a[0], epsabs=1e-13, epsrel=1e-12)[0]
    Z, dZ = label_probability(np.array([omega]), q_d, q_a, 3)
    assert Z[1, 0] == pytest.approx(float(pairs - 2 * triple), abs=1e-9)
    assert Z[0, 0] + Z[1, 0] == pytest.approx(1.0, abs=1e-12)
    # gradient against central finite differences of Z itself
    h = 1e-5
    for l in range(3):
        e = np.zeros(3)
        e[l] = h
        zp = label_probability(np.array([omega]) + e, q_d, q_a, 3)[0][1, 0]
        zm = label_probability(np.array([omega]) - e, q_d, q_a, 3)[0][1, 0]
        assert dZ[1, 0, l] == pytest.approx((zp - zm) / (2 * h), abs=1e-8)


@pytest.mark.parametrize("q", [0.2, 0.5, 0.8])
def test_k1_reduces_to_perceptron(q):
    # K = 1: no common factor; must equal the existing perceptron integrals (quadrature.perceptron_output)
    psi, _, m = symmetric_output(q, 0.0, SymmetricConfig(K=1))
    ref_psi, ref_m = perceptron_output(q)
    assert psi == pytest.approx(ref_psi, abs=1e-8)
    assert m == pytest.approx(ref_m, rel=1e-8)


@pytest.mark.parametrize("alpha", [1.0, 3.0])
def test_k1_fixed_point_equals_exact_state_evolution(alpha):
    ours = solve_symmetric(alpha, SymmetricConfig(K=1))
    ref = solve_fixed_point(alpha, SEConfig(K=1, prior="gaussian"))
    assert ours.converged and ref.converged
    assert ours.Q[0, 0] == pytest.approx(ref.Q[0, 0], abs=1e-8)
    assert ours.free_entropy == pytest.approx(ref.free_entropy, abs=1e-8)


def _direct_rule(q_d, q_a, K, n):
    # Independent route (the K = 3 code before the eta decomposition): tensor Gauss-Hermite over
    # omega = Q^{1/2} xi in K dimensions, one node per permutation orbit, Z from the Poisson-binomial
    # recursion of label_probability (checked against inclusion-exclusion above).
    import itertools

    x, w = gauss_hermite(n, 1)
    x, w = x[:, 0], w
    idx = np.array(list(itertools.combinations_with_replacement(range(n), K)))
    mult = np.array([math.factorial(K) / np.prod([math.factorial(list(c).count(j)) for j in set(c)]) for c in idx])
    omega = x[idx] @ psd_sqrt(q_d * np.eye(K) + (q_a / K) * np.ones((K, K)))
    wt = np.prod(w[idx], axis=-1) * mult
    Z, dZ = label_probability(omega, q_d, q_a, K, 64)
    Z = np.where(Z > 1e-280, Z, 1.0)  # an impossible label contributes nothing (its rounding can be <= 0)
    psi = float(np.sum(wt * (Z * np.log(Z)).sum(axis=0)))
    m_par = float(np.sum(wt / Z * dZ.sum(axis=-1) ** 2)) / K
    trace = float(np.sum(wt / Z * np.sum(dZ * dZ, axis=-1)))
    return psi, (trace - m_par) / (K - 1), m_par


@pytest.mark.parametrize("K,q_d,q_a", [(3, 0.3, 0.4), (3, 0.05, 0.8),
                                       pytest.param(5, 0.2, 0.5, marks=pytest.mark.slow)])
def test_eta_decomposition_matches_direct_k_dim_rule(K, q_d, q_a):
    # the direct rule converged to ~1e-9 (Psi) / 1e-7 (m) at these points with n = 24 (K = 3), 16 (K = 5)
    ref = _direct_rule(q_d, q_a, K, 24 if K == 3 else 16)
    ours = symmetric_output(q_d, q_a, SymmetricConfig(K=K))
    assert ours[0] == pytest.approx(ref[0], abs=3e-8)
    assert np.max(np.abs(np.array(ours[1:]) - ref[1:])) < 2e-6


FINE = dict(n_eta=24, xi_scale=2.0, n_u=24, step=0.14)


@pytest.mark.parametrize("K,q_d,q_a", [
    (3, 0.3, 0.4),
    (5, 1e-5, 0.7),
    pytest.param(5, 0.2, 0.5, marks=pytest.mark.slow),
    pytest.param(7, 1e-5, 0.85, marks=pytest.mark.slow),
    pytest.param(3, 0.0, 0.9, marks=pytest.mark.slow),
    pytest.param(3, 0.7, 0.2, marks=pytest.mark.slow),
    pytest.param(3, 0.9, 0.05, marks=pytest.mark.slow),
    pytest.param(5, 0.45, 0.3, marks=pytest.mark.slow),
])
def test_quadrature_accuracy(K, q_d, q_a):
    # default rules against rules with about twice the nodes in every direction (measured: Psi to ~1e-8,
    # m to ~1e-6 relative in the specialized regime q_d >= 1/2, docs/committee.md)
    a = np.array(symmetric_output(q_d, q_a, SymmetricConfig(K=K)))
    b = np.array(symmetric_output(q_d, q_a, SymmetricConfig(K=K, **FINE)))
    assert a[0] == pytest.approx(b[0], abs=2e-8)
    assert np.max(np.abs(a[1:] - b[1:]) / np.maximum(1.0, np.abs(b[1:]))) < 5e-6


def test_k5_specialized_rule_accuracy():
    # specialized K = 5 state: the default sinh step 0.3 against step 0.25 (measured against step 0.2:
    # Psi 8e-7, m_perp 3e-5, m_par 7e-7 relative; docs/committee.md)
    a = np.array(symmetric_output(0.9, 0.05, K5))
    b = np.array(symmetric_output(0.9, 0.05, SymmetricConfig(K=5, step=0.25)))
    assert np.all(np.abs(a - b) / np.abs(b) < [3e-6, 1e-4, 3e-6])


def test_merge_saturated_nodes_keeps_the_rule():
    # decided units at both ends of the rule (same factors, zero derivative) collapse into one node each with
    # their total weight; undecided nodes are kept as they are
    from thermolens.committee.general_k import _merge_saturated

    log_h = np.array([[0.0, 0.0]] * 3 + [[0.1, 0.2], [0.3, -0.1]] + [[1.0, 2.0]] * 2, dtype=complex)
    dlog_h = np.array([[0.0, 0.0]] * 3 + [[0.5, 0.4], [0.2, 0.1]] + [[0.0, 0.0]] * 2, dtype=complex)
    w = np.array([0.05, 0.1, 0.15, 0.2, 0.2, 0.2, 0.1])
    lh, dlh, lw = _merge_saturated(log_h, dlog_h, np.log(w))
    assert len(lw) == 4 and np.allclose(np.exp(lw), [0.3, 0.2, 0.2, 0.3])
    assert np.allclose(lh, log_h[[0, 3, 4, 6]]) and np.allclose(dlh, dlog_h[[0, 3, 4, 6]])


def test_outer_nodes_non_specialized():
    # q_d = 0: only the common factor eta is integrated (one xi node per unit)
    assert n_outer_nodes(0.0, 0.5, SymmetricConfig(K=7)) == SymmetricConfig(K=7).eta_nodes(0.5)


@pytest.mark.parametrize("q_d,q_a", [(0.25, 0.4), (0.6, 0.2)])
def test_fisher_is_gradient_of_psi_out(q_d, q_a):
    # Theorem 1 of arXiv:1806.05451: E[g g^T] = 2 grad_Q Psi_out. In eigenvalues: dPsi/dq_par = m_par / 2,
    # dPsi/dq_perp = (K - 1) m_perp / 2 (q_perp = q_d, q_par = q_d + q_a). Central differences, h = 1e-4.
    h = 1e-4
    _, m_perp, m_par = symmetric_output(q_d, q_a, K3)

    def psi(q_perp, q_par):
        return symmetric_output(q_perp, q_par - q_perp, K3)[0]

    qp, qa = q_d, q_d + q_a
    d_par = (psi(qp, qa + h) - psi(qp, qa - h)) / (2 * h)
    d_perp = (psi(qp + h, qa) - psi(qp - h, qa)) / (2 * h)
    assert d_par == pytest.approx(m_par / 2, rel=1e-5)
    assert d_perp == pytest.approx(2 * m_perp / 2, rel=1e-4)


@pytest.mark.parametrize("config", [K3, K5, SymmetricConfig(K=7)])
def test_non_specialized_point_is_a_fixed_direction(config):
    # q_d = 0: omega lies on the 1 direction, grad Z is parallel to 1 by symmetry, so m_perp = 0 and q_d stays 0
    assert abs(symmetric_output(0.0, 0.5, config)[1]) < 1e-12


@pytest.mark.parametrize("q_d,q_a", [(0.2, 0.5), (0.8, 0.1)])
def test_fisher_is_gradient_of_psi_out_k5(q_d, q_a):
    h = 1e-4
    _, m_perp, m_par = symmetric_output(q_d, q_a, K5)

    def psi(q_perp, q_par):
        return symmetric_output(q_perp, q_par - q_perp, K5)[0]

    qp, qa = q_d, q_d + q_a
    assert (psi(qp, qa + h) - psi(qp, qa - h)) / (2 * h) == pytest.approx(m_par / 2, rel=1e-5)
    assert (psi(qp + h, qa) - psi(qp - h, qa)) / (2 * h) == pytest.approx(4 * m_perp / 2, rel=1e-4)


def test_fixed_point_residual_k3():
    p = solve_symmetric(2.0, K3)
    assert p.converged and p.residual < 1e-8
    new, _, _ = symmetric_map(np.array([p.q_d, p.q_d + p.q_a]), 2.0, K3)
    assert np.max(np.abs(new - [p.q_d, p.q_d + p.q_a])) < 1e-8
    assert abs(p.q_d) < 1e-8 and 0.4 < p.q_a < 0.8  # non-specialized at alpha = 2 (see docs/committee.md)


@pytest.mark.slow
def test_k3_specialized_branch_matches_previous_implementation():
    # docs/committee.md (K = 3 table), computed with the previous K-dimensional orbit rules (commit 800dfcf):
    # alpha = 12: specialized q_d = 0.843, q_a = 0.098, f = -5.5071; non-specialized f = -5.5665, q_a = 0.918
    spec = solve_symmetric(12.0, K3, branch="informed")
    non = solve_symmetric(12.0, K3, branch="uninformed")
    assert spec.converged and non.converged
    assert spec.q_d == pytest.approx(0.843, abs=6e-4) and spec.q_a == pytest.approx(0.098, abs=6e-4)
    assert spec.free_entropy == pytest.approx(-5.5071, abs=6e-5)
    assert non.free_entropy == pytest.approx(-5.5665, abs=6e-5) and non.q_a == pytest.approx(0.918, abs=6e-4)


@pytest.mark.parametrize("alpha,K", [(2.0, 5), (5.0, 7), (4.5, 9)])
def test_fixed_point_residual_k5_k7_k9(alpha, K):
    config = SymmetricConfig(K=K)
    p = solve_symmetric(alpha, config)
    assert p.converged and p.residual < 1e-8
    new, _, _ = symmetric_map(np.array([p.q_d, p.q_d + p.q_a]), alpha, config)
    assert np.max(np.abs(new - [p.q_d, p.q_d + p.q_a])) < 1e-8
    assert abs(p.q_d) < 1e-8 and 0.4 < p.q_a < 0.9  # non-specialized (docs/committee.md)


def test_k5_specialized_fixed_point_is_the_equilibrium_at_alpha_30():
    # informed branch from Q = 0.99 I: a specialized fixed point (q_d ~ 0.96) with the higher free entropy,
    # above alpha_IT = 23.91 (docs/committee.md); the uninformed branch stays non-specialized there
    spec = solve_symmetric(30.0, K5, branch="informed")
    non = solve_symmetric(30.0, K5)
    assert spec.converged and spec.residual < 1e-8 and spec.q_d > 0.9 and 0 < spec.q_a < 0.05
    new, _, _ = symmetric_map(np.array([spec.q_d, spec.q_d + spec.q_a]), 30.0, K5)
    assert np.max(np.abs(new - [spec.q_d, spec.q_d + spec.q_a])) < 1e-8
    assert non.converged and abs(non.q_d) < 1e-8 and spec.free_entropy > non.free_entropy + 0.5


def test_binary_k5_jumps_to_perfect_learning_between_6_and_7():
    # Rademacher prior, K = 5: the uninformed branch stays non-specialized and the perfect state Q = I
    # (f = -5 log 2) coexists at every alpha; their free entropies cross at alpha_IT = 6.54 (docs/committee.md)
    config = SymmetricConfig(K=5, prior="binary")
    perfect = solve_symmetric(6.0, config, branch="informed")
    assert perfect.perfect and perfect.free_entropy == pytest.approx(-5 * math.log(2.0), abs=1e-12)
    f = {}
    for alpha in (6.0, 7.0):
        p = solve_symmetric(alpha, config)
        assert p.converged and p.residual < 1e-8 and abs(p.q_d) < 1e-8 and not p.perfect
        f[alpha] = p.free_entropy
    assert f[6.0] > -5 * math.log(2.0) > f[7.0]


@pytest.mark.parametrize("K", [3, 5, 7])
def test_eps_g_at_alpha_zero_is_one_half(K):
    # alpha = 0: Q = 0, the Gibbs student is independent of the teacher; for odd K each committee label is +-1
    # with probability 1/2 (sign-flip symmetry of the pre-activations), so eps_g = P(y != y_hat) = 1/2 exactly.
    # gibbs_error is Monte Carlo (4e5 samples: std 8e-4)
    p = solve_symmetric(0.0, SymmetricConfig(K=K))
    assert p.converged and np.allclose(p.Q, 0.0, atol=1e-12)
    assert p.eps_g == pytest.approx(0.5, abs=4e-3)


def _mc_binary_prior(R, n, seed):
    # brute force: w* uniform on {+-1}^K, xi ~ N(0, I), B = R w* + R^{1/2} xi,
    # log Z = log 2^-K sum_w exp(-w^T R w / 2 + w.B); posterior mean f = E[w | B]
    from thermolens.committee.channels import sign_configurations

    rng = np.random.default_rng(seed)
    K = R.shape[0]
    S = sign_configurations(K)
    w_star = rng.choice([-1.0, 1.0], size=(n, K))
    B = w_star @ R + rng.standard_normal((n, K)) @ psd_sqrt(R)
    logits = B @ S.T - 0.5 * np.einsum("ck,kl,cl->c", S, R, S)
    top = logits.max(axis=1, keepdims=True)
    p = np.exp(logits - top)
    log_z = top[:, 0] + np.log(p.sum(axis=1)) - K * math.log(2.0)
    f = (p / p.sum(axis=1, keepdims=True)) @ S
    return log_z, np.einsum("ni,nj->nij", f, f)


@pytest.mark.parametrize("K,r_perp,r_par", [(3, 1.5, 3.0), (5, 1.5, 3.0), (5, 3.0, 1.5)])
def test_binary_prior_against_monte_carlo(K, r_perp, r_par):
    # multiset rule (common factor eta for r_par >= r_perp, mean(xi) otherwise) against brute force
    config = SymmetricConfig(K=K, prior="binary")
    psi, q_perp, q_par = symmetric_prior(r_perp, r_par, config)
    R = r_perp * np.eye(K) + (r_par - r_perp) * np.ones((K, K)) / K
    log_z, ff = _mc_binary_prior(R, 400_000, seed=1)
    assert psi == pytest.approx(log_z.mean(), abs=4 * log_z.std() / math.sqrt(len(log_z)))
    Q = ff.mean(axis=0)
    off = (Q.sum() - np.trace(Q)) / (K * (K - 1))
    se = 4 * ff.std(axis=0).max() / math.sqrt(len(ff))
    assert q_perp == pytest.approx(np.trace(Q) / K - off, abs=2 * se)
    assert q_par == pytest.approx(np.trace(Q) / K + (K - 1) * off, abs=3 * se)


@pytest.mark.parametrize("r_perp,r_par", [(1.5, 3.0), (3.0, 1.5), (0.01, 5.0)])
def test_binary_prior_multisets_match_tensor_rule_k3(r_perp, r_par):
    # independent route: the tensor Gauss-Hermite rule over xi in 3 dimensions with every teacher sign vector
    # (quadrature.prior_integrals, 96 nodes per dimension: converged to ~1e-7 here, docs/committee.md)
    psi, q_perp, q_par = symmetric_prior(r_perp, r_par, SymmetricConfig(K=3, prior="binary"))
    R = r_perp * np.eye(3) + (r_par - r_perp) * np.ones((3, 3)) / 3
    psi2, Q = prior_integrals("binary", R, 96)
    off = (Q.sum() - np.trace(Q)) / 6
    assert psi == pytest.approx(psi2, abs=1e-7)
    assert q_perp == pytest.approx(np.trace(Q) / 3 - off, abs=1e-6)
    assert q_par == pytest.approx(np.trace(Q) / 3 + 2 * off, abs=1e-6)


@pytest.mark.parametrize("K,r_perp,r_par", [(3, 60.0, 80.0), (5, 40.0, 45.0)])
def test_binary_prior_decided_limit(K, r_perp, r_par):
    # large R_hat: the posterior sits on w*, psi_P0 -> E[w*^T R w*] / 2 - K log 2 = Tr(R) / 2 - K log 2 and
    # Q -> I, with corrections ~ exp(-min(r) / 2) (1e-9 at r = 40); symmetric_prior uses the limit above r = 100
    from thermolens.committee.general_k import rademacher_symmetric_prior

    limit = 0.5 * ((K - 1) * r_perp + r_par) - K * math.log(2.0)
    psi, q_perp, q_par = rademacher_symmetric_prior(r_perp, r_par, K, 64, 24)
    assert psi == pytest.approx(limit, abs=3e-9) and 1 - q_perp < 1e-9 and 1 - q_par < 1e-9
    config = SymmetricConfig(K=K, prior="binary")
    assert symmetric_prior(3 * r_perp, 3 * r_par, config) == (pytest.approx(3 * limit + 2 * K * math.log(2.0)),
                                                              1.0, 1.0)


def test_binary_k3_perfect_state_is_a_fixed_point():
    # Rademacher prior: Q = I is an exact fixed point (R_hat -> infinity); from (1 - 1e-8) I one step lands within
    # 1e-12 of I, and the point reports f = -K log 2 (state_evolution.py, docs/committee.md)
    config = SymmetricConfig(K=3, prior="binary")
    new, _, _ = symmetric_map(np.array([1 - 1e-8, 1 - 1e-8]), 1.0, config)
    assert np.all(1.0 - new < 1e-12)
    p = solve_symmetric(1.0, config, branch="informed")
    assert p.converged and p.perfect and p.free_entropy == pytest.approx(-3 * math.log(2.0), abs=1e-12)
    assert p.eps_g == 0.0


def test_binary_k1_equals_exact_state_evolution():
    ours = solve_symmetric(1.0, SymmetricConfig(K=1, prior="binary"))
    ref = solve_fixed_point(1.0, SEConfig(K=1, prior="binary"))
    assert ours.converged and ref.converged and not ref.perfect
    assert ours.Q[0, 0] == pytest.approx(ref.Q[0, 0], abs=1e-8)
    assert ours.free_entropy == pytest.approx(ref.free_entropy, abs=1e-8)


def test_binary_k3_uninformed_fixed_point():
    config = SymmetricConfig(K=3, prior="binary")
    p = solve_symmetric(1.0, config)
    assert p.converged and p.residual < 1e-8 and not p.perfect
    assert abs(p.q_d) < 1e-8 and 0.2 < p.q_a < 0.6
    # the perfect state has the lower free entropy at alpha = 1: no transition yet
    assert p.free_entropy > -3 * math.log(2.0)


def test_config_rejects_unsupported():
    with pytest.raises(ValueError, match="odd K"):
        SymmetricConfig(K=4)
    with pytest.raises(ValueError, match="large_k"):
        SymmetricConfig(K=13)
    with pytest.raises(ValueError, match="even"):
        SymmetricConfig(K=3, n_eta=13)


runner = CliRunner()


def test_cli_se_k3_json():
    res = runner.invoke(app, ["committee", "se", "--K", "3", "--alpha", "0.5,2", "--json", "--quiet"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["alpha"] == [0.5, 2.0] and len(out["q"]) == 2 and len(out["q"][0]) == 3
    assert out["n_not_converged"] == 0
    assert out["free_entropy"][1] < out["free_entropy"][0] < 0


def test_cli_se_k5_and_binary_k3_json():
    res = runner.invoke(app, ["committee", "se", "--K", "5", "--alpha", "0.5,2", "--json", "--quiet"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert len(out["q"][0]) == 5 and out["n_not_converged"] == 0
    assert out["free_entropy"][1] < out["free_entropy"][0] < 0
    res = runner.invoke(app, ["committee", "se", "--K", "3", "--prior", "binary", "--alpha", "1", "--json", "--quiet"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["equilibrium"] == ["uninformed"] and out["branches"]["informed"]["q_d"] == [1.0]


@pytest.mark.parametrize("args", [["--K", "13"], ["--K", "13", "--prior", "binary"]])
def test_cli_se_uncovered_exit_2(args):
    res = runner.invoke(app, ["committee", "se", *args, "--alpha", "1", "--json"])
    assert res.exit_code == 2


def test_cli_se_even_k_exit_2():
    res = runner.invoke(app, ["committee", "se", "--K", "4", "--alpha", "1", "--json"])
    assert res.exit_code == 2


def test_cli_thresholds_k3_below_transition():
    # no specialization below alpha = 2 for K = 3 (docs/committee.md: first order, alpha_IT = 11.34)
    res = runner.invoke(app, ["committee", "thresholds", "--K", "3", "--alpha-max", "2", "--step", "1", "--json",
                              "--quiet"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["K"] == 3 and out["alpha_spec"] is None and out["alpha_it"] is None and out["order"] is None


def test_cli_thresholds_k5_below_transition():
    res = runner.invoke(app, ["committee", "thresholds", "--K", "5", "--alpha-max", "2", "--step", "1", "--json",
                              "--quiet"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["K"] == 5 and out["alpha_spec"] is None and out["alpha_it"] is None and out["order"] is None
