"""Large-K committee-symmetric limit."""

import math

import numpy as np
import pytest

from thermolens.committee import large_k_state_evolution, solve_large_k
from thermolens.committee.generalization import _mc_error
from thermolens.committee.large_k import q_eff


def test_effective_overlap_limits():
    assert q_eff(0.0) == pytest.approx(2 / math.pi, abs=1e-15)
    assert q_eff(1.0) == pytest.approx(1.0, abs=1e-15)


def test_effective_overlap_matches_finite_k_committee():
    # The CLT reduction: a committee of K = 101 units with Q = q_d I + (q_a/K) 1 1^T (q_a = 1 - q_d)
    # has Gibbs error close to arccos(q_eff)/pi; the difference is O(1/K) plus Monte Carlo noise.
    K, q_d = 101, 0.6
    Q = q_d * np.eye(K) + (1 - q_d) / K * np.ones((K, K))
    mc = _mc_error(np.eye(K), Q, n_mc=40_000, seed=0)
    assert mc == pytest.approx(math.acos(q_eff(q_d)) / math.pi, abs=0.015)


def test_non_specialized_plateau():
    # q_d = 0 is always a fixed point: Gibbs error arccos(2/pi)/pi = 0.2803 for every alpha/K
    for a in (1.0, 5.0, 10.0):
        p = solve_large_k(a)
        assert p.converged and p.q_d < 1e-9
        assert p.eps_g == pytest.approx(math.acos(2 / math.pi) / math.pi, abs=1e-12)


def test_first_order_specialization_brackets():
    # Our large-K values: spinodal 7.169, IT 7.680 (alpha/K). Aubin et al. 2018 (Sec. 3.3) describe
    # a first-order specialization at alpha/K = O(1) that AMP misses; their quoted number could not
    # be checked here. Below the spinodal the informed start falls back to q_d = 0.
    curve = large_k_state_evolution([7.0, 7.5, 8.0])
    u, i = curve.uninformed, curve.informed
    assert i[0].q_d < 1e-9
    assert i[1].q_d > 0.5 and i[1].free_entropy < u[1].free_entropy
    assert i[2].q_d > 0.5 and i[2].free_entropy > u[2].free_entropy
    assert curve.equilibrium_eps_g[2] < curve.equilibrium_eps_g[1]


def test_rejects_negative_alpha():
    with pytest.raises(ValueError, match="alpha/K"):
        solve_large_k(-1.0)
