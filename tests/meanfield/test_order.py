"""Order parameters of particle clouds on the sphere (thermolens.meanfield.order)."""

from __future__ import annotations

import numpy as np
import pytest

from thermolens.meanfield.order import (
    cosine_histogram,
    order_parameters,
    random_directions,
    unit_vectors,
    without_global_mean,
    without_position_mean,
)


def _uniform(S, n, d, seed=0):
    g = np.random.default_rng(seed).standard_normal((S, n, d))
    return g / np.linalg.norm(g, axis=-1, keepdims=True)


def test_aligned_and_antipodal_clouds():
    e = np.zeros((1, 10, 5))
    e[..., 0] = 3.0  # any norm: only directions count
    p = order_parameters(e)
    np.testing.assert_allclose([p.r1[0], p.r2[0], p.mean_cosine[0]], 1.0, atol=1e-12)
    assert p.n_clusters[0] == 1
    e[0, ::2, 0] = -1.0  # half at +e, half at -e: no polar order, full nematic order
    p = order_parameters(e)
    assert p.r1[0] == pytest.approx(0.0, abs=1e-12)
    assert p.r2[0] == pytest.approx(1.0, abs=1e-12)
    assert p.mean_cosine[0] == pytest.approx(-1 / 9)  # (n r1^2 - 1)/(n - 1) with r1 = 0, n = 10
    assert p.n_clusters[0] == 2


def test_uniform_directions_give_the_finite_n_values():
    # Independent uniform u_i: E|sum u_i|^2 = n, so E r1^2 = 1/n and E mean_cosine = 0. For the degree-2 moment
    # E ||M - I/d||_F^2 = (1 - 1/d)/n (M = (1/n) sum u u^T), so with the d/(d-1) normalisation E r2^2 = 1/n too.
    n = 50
    p = order_parameters(_uniform(4000, n, 6), clusters=False)
    assert np.mean(p.r1**2) == pytest.approx(1 / n, rel=0.05)
    assert np.mean(p.r2**2) == pytest.approx(1 / n, rel=0.05)
    assert abs(np.mean(p.mean_cosine)) < 3 * np.std(p.mean_cosine) / np.sqrt(4000)


def test_circle_moments_are_the_fourier_moments():
    # On S^1 r1 = |c_1| and r2 = |c_2| with c_k = mean exp(i k phi) (module docstring).
    phi = np.random.default_rng(1).vonmises(0.3, 2.0, size=(3, 400))
    x = np.stack([np.cos(phi), np.sin(phi)], axis=-1)
    p = order_parameters(x, clusters=False)
    np.testing.assert_allclose(p.r1, np.abs(np.exp(1j * phi).mean(axis=1)), rtol=1e-12)
    np.testing.assert_allclose(p.r2, np.abs(np.exp(2j * phi).mean(axis=1)), rtol=1e-6)


def test_many_particles_take_the_second_moment_path_and_subsample_clusters():
    x = _uniform(1, 3000, 3)
    x[0, :1500] = [1.0, 0.0, 0.0]
    x[0, 1500:] = [0.0, 1.0, 0.0]  # two point clusters at right angles
    p = order_parameters(x)
    assert p.n_clusters[0] == 2
    assert p.r1[0] == pytest.approx(np.sqrt(0.5))


def test_three_separated_groups_count_as_three_clusters():
    rng = np.random.default_rng(2)
    centres = np.eye(6)[:3]
    x = np.concatenate([c + 0.05 * rng.standard_normal((20, 6)) for c in centres])[None]
    assert order_parameters(x, cluster_cosine=0.5).n_clusters[0] == 3
    assert order_parameters(x, cluster_cosine=-0.9).n_clusters[0] == 1  # a low threshold merges everything


def test_cosine_histogram_counts_every_pair():
    x = _uniform(3, 20, 4)
    edges = np.linspace(-1, 1, 11)
    counts = cosine_histogram(x, edges)
    assert counts.sum() == 3 * 20 * 19 // 2
    sampled = cosine_histogram(x, edges, max_pairs=50)
    assert sampled.sum() == 3 * 50


def test_null_keeps_norms_and_randomises_directions():
    x = _uniform(2, 30, 8) * np.arange(1, 31)[None, :, None]
    null = random_directions(x, seed=5)
    np.testing.assert_allclose(np.linalg.norm(null, axis=-1), np.linalg.norm(x, axis=-1))
    assert not np.allclose(unit_vectors(null), unit_vectors(x))


def test_components_remove_shared_directions():
    # A common direction (anisotropy) or a per-position offset makes tokens look clustered; removing it
    # restores the isotropic value.
    rng = np.random.default_rng(3)
    noise = rng.standard_normal((200, 16, 12))
    shared = noise + 5.0 * np.eye(12)[0]
    assert order_parameters(shared, clusters=False).mean_cosine.mean() > 0.5
    assert abs(order_parameters(without_global_mean(shared), clusters=False).mean_cosine.mean()) < 0.02
    offsets = 5.0 * rng.standard_normal((1, 16, 12))
    positioned = noise + offsets
    assert abs(order_parameters(without_position_mean(positioned), clusters=False).mean_cosine.mean()) < 0.02


def test_bad_input():
    with pytest.raises(ValueError, match="shape"):
        order_parameters(np.ones((3, 4)))
    with pytest.raises(ValueError, match="direction is undefined"):
        order_parameters(np.zeros((1, 3, 2)))
    with pytest.raises(ValueError, match="between -1 and 1"):
        order_parameters(_uniform(1, 4, 3), cluster_cosine=1.0)
    with pytest.raises(ValueError, match="at least 2 sequences"):
        without_position_mean(_uniform(1, 4, 3))
