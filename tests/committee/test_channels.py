"""Channel functions: bivariate normal CDF, sign-committee output channel, prior denoisers."""

import itertools
import math

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.stats import norm

from thermolens.committee.channels import bvn_cdf, g_out, output_channel, prior_denoise, sign_configurations


def _bvn_reference(h, k, r):
    # Phi2(h, k; r) = int_{-inf}^h phi(x) Phi((k - r x)/sqrt(1 - r^2)) dx (definition, adaptive quad)
    f = lambda x: norm.pdf(x) * norm.cdf((k - r * x) / math.sqrt(1 - r * r))  # noqa: E731
    return quad(f, -np.inf, h, epsabs=1e-14, epsrel=1e-13)[0]


def test_bvn_cdf_matches_integral_definition():
    rng = np.random.default_rng(0)
    cases = [(0.0, 0.7, -0.3), (1.2, 0.0, 0.5), (0.0, 0.0, 0.4)] + [
        (*rng.normal(size=2) * 2, rng.uniform(-0.95, 0.95)) for _ in range(60)
    ]
    for h, k, r in cases:
        assert bvn_cdf(h, k, r) == pytest.approx(_bvn_reference(h, k, r), abs=1e-13)
    # closed form at the origin: 1/4 + arcsin(rho)/(2 pi) (Sheppard)
    assert bvn_cdf(0.0, 0.0, 0.3) == pytest.approx(0.25 + math.asin(0.3) / (2 * math.pi), abs=1e-15)


@pytest.mark.parametrize("K", [1, 2])
def test_output_channel_probabilities_and_derivatives(K):
    rng = np.random.default_rng(1)
    V = np.array([[0.6]]) if K == 1 else np.array([[0.6, -0.25], [-0.25, 0.5]])
    omega = rng.normal(size=(7, K))
    ys, Z, dZ, d2Z = output_channel(omega, V)
    np.testing.assert_allclose(Z.sum(axis=0), 1.0, atol=1e-14)
    h = 1e-6
    for j in range(K):
        e = np.zeros(K)
        e[j] = h
        _, Zp, dZp, _ = output_channel(omega + e, V)
        _, Zm, dZm, _ = output_channel(omega - e, V)
        np.testing.assert_allclose((Zp - Zm) / (2 * h), dZ[..., j], atol=1e-8)
        np.testing.assert_allclose((dZp - dZm) / (2 * h), d2Z[..., j], atol=1e-7)


def test_k2_label_probabilities_match_sampling():
    rng = np.random.default_rng(2)
    V = np.array([[0.6, -0.3], [-0.3, 0.5]])
    omega = np.array([[0.3, -0.2]])
    ys, Z, _, _ = output_channel(omega, V)
    z = omega[0] + rng.multivariate_normal([0, 0], V, size=400_000)
    y = np.sign(np.sign(z).sum(axis=1))
    for label, p in zip(ys, Z[:, 0]):
        freq = np.mean(y == label)
        assert abs(freq - p) < 4 * math.sqrt(p * (1 - p) / len(y))


def test_g_out_rejects_impossible_labels():
    with pytest.raises(ValueError, match="labels must lie"):
        g_out(np.array([0.0]), np.zeros((1, 1)), np.eye(1))  # K = 1 has no tie label


def test_prior_denoisers():
    rng = np.random.default_rng(3)
    A = np.array([[1.3, 0.4], [0.4, 0.8]])
    B = rng.normal(size=(5, 2))
    mean, cov, _ = prior_denoise("gaussian", A, B)
    np.testing.assert_allclose(mean, B @ np.linalg.inv(np.eye(2) + A), atol=1e-14)
    np.testing.assert_allclose(cov[0], np.linalg.inv(np.eye(2) + A), atol=1e-14)
    # Rademacher: brute-force posterior over the four sign vectors
    mean, cov, log_z = prior_denoise("binary", A, B)
    for b, m, c, lz in zip(B, mean, cov, log_z):
        S = np.array(list(itertools.product((-1.0, 1.0), repeat=2)))
        w = np.exp(S @ b - 0.5 * np.einsum("ck,kl,cl->c", S, A, S))
        np.testing.assert_allclose(m, (w[:, None] * S).sum(0) / w.sum(), atol=1e-14)
        assert lz == pytest.approx(math.log(w.sum() / 4), abs=1e-13)
        second = (w[:, None, None] * S[:, :, None] * S[:, None, :]).sum(0) / w.sum()
        np.testing.assert_allclose(c, second - np.outer(m, m), atol=1e-13)
    assert sign_configurations(3).shape == (8, 3)
    with pytest.raises(ValueError, match="unknown prior"):
        prior_denoise("laplace", A, B)
