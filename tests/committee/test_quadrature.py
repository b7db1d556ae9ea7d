"""Quadrature of the state-evolution integrals: accuracy 1e-8 against independent references."""

import math

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.stats import norm

from thermolens.committee.quadrature import perceptron_output, gauss_hermite, output_integrals, prior_integrals
from thermolens.committee.channels import output_channel


@pytest.mark.parametrize("q", [0.05, 0.4, 0.8, 0.97, 0.999])
def test_perceptron_integrals_match_adaptive_quad(q):
    # Psi = 2 E[Phi(t xi) log Phi(t xi)], m_hat = 2 E[phi(t xi)^2 / Phi(t xi)] / (1 - q), t = sqrt(q/(1-q))
    t = math.sqrt(q / (1 - q))
    psi_ref = quad(lambda x: 2 * norm.pdf(x) * norm.cdf(t * x) * norm.logcdf(t * x), -40, 40,
                   points=[0.0], epsabs=1e-14, limit=500)[0]
    m_ref = quad(lambda x: 2 * norm.pdf(x) * math.exp(2 * norm.logpdf(t * x) - norm.logcdf(t * x)) / (1 - q),
                 -40, 40, points=[0.0], epsabs=1e-13, limit=500)[0]
    psi, mhat = perceptron_output(q)
    assert psi == pytest.approx(psi_ref, abs=1e-10)
    assert mhat == pytest.approx(m_ref, rel=1e-10)


def test_perceptron_at_zero_overlap():
    # Z = 1/2 for both labels: Psi = -log 2, m_hat = 2 (phi(0)^2 / (1/2)) = 2/pi
    psi, mhat = perceptron_output(0.0)
    assert psi == pytest.approx(-math.log(2), abs=1e-15)
    assert mhat == pytest.approx(2 / math.pi, abs=1e-15)


QS = [
    np.array([[0.3, 0.1], [0.1, 0.3]]),
    np.array([[0.45, 0.45], [0.45, 0.45]]),  # non-specialized, rank one
    np.array([[0.7, 0.1], [0.1, 0.3]]),
    np.array([[0.49, 0.48], [0.48, 0.49]]),
    np.array([[0.9, 0.02], [0.02, 0.9]]),
    np.array([[0.97, 0.0], [0.0, 0.97]]),
]


@pytest.mark.parametrize("Q", QS)
def test_k2_output_integrals_converged_to_1e8(Q):
    psi, mhat = output_integrals(Q)
    psi_fine, mhat_fine = output_integrals(Q, step=0.04)
    assert psi == pytest.approx(psi_fine, abs=1e-9)
    np.testing.assert_allclose(mhat, mhat_fine, rtol=1e-8, atol=1e-8)


def test_k2_output_integrals_match_plain_gauss_hermite():
    # Independent rule: 300 x 300 tensor Gauss-Hermite converges where Q is far from I.
    Q = QS[0]
    xi, w = gauss_hermite(300, 2)
    vals, vecs = np.linalg.eigh(Q)
    omega = xi @ (vecs * np.sqrt(vals)) @ vecs.T
    _, Z, dZ, _ = output_channel(omega, np.eye(2) - Q)
    Zs = np.where(Z > 0, Z, 1.0)  # labels of probability 0 contribute nothing
    psi_ref = float(np.sum(w * (Z * np.log(Zs)).sum(0)))
    m_ref = np.einsum("n,lni,lnj->ij", w, dZ, dZ / Zs[..., None])
    psi, mhat = output_integrals(Q)
    assert psi == pytest.approx(psi_ref, abs=1e-11)
    np.testing.assert_allclose(mhat, m_ref, atol=1e-10)


@pytest.mark.parametrize("Q", [QS[0], QS[2], QS[4]])
def test_fisher_identity_m_hat_is_twice_gradient_of_psi(Q):
    # R_hat = alpha E[g g^T] = 2 alpha grad_Q Psi_out (Aubin et al. 2018, Eq. of Theorem 1)
    _, mhat = output_integrals(Q)
    h = 1e-5
    for (i, j) in [(0, 0), (1, 1), (0, 1)]:
        E = np.zeros((2, 2))
        E[i, j] = E[j, i] = h
        d = (output_integrals(Q + E)[0] - output_integrals(Q - E)[0]) / (2 * h)
        expected = mhat[i, j] / 2 if i == j else mhat[i, j]
        assert d == pytest.approx(expected, abs=1e-6)


def test_prior_integrals():
    # Gaussian: Q = (I + R)^{-1} R, psi = (Tr R - log det(I + R)) / 2 (closed form)
    R = np.array([[2.0, 0.5], [0.5, 1.5]])
    psi, Q = prior_integrals("gaussian", R)
    np.testing.assert_allclose(Q, np.linalg.solve(np.eye(2) + R, R), atol=1e-14)
    assert psi == pytest.approx(0.5 * (np.trace(R) - np.log(np.linalg.det(np.eye(2) + R))), abs=1e-14)
    # Rademacher K = 1: q = E tanh(r + sqrt(r) xi) (Nishimori form), psi = E log cosh(...) - r/2
    r = 1.7
    f = lambda x: norm.pdf(x) * math.tanh(r + math.sqrt(r) * x)  # noqa: E731
    g = lambda x: norm.pdf(x) * math.log(math.cosh(r + math.sqrt(r) * x))  # noqa: E731
    psi, Q = prior_integrals("binary", np.array([[r]]))
    assert Q[0, 0] == pytest.approx(quad(f, -40, 40, epsabs=1e-14)[0], abs=1e-10)
    assert psi == pytest.approx(quad(g, -40, 40, epsabs=1e-14)[0] - r / 2, abs=1e-10)
    # K = 2 with diagonal R factorizes into two K = 1 problems
    _, Q2 = prior_integrals("binary", np.diag([r, r]))
    np.testing.assert_allclose(np.diag(Q2), Q[0, 0], atol=1e-9)
    assert abs(Q2[0, 1]) < 1e-12


@pytest.mark.parametrize("R", [np.array([[8.0, -3.0], [-3.0, 6.0]]), np.array([[15.0, -7.0], [-7.0, 15.0]]),
                               np.array([[3.0, 1.5], [1.5, 3.0]])])
def test_binary_prior_k2_converged_to_1e8(R):
    # the posterior mean switches sign on lines of width ~ R^{-1/2} in the noise: check the default
    # rule against a 400 x 400 one
    psi, Q = prior_integrals("binary", R)
    psi_fine, Q_fine = prior_integrals("binary", R, n_nodes=400)
    assert psi == pytest.approx(psi_fine, abs=1e-9)
    np.testing.assert_allclose(Q, Q_fine, atol=1e-8)

