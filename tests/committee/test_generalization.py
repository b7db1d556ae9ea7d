"""Generalization error closed forms against Monte Carlo and the classical perceptron formulas."""

import math

import numpy as np
import pytest

from thermolens.committee.generalization import _mc_error, gibbs_error, plugin_error


def test_perceptron_closed_forms():
    # Gibbs student: arccos(q)/pi; posterior-mean student: arccos(sqrt q)/pi (Opper & Haussler 1991)
    for q in (0.0, 0.3, 0.9):
        assert gibbs_error(np.array([[q]])) == pytest.approx(math.acos(q) / math.pi, abs=1e-15)
        if q > 0:
            assert plugin_error(np.array([[q]])) == pytest.approx(math.acos(math.sqrt(q)) / math.pi, abs=1e-15)


def test_k2_limits():
    assert gibbs_error(np.zeros((2, 2))) == pytest.approx(0.25, abs=1e-15)  # labels 1/4, 1/2, 1/4
    assert gibbs_error(np.eye(2)) == pytest.approx(0.0, abs=1e-15)
    assert plugin_error(np.eye(2)) == pytest.approx(0.0, abs=1e-15)


@pytest.mark.parametrize("Q", [np.array([[0.5, 0.1], [0.1, 0.4]]), np.array([[0.35, 0.35], [0.35, 0.35]])])
def test_k2_closed_forms_match_monte_carlo(Q):
    n = 400_000
    mc_gibbs = _mc_error(np.eye(2), Q, n_mc=n, seed=5)
    mc_plugin = _mc_error(Q, Q, n_mc=n, seed=6)
    # (y - y_hat)^2 / 4 takes values in {0, 1/4, 1}: standard error below 1/sqrt(n)
    assert gibbs_error(Q) == pytest.approx(mc_gibbs, abs=4 / math.sqrt(n))
    assert plugin_error(Q) == pytest.approx(mc_plugin, abs=4 / math.sqrt(n))


def test_odd_k_uses_monte_carlo():
    # K = 3 at Q = 0: teacher and student labels are independent fair coins -> 1/2
    assert gibbs_error(np.zeros((3, 3)), n_mc=100_000) == pytest.approx(0.5, abs=0.01)


def test_rejects_bad_overlaps():
    with pytest.raises(ValueError, match="square"):
        gibbs_error(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="non-finite"):
        gibbs_error(np.full((2, 2), np.nan))
