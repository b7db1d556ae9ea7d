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
from thermolens.committee.general_k import label_probability, symmetric_map, symmetric_output
from thermolens.committee.quadrature import perceptron_output

K3 = SymmetricConfig(K=3)


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


@pytest.mark.parametrize("q_d,q_a", [
    (0.3, 0.4),
    pytest.param(0.0, 0.9, marks=pytest.mark.slow),
    pytest.param(0.7, 0.2, marks=pytest.mark.slow),
    pytest.param(0.9, 0.05, marks=pytest.mark.slow),
])
def test_quadrature_accuracy(q_d, q_a):
    # default rules against rules with twice the nodes (measured: Psi to ~1e-9, m to ~3e-6 at q_d = 0.9)
    fine = SymmetricConfig(K=3, n_outer=40, n_u=64, step=0.14)
    a = np.array(symmetric_output(q_d, q_a, K3))
    b = np.array(symmetric_output(q_d, q_a, fine))
    assert a[0] == pytest.approx(b[0], abs=1e-8)
    assert np.max(np.abs(a[1:] - b[1:])) < 1e-5


@pytest.mark.parametrize("q_d,q_a", [(0.3, 0.4), (0.6, 0.2)])
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


def test_non_specialized_point_is_a_fixed_direction():
    # q_d = 0: omega lies on the 1 direction, grad Z is parallel to 1 by symmetry, so m_perp = 0 and q_d stays 0
    assert abs(symmetric_output(0.0, 0.5, K3)[1]) < 1e-12


def test_fixed_point_residual_k3():
    p = solve_symmetric(2.0, K3)
    assert p.converged and p.residual < 1e-8
    new, _, _ = symmetric_map(np.array([p.q_d, p.q_d + p.q_a]), 2.0, K3)
    assert np.max(np.abs(new - [p.q_d, p.q_d + p.q_a])) < 1e-8
    assert abs(p.q_d) < 1e-8 and 0.4 < p.q_a < 0.8  # non-specialized at alpha = 2 (see docs/committee.md)


def test_eps_g_at_alpha_zero_is_one_half():
    # alpha = 0: Q = 0, the Gibbs student is independent of the teacher and both labels are uniform +-1 (odd K),
    # so eps_g = P(y != y_hat) = 1/2 exactly; gibbs_error is Monte Carlo (4e5 samples: std 8e-4)
    p = solve_symmetric(0.0, K3)
    assert p.converged and np.allclose(p.Q, 0.0, atol=1e-12)
    assert p.eps_g == pytest.approx(0.5, abs=4e-3)


def test_config_rejects_unsupported():
    with pytest.raises(ValueError, match="odd K"):
        SymmetricConfig(K=4)
    with pytest.raises(ValueError, match="large_k"):
        SymmetricConfig(K=5)
    with pytest.raises(ValueError, match="gaussian"):
        SymmetricConfig(K=3, prior="binary")


runner = CliRunner()


def test_cli_se_k3_json():
    res = runner.invoke(app, ["committee", "se", "--K", "3", "--alpha", "0.5,2", "--json", "--quiet"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["alpha"] == [0.5, 2.0] and len(out["q"]) == 2 and len(out["q"][0]) == 3
    assert out["n_not_converged"] == 0
    assert out["free_entropy"][1] < out["free_entropy"][0] < 0


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
