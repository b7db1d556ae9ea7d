"""State evolution and thresholds against closed forms and published numbers."""

import math

import numpy as np
import pytest

from thermolens.committee import SEConfig, find_thresholds, solve_fixed_point, state_evolution
from thermolens.committee.quadrature import output_integrals
from thermolens.committee.state_evolution import se_map
from thermolens.committee.thresholds import spec_growth


def test_binary_perceptron_thresholds():
    # Binary perceptron (K = 1, Rademacher prior): first-order transition to perfect generalization.
    # alpha_IT = 1.245 (Gyorgyi 1990, Phys. Rev. A 41, 7097); Barbier et al. 2019 (PNAS 116, 5451,
    # arXiv:1708.03395) quote 1.249 -- we reproduce 1.2447, i.e. Gyorgyi's value (see docs/committee.md).
    # alpha_alg = 1.493 (spinodal of the uninformed branch; Barbier et al. 2019).
    t = find_thresholds(SEConfig(K=1, prior="binary"), alpha_max=2.0, alpha_tol=1e-5)
    assert t.order == "first"
    assert t.alpha_spec is None
    assert t.alpha_it == pytest.approx(1.245, abs=1.5e-3)
    assert t.alpha_alg == pytest.approx(1.493, abs=1.5e-3)


def test_gaussian_perceptron_has_no_transition_and_decreasing_error():
    # Gaussian prior, K = 1: the error decreases continuously (Barbier et al. 2019, Fig. 2) --
    # a single fixed point (both initialisations agree, so no coexistence and no jump) and eps_g
    # strictly decreasing.
    curve = state_evolution(np.linspace(0.1, 3.0, 15), SEConfig(K=1, prior="gaussian"))
    eps_u = np.array([p.eps_g for p in curve.uninformed])
    eps_i = np.array([p.eps_g for p in curve.informed])
    np.testing.assert_allclose(eps_u, eps_i, atol=1e-7)
    assert np.all(np.diff(eps_u) < 0)
    t = find_thresholds(SEConfig(K=1, prior="gaussian"), alpha_max=2.0, step=0.25)
    assert (t.alpha_spec, t.alpha_it, t.alpha_alg, t.order) == (None, None, None, None)


@pytest.mark.parametrize("K, prior, alpha", [(1, "gaussian", 1.3), (1, "binary", 1.0), (2, "gaussian", 0.8),
                                             (2, "gaussian", 3.0), (2, "binary", 1.2)])
def test_fixed_points_satisfy_their_equations_to_1e8(K, prior, alpha):
    p = solve_fixed_point(alpha, SEConfig(K=K, prior=prior))
    assert p.converged and p.stable
    Q_new, _, _ = se_map(p.Q, alpha, prior)
    assert np.max(np.abs(Q_new - p.Q)) < 1e-8
    assert p.residual < 1e-8


def test_k2_error_is_one_quarter_at_alpha_zero():
    # Issue spec / Aubin et al. 2018: eps_g = 1/4 at alpha = 0 for K = 2 (labels -1, 0, +1 with
    # probabilities 1/4, 1/2, 1/4 and an uninformed Gibbs student).
    for prior in ("gaussian", "binary"):
        p = solve_fixed_point(0.0, SEConfig(K=2, prior=prior))
        assert p.converged
        np.testing.assert_allclose(p.Q, 0.0, atol=1e-12)
        assert p.eps_g == pytest.approx(0.25, abs=1e-12)
        assert p.free_entropy == pytest.approx(0.0, abs=1e-12)


def test_free_entropy_derivative_is_psi_out():
    # Envelope theorem: at a fixed point d f_RS / d alpha = Psi_out(Q*) (only explicit dependence).
    cfg = SEConfig(K=2, prior="gaussian")
    a, h = 1.2, 1e-3
    fp, fm = solve_fixed_point(a + h, cfg).free_entropy, solve_fixed_point(a - h, cfg).free_entropy
    assert (fp - fm) / (2 * h) == pytest.approx(output_integrals(solve_fixed_point(a, cfg).Q)[0], abs=1e-6)


def test_binary_perfect_fixed_point_free_entropy():
    # Q = I: no label entropy left and K log 2 of prior entropy per row -> f = -K log 2.
    p = solve_fixed_point(1.0, SEConfig(K=2, prior="binary"), branch="informed")
    assert p.perfect and p.eps_g == 0.0
    assert p.free_entropy == pytest.approx(-2 * math.log(2), abs=1e-15)


def test_k2_gaussian_specialization_is_continuous():
    # Aubin et al. 2018 (Fig. 2, left): for K = 2 and Gaussian weights the hidden units specialize
    # continuously and AMP follows. Here: the non-specialized point loses stability (lambda crosses
    # 1) between alpha = 2.0 and 2.1 (our value 2.052; the paper's figure places it near 2), and
    # q_d grows from 0 without a jump; both initialisations agree.
    cfg = SEConfig(K=2, prior="gaussian")
    assert spec_growth(2.0, cfg) < 1.0 < spec_growth(2.1, cfg)
    below, above = solve_fixed_point(2.0, cfg), solve_fixed_point(2.2, cfg)
    assert below.q_d < 1e-8 and 0.0 < above.q_d < 0.1
    informed = solve_fixed_point(2.2, cfg, branch="informed")
    assert informed.q_d == pytest.approx(above.q_d, abs=1e-7)


def test_non_converged_fixed_point_is_reported_not_returned():
    p = solve_fixed_point(1.0, SEConfig(K=2, prior="gaussian", max_iter=2))
    assert not p.converged
    assert np.isnan(p.eps_g) and np.isnan(p.free_entropy) and np.all(np.isnan(p.Q))
    assert p.residual > 1e-9 and p.n_iter == 2


@pytest.mark.parametrize("kwargs, match", [
    (dict(K=0), "K must be an integer >= 1"),
    (dict(K=3), "large-K"),
    (dict(prior="laplace"), "unknown prior"),
    (dict(activation="relu"), "unknown activation"),
    (dict(tol=1e-3), "tol"),
    (dict(damping=1.0), "damping"),
])
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SEConfig(**kwargs)


def test_negative_alpha_rejected():
    with pytest.raises(ValueError, match="alpha"):
        solve_fixed_point(-0.1)
    with pytest.raises(ValueError, match="alpha"):
        state_evolution([0.5, -1.0])


@pytest.mark.slow
def test_k2_binary_first_order_thresholds():
    # Aubin et al. 2018 (Fig. 2, right): K = 2 with binary weights has a first-order transition to
    # perfect learning with a computational gap (AMP threshold above the IT one). Our values:
    # alpha_it = 1.5461, alpha_spec = 1.5893, alpha_alg = 1.9771; not checked against the paper's text.
    t = find_thresholds(SEConfig(K=2, prior="binary"), alpha_max=2.2, alpha_tol=1e-3)
    assert t.order == "first"
    assert 1.5 < t.alpha_it < 1.6
    assert t.alpha_it < t.alpha_alg < 2.1


def test_quadrature_resolution_is_a_config_setting_and_does_not_move_the_fixed_point():
    # a specialized K = 2 Gaussian point (alpha = 3 > alpha_spec = 2.052, docs/committee.md)
    coarse = solve_fixed_point(3.0, SEConfig(K=2), branch="informed")
    fine = solve_fixed_point(3.0, SEConfig(K=2, quad_step=0.05), branch="informed")
    assert coarse.converged and fine.converged and coarse.q_d > 0.3
    # the double-exponential rule converges like exp(-c/step): step 0.1 is already exact to ~1e-7
    assert 0 < abs(fine.q_d - coarse.q_d) < 1e-5
    binary = solve_fixed_point(1.2, SEConfig(K=2, prior="binary", prior_nodes=300))
    assert binary.converged
    with pytest.raises(ValueError, match="quad_step"):
        SEConfig(quad_step=0.0)
    with pytest.raises(ValueError, match="prior_nodes"):
        SEConfig(prior_nodes=5)
