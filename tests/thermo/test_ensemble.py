"""Closed forms and invariants of the attention canonical ensemble (thermolens.thermo.ensemble).

Every expected value is derived in a comment next to its test; no number is taken from our own code.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from thermolens.thermo import boltzmann, ensemble, entropy, heat_capacity, log_partition

BETAS = np.geomspace(1e-4, 1e4, 33)


def test_uniform_logits_have_zero_heat_capacity_and_log_n_entropy():
    # All keys degenerate: p_j = 1/n at every T, so S = log n and Var_p(E) = 0 -> C = 0 exactly.
    for n in (1, 2, 7, 128):
        ens = ensemble(np.full((3, n), 0.37), BETAS)
        np.testing.assert_allclose(ens.entropy, np.log(n), rtol=0, atol=1e-12)
        np.testing.assert_allclose(ens.heat_capacity, 0.0, rtol=0, atol=1e-12)
        # F = -T log Z = -T (beta * 0.37 + log n) = -0.37 - T log n
        want = np.broadcast_to(-0.37 - np.log(n) / BETAS[:, None], (BETAS.size, 3))
        np.testing.assert_allclose(ens.free_energy, want, rtol=1e-12)
        assert (ens.n_keys == n).all()


@pytest.mark.parametrize(("gap", "g0", "g1"), [(1.0, 1, 1), (2.5, 3, 5), (0.3, 4, 1)])
def test_two_level_row_matches_schottky(gap, g0, g1):
    # Two-level system: g0 keys with E = 0 (logit 0), g1 keys with E = D (logit -D).
    #   Z = g0 + g1 x,  x = exp(-beta D);  occupation of the upper level q = g1 x / Z
    #   U = D q;  Var(E) = D^2 q (1 - q);  C = (beta D)^2 g0 g1 x / (g0 + g1 x)^2   (Schottky anomaly)
    #   S = log Z + beta U;  F = -T log Z.
    logits = np.array([0.0] * g0 + [-gap] * g1)
    logits = np.random.default_rng(1).permutation(logits)
    ens = ensemble(logits, BETAS)
    x = np.exp(-BETAS * gap)
    z = g0 + g1 * x
    q = g1 * x / z
    log_z = np.log(g0) + np.log1p(g1 * x / g0)  # = log Z, written so tiny x keeps its digits
    np.testing.assert_allclose(ens.log_partition, log_z, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(ens.energy, gap * q, rtol=1e-10, atol=1e-300)
    np.testing.assert_allclose(ens.entropy, log_z + BETAS * gap * q, rtol=1e-10, atol=1e-300)
    c = (BETAS * gap) ** 2 * g0 * g1 * x / z**2
    np.testing.assert_allclose(ens.heat_capacity, c, rtol=1e-9, atol=1e-300)


def test_free_energy_identity_and_heat_capacity_is_entropy_derivative():
    rng = np.random.default_rng(2)
    logits = rng.normal(scale=2.0, size=(5, 6, 40))
    betas = np.geomspace(0.05, 20, 25)
    ens = ensemble(logits, betas)
    T = 1.0 / betas[:, None, None]
    # F = U - T S (definition of S = beta (U - F))
    np.testing.assert_allclose(ens.free_energy, ens.energy - T * ens.entropy, rtol=1e-11, atol=1e-11)
    # C = -beta dS/dbeta, central difference with relative step h: error O(h^2) ~ 1e-8.
    h = 1e-4
    s_hi = entropy(logits, betas * (1 + h))
    s_lo = entropy(logits, betas * (1 - h))
    dS = (s_hi - s_lo) / (2 * h * betas[:, None, None])
    np.testing.assert_allclose(ens.heat_capacity, -betas[:, None, None] * dS, rtol=1e-6, atol=1e-10)
    assert (ens.heat_capacity >= 0).all()


def test_high_and_low_temperature_limits():
    rng = np.random.default_rng(3)
    n = 50
    logits = rng.normal(size=n)
    logits[[4, 17]] = logits.max() + 1.5  # two-fold degenerate ground state, gap >= 1.5 above the rest
    # beta -> 0: p -> uniform; S = log n - beta^2 Var_u(E)/2 + O(beta^3); C = beta^2 Var_u(E) (1 + O(beta)).
    small = np.array([1e-4, 1e-3])
    ens = ensemble(logits, small)
    var_u = logits.var()
    np.testing.assert_allclose(ens.entropy, np.log(n) - small**2 * var_u / 2, rtol=1e-9)
    np.testing.assert_allclose(ens.heat_capacity, small**2 * var_u,
                               rtol=5 * small.max() * np.abs(logits).max())
    # beta -> inf: p -> uniform on the g0 = 2 ground states, S -> log 2, C -> 0 (as beta^2 D^2 e^{-beta D}).
    large = np.array([1e2, 1e3, 1e4])
    ens = ensemble(logits, large)
    np.testing.assert_allclose(ens.entropy, np.log(2), rtol=1e-12)
    assert (ens.heat_capacity < 1e-55).all() and np.isfinite(ens.heat_capacity).all()
    np.testing.assert_allclose(ens.energy, -logits.max(), rtol=1e-12)


def test_masked_keys_do_not_exist():
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(4, 30))
    mask = rng.random((4, 30)) < 0.6
    mask[:, 0] = True
    ens = ensemble(logits, BETAS, mask)
    for r in range(4):
        sub = ensemble(logits[r, mask[r]], BETAS)
        for name in ("log_partition", "free_energy", "energy", "entropy", "heat_capacity"):
            np.testing.assert_allclose(getattr(ens, name)[:, r], getattr(sub, name), rtol=1e-12, atol=1e-300)
        assert ens.n_keys[r] == mask[r].sum()
    # A key with logit -inf is absent as well; the masked value itself never matters.
    poisoned = np.where(mask, logits, -np.inf)
    np.testing.assert_allclose(ensemble(poisoned, BETAS).entropy, ens.entropy, rtol=1e-12)
    np.testing.assert_allclose(ensemble(np.where(mask, logits, 1e6), BETAS, mask).heat_capacity,
                               ens.heat_capacity, rtol=1e-12, atol=1e-300)


def test_empty_and_single_key_rows():
    logits = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    mask = np.array([[False] * 3, [False, True, False], [True] * 3])
    ens = ensemble(logits, [0.5, 2.0], mask)
    assert np.isnan(ens.entropy[:, 0]).all() and np.isnan(ens.free_energy[:, 0]).all()
    # One key: p = 1, S = C = 0, F = U = -l.
    np.testing.assert_array_equal(ens.entropy[:, 1], 0.0)
    np.testing.assert_array_equal(ens.heat_capacity[:, 1], 0.0)
    np.testing.assert_allclose(ens.free_energy[:, 1], -2.0, rtol=1e-15)
    np.testing.assert_allclose(ens.energy[:, 1], -2.0, rtol=1e-15)
    assert list(ens.n_keys) == [0, 1, 3]


def test_numpy_and_torch_agree_and_follow_backend():
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(2, 3, 5, 16)).astype(np.float32)
    mask = rng.random((2, 1, 5, 16)) < 0.8
    e_np = ensemble(logits, BETAS, mask)
    e_t = ensemble(torch.from_numpy(logits), torch.tensor(BETAS), torch.from_numpy(mask))
    assert isinstance(e_np.entropy, np.ndarray) and e_np.entropy.dtype == np.float64
    assert isinstance(e_t.entropy, torch.Tensor) and e_t.entropy.dtype == torch.float64
    assert e_t.entropy.shape == (BETAS.size, 2, 3, 5)
    for name in ("log_partition", "free_energy", "energy", "entropy", "heat_capacity"):
        np.testing.assert_allclose(getattr(e_t, name).numpy(), getattr(e_np, name), rtol=1e-13, atol=1e-300)


def test_chunking_does_not_change_results():
    rng = np.random.default_rng(6)
    logits = rng.normal(size=(37, 9))
    full = ensemble(logits, BETAS)
    chunked = ensemble(logits, BETAS, chunk_rows=5)
    np.testing.assert_array_equal(full.heat_capacity, chunked.heat_capacity)
    np.testing.assert_array_equal(full.free_energy, chunked.free_energy)


def test_single_potential_functions_match_ensemble():
    rng = np.random.default_rng(7)
    logits = rng.normal(size=(4, 11))
    ens = ensemble(logits, BETAS)
    np.testing.assert_array_equal(log_partition(logits, BETAS), ens.log_partition)
    np.testing.assert_array_equal(entropy(logits, BETAS), ens.entropy)
    np.testing.assert_array_equal(heat_capacity(logits, BETAS), ens.heat_capacity)


def test_boltzmann_is_softmax_at_temperature_with_masked_keys_zero():
    rng = np.random.default_rng(8)
    logits = rng.normal(size=(3, 10))
    mask = rng.random((3, 10)) < 0.7
    mask[2] = False
    p = boltzmann(logits, 2.0, mask)
    for r in range(2):
        w = np.exp(2.0 * (logits[r] - logits[r][mask[r]].max())) * mask[r]
        np.testing.assert_allclose(p[r], w / w.sum(), rtol=1e-13, atol=0)
    np.testing.assert_array_equal(p[2], 0.0)  # no valid key: all zeros, never NaN
    assert np.isnan(boltzmann(np.array([[0.0, np.nan]]), 1.0)).all()  # a NaN logit is not hidden
    # T = 1 is the model's own attention; torch keeps dtype/device; a grid of betas stacks in front.
    x = torch.from_numpy(logits).float()
    np.testing.assert_allclose(boltzmann(x, 1.0).numpy(), torch.softmax(x, -1).numpy(), rtol=1e-6)
    assert boltzmann(x, 1.0).dtype == torch.float32
    assert boltzmann(logits, [0.5, 1.0, 2.0]).shape == (3, 3, 10)
    # The entropy of the Boltzmann pattern equals the ensemble's S.
    pb = boltzmann(logits[:2], 2.0, mask[:2])
    s = -np.sum(np.where(pb > 0, pb * np.log(np.where(pb > 0, pb, 1)), 0), -1)
    np.testing.assert_allclose(s, ensemble(logits[:2], [2.0], mask[:2]).entropy[0], rtol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"betas": [1.0, -1.0]}, "> 0"),
        ({"betas": []}, "non-empty"),
        ({"betas": 1.0}, "1-D"),
        ({"mask": np.ones((2, 3))}, "boolean"),
        ({"mask": np.ones((4,), bool)}, "broadcast"),
        ({"logits": np.array([[np.nan, 1.0, 2.0]] * 2)}, "NaN"),
        ({"chunk_rows": 0}, "chunk_rows"),
    ],
)
def test_bad_input_raises_value_error_with_fix(kwargs, match):
    args = {"logits": np.zeros((2, 3)), "betas": [1.0], "mask": None} | kwargs
    chunk = args.pop("chunk_rows", None)
    with pytest.raises(ValueError, match=match):
        ensemble(args["logits"], args["betas"], args["mask"], chunk_rows=chunk)


@settings(max_examples=60, deadline=None)
@given(
    logits=arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, 24)),
                  elements=st.floats(-30, 30, allow_nan=False, allow_subnormal=False)),
    log_beta=st.floats(-4, 4),
)
def test_invariants_hold_for_arbitrary_rows(logits, log_beta):
    beta = np.array([10.0**log_beta])
    ens = ensemble(logits, beta)
    n = logits.shape[-1]
    assert (ens.heat_capacity >= 0).all()
    assert (ens.entropy >= -1e-12).all() and (ens.entropy <= np.log(n) + 1e-12).all()
    # F <= min E = -max l (log Z >= beta max l) and U >= F.
    assert (ens.free_energy <= -logits.max(-1) + 1e-9 * (1 + np.abs(logits).max())).all()
    np.testing.assert_allclose(ens.free_energy, ens.energy - ens.entropy / beta,
                               rtol=1e-9, atol=1e-9 * (1 + np.abs(logits).max() + np.log(n) / beta[0]))
