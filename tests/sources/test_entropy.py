"""Entropy-rate estimators against closed forms: i.i.d. uniform, a two-state chain, periodic data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from thermolens.stats.entropy import (
    entropy_bits,
    lz_entropy_rate,
    markov_entropy_rate,
    match_lengths,
    plugin_entropy_rate,
    stationary_distribution,
)


def h2(p: float) -> float:
    """Binary entropy in bits, written out independently of the library."""
    return -p * math.log2(p) - (1 - p) * math.log2(1 - p)


def two_state_chain(a: float, b: float, n: int, seed: int) -> np.ndarray:
    """0 -> 1 with probability a, 1 -> 0 with probability b; started from the stationary law."""
    rng = np.random.default_rng(seed)
    u = rng.random(n)
    x = np.empty(n, dtype=np.int64)
    x[0] = int(u[0] < a / (a + b))
    for t in range(1, n):
        flip = a if x[t - 1] == 0 else b
        x[t] = x[t - 1] ^ int(u[t] < flip)
    return x


# --------------------------------------------------------------------------------------------------
# exact


def test_two_state_chain_closed_form():
    # Cover & Thomas, Elements of Information Theory (2nd ed.), eq. 4.28-4.29: for
    # P = [[1-a, a], [b, 1-b]], pi = (b, a)/(a+b) and H = pi_0 h2(a) + pi_1 h2(b).
    a, b = 0.1, 0.3
    P = np.array([[1 - a, a], [b, 1 - b]])
    np.testing.assert_allclose(stationary_distribution(P), [0.75, 0.25], atol=1e-14)
    expected = 0.75 * h2(0.1) + 0.25 * h2(0.3)  # = 0.57206942...
    assert markov_entropy_rate(P) == pytest.approx(expected, abs=1e-14)
    assert markov_entropy_rate(P, [0.75, 0.25]) == pytest.approx(expected, abs=1e-14)


def test_uniform_iid_rate_is_log2_v():
    # i.i.d. uniform over V symbols: every row uniform, H = log2 V exactly.
    V = 8
    P = np.full((V, V), 1 / V)
    assert markov_entropy_rate(P) == pytest.approx(3.0, abs=1e-14)
    assert entropy_bits(np.full(V, 1 / V)) == pytest.approx(3.0, abs=1e-14)


def test_markov_entropy_rate_rejects_bad_input():
    with pytest.raises(ValueError, match="row-stochastic"):
        stationary_distribution([[0.5, 0.6], [0.5, 0.5]])
    with pytest.raises(ValueError, match="pi has shape"):
        markov_entropy_rate(np.full((2, 2), 0.5), [1.0])


# --------------------------------------------------------------------------------------------------
# plug-in with Miller-Madow


def test_plugin_uniform_iid_matches_log2_v_at_every_order():
    # H = log2 8 = 3 bits. For uniform data the plug-in error is -chi2_{m-1}/(2 N ln 2) (Miller 1955):
    # Miller-Madow removes its mean; the sd left is sqrt(2 (m_{k+1} - m_k)) / (2 N ln 2) ~ 1e-4 bits
    # at order 2 (m = 512 joint cells, 64 contexts) with N = 2e5, so 1e-3 is ~10 sd.
    x = np.random.default_rng(0).integers(0, 8, 200_000)
    for order in (0, 1, 2):
        assert plugin_entropy_rate(x, order) == pytest.approx(3.0, abs=1e-3)


def test_miller_madow_removes_the_plugin_bias():
    # V = 16, order 2, N = 2e4: 4096 joint cells, 256 contexts, so the uncorrected plug-in sits
    # about (4096 - 256) / (2 N ln 2) = 0.1385 bits below log2 16 = 4 (Miller 1955; a few cells
    # stay empty at ~5 counts per cell, which the formula with the observed m accounts for).
    x = np.random.default_rng(1).integers(0, 16, 20_000)
    raw = plugin_entropy_rate(x, 2, miller_madow=False)
    corrected = plugin_entropy_rate(x, 2)
    assert 4.0 - raw == pytest.approx(0.1385, abs=0.02)
    assert abs(corrected - 4.0) < 0.02 < abs(raw - 4.0)


def test_plugin_two_state_chain():
    # closed form as above: H = 0.75 h2(0.1) + 0.25 h2(0.3) = 0.5721 bits. The estimate's sd is
    # ~ sd(-log2 p(x_t | x_{t-1})) / sqrt(N) < 1 / sqrt(1e5) ~ 3e-3; tolerance 0.015 (~5 sd).
    # Order 0 gives the marginal entropy h2(0.25) = 0.8113 instead (no memory used).
    x = two_state_chain(0.1, 0.3, 100_000, seed=2)
    assert plugin_entropy_rate(x, 1) == pytest.approx(0.75 * h2(0.1) + 0.25 * h2(0.3), abs=0.015)
    assert plugin_entropy_rate(x, 2) == pytest.approx(0.75 * h2(0.1) + 0.25 * h2(0.3), abs=0.015)
    assert plugin_entropy_rate(x, 0) == pytest.approx(h2(0.25), abs=0.015)


def test_plugin_labels_do_not_matter():
    x = np.random.default_rng(3).integers(0, 5, 5000)
    assert plugin_entropy_rate(x * 7 + 100, 2) == pytest.approx(plugin_entropy_rate(x, 2), abs=1e-12)


@pytest.mark.parametrize(
    "seq, order, match",
    [
        (np.zeros((3, 3), dtype=int), 1, "1-D"),
        (np.array([0.5, 1.5, 2.5]), 0, "integers"),
        (np.array([1, 2]), 2, "at least 4"),
        (np.array([1, 2, 3]), -1, "non-negative"),
    ],
)
def test_plugin_rejects_bad_input(seq, order, match):
    with pytest.raises(ValueError, match=match):
        plugin_entropy_rate(seq, order)


# --------------------------------------------------------------------------------------------------
# Lempel-Ziv match lengths


def brute_force_match_lengths(x: list[int]) -> list[int]:
    """The definition, literally: shortest string from i that does not start anywhere before i."""
    out = []
    for i in range(len(x)):
        length = 0
        while True:
            if i + length >= len(x):
                out.append(-1)
                break
            block = x[i : i + length + 1]
            if any(x[j : j + length + 1] == block for j in range(i)):
                length += 1
            else:
                out.append(length + 1)
                break
    return out


def test_match_lengths_equal_the_definition():
    rng = np.random.default_rng(4)
    for _ in range(200):
        x = rng.integers(0, rng.integers(1, 4), rng.integers(2, 40)).tolist()
        assert match_lengths(np.array(x)).tolist() == brute_force_match_lengths(x)


def test_match_lengths_small_example():
    # "abab a": position 2 ("aba...") matches "ab" at 0 then runs on (overlap allowed): x[2:5] = x[0:3]
    assert match_lengths(np.array([0, 1, 0, 1, 0, 2])).tolist() == [1, 1, 4, 3, 2, 1]


def test_lz_periodic_sequence_has_vanishing_rate():
    # a periodic sequence is deterministic: entropy rate 0; the match lengths grow with i, so the
    # estimate falls like 1/log n (bounded here by period / mean Lambda).
    x = np.tile(np.array([3, 1, 4, 1, 5, 9, 2]), 2000)
    assert lz_entropy_rate(x) < 0.02
    assert lz_entropy_rate(x, form="ratio") < 0.05


def test_lz_converges_on_a_markov_chain():
    # two-state chain, exact H = 0.5721 bits. The increasing-window estimator is consistent
    # (Kontoyiannis et al. 1998) with a bias that shrinks only like 1/log n: the error at n = 2e5
    # must be below the error at n = 2e3, and within 15% of H (measured on seeds 0-2 at 2e5:
    # 0.515, 0.510, 0.512, i.e. -10 to -11%; at 2e3: -14 to -23%).
    exact = 0.75 * h2(0.1) + 0.25 * h2(0.3)
    long = two_state_chain(0.1, 0.3, 200_000, seed=5)
    err_long = abs(lz_entropy_rate(long) - exact)
    err_short = abs(lz_entropy_rate(long[:2000]) - exact)
    assert err_long < err_short
    assert err_long < 0.15 * exact


def test_lz_rejects_unknown_form():
    with pytest.raises(ValueError, match="form must be one of"):
        lz_entropy_rate(np.array([0, 1, 0, 1]), form="sliding")
