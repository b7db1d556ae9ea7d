"""Theorem 1 and Theorem 3 fits: recover known exponents from synthetic families."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from thermolens.experiments.family import scaling


def synthetic_heads(alphas, *, alpha_n=0.3, T0=1.2, alpha_null=0.25, noise=0.05, seeds=(0, 1, 2), seed=0):
    """Heads whose T* follows T0_k (d/64)^(-alpha_k) (n/64)^(-alpha_n) with log-normal noise.

    One member per (d, L, seed) with len(alphas) heads; head h gets the k-th law with T0_k = T0 * 1.5^k,
    so the rank of T* within a member is k (the laws are far apart compared with the noise)."""
    rng = np.random.default_rng(seed)
    rows = []
    K = len(alphas)
    for d in (16, 32, 64, 128, 256):
        for L in (32, 64, 128):
            for s in seeds:
                member = f"d{d}-L{L}-s{s}"
                for head, alpha in enumerate(alphas):
                    law = T0 * 1.5**head * (d / 64) ** (-alpha) * (L / 64) ** (-alpha_n)
                    null = 0.8 * (d / 64) ** (-alpha_null) * (L / 64) ** (-0.1)
                    rows.append({
                        "member": member, "layer": 0, "head": K - 1 - head, "d": d, "L": L, "seed": s,
                        "T_star": law * np.exp(noise * rng.standard_normal()), "at_edge": False,
                        "T_star_null_gauss": null * np.exp(noise * rng.standard_normal()),
                    })
    return pd.DataFrame(rows)


def test_recovers_a_universal_exponent_and_T0():
    heads = synthetic_heads([0.5, 0.5, 0.5])
    result = scaling.temperature_scaling(heads, n_boot=200)
    for row in result.per_k.to_dict(orient="records"):
        assert row["alpha_lo"] < 0.5 < row["alpha_hi"]
        assert row["alpha"] == pytest.approx(0.5, abs=0.03)
        assert row["alpha_n"] == pytest.approx(0.3, abs=0.03)
        assert row["T0"] == pytest.approx(1.2 * 1.5 ** row["k"], rel=0.05)  # T0_k of the generating law
    assert result.pooled["alpha"] == pytest.approx(0.5, abs=0.03)
    assert result.universality["p_value"] > 0.01  # equal exponents: the F-test should not reject
    # the generating null scales with alpha_null = 0.25: the difference 0.25 is resolved
    assert result.pooled["alpha_null"] == pytest.approx(0.25, abs=0.03)
    assert result.pooled["diff_lo"] > 0.15
    assert "differs from what random logits" in result.verdict
    assert "falls with width as Theorem 1 says" in result.verdict


def test_detects_exponents_that_differ_between_head_indices():
    result = scaling.temperature_scaling(synthetic_heads([0.2, 0.5, 0.8]), n_boot=200)
    alphas = result.per_k.set_index("k")["alpha"]
    assert alphas[0] == pytest.approx(0.2, abs=0.03) and alphas[2] == pytest.approx(0.8, abs=0.03)
    assert result.universality["p_value"] < 1e-6
    assert "not universal" in result.verdict
    rising = scaling.temperature_scaling(synthetic_heads([-0.4, -0.4]), n_boot=100)
    assert "opposite of Theorem 1" in rising.verdict


def test_null_like_scaling_is_called_indistinguishable():
    heads = synthetic_heads([0.25, 0.25], alpha_null=0.25, alpha_n=0.1)
    result = scaling.temperature_scaling(heads, n_boot=200)
    assert result.pooled["diff_lo"] < 0 < result.pooled["diff_hi"]
    assert "not distinguishable" in result.verdict


def test_edge_heads_are_left_out_and_rank_is_kept():
    heads = synthetic_heads([0.5, 0.5])
    heads.loc[heads.index[::7], "at_edge"] = True
    points, n_out = scaling.head_points(heads)
    assert n_out == int(heads["at_edge"].sum())
    # the rank is taken before removal: the hotter law is still k = 1
    assert (points.groupby("k")["T_star"].median().diff().dropna() > 0).all()


def test_one_width_is_refused():
    heads = synthetic_heads([0.5])
    with pytest.raises(ValueError, match="two widths"):
        scaling.temperature_scaling(heads[heads["d"] == 64], n_boot=10)


def synthetic_members(exponent=0.5, C=8.0, noise=0.002, seeds=(0, 1, 2), seed=0,
                      cells=((16, 1.0), (32, 2.0), (64, 4.0)), widths=(16, 32)):
    """Members whose loss is lowest at N* = C (L H)^exponent / d: a quadratic bowl in log2 N around it."""
    rng = np.random.default_rng(seed)
    rows = []
    for L, H in cells:  # default: L H = 16, 64, 256
        target = C * (L * H) ** exponent
        for d in widths:
            for N in (1, 2, 4, 8, 16):
                for s in seeds:
                    loss = 1.0 + 0.1 * (np.log2(N) - np.log2(target / d)) ** 2 + noise * rng.standard_normal()
                    rows.append({"L": L, "H": H, "d": d, "N": N, "seed": s, "val_loss": loss})
    return pd.DataFrame(rows)


def test_recovers_the_square_root_law():
    result = scaling.architecture_scaling(synthetic_members(), n_boot=200)
    # N* d = 8 sqrt(L H): 32, 64, 128 at L H = 16, 64, 256, whatever the width
    assert sorted(result.optimal["Nd"].unique()) == [32, 64, 128]
    assert result.exponent == pytest.approx(0.5, abs=1e-9)
    assert result.C == pytest.approx(8.0, rel=1e-9)
    assert result.width_exponent == pytest.approx(0.0, abs=1e-9)  # N* d set by L H alone
    assert result.width_exponent_lo <= 0 <= result.width_exponent_hi
    assert (result.optimal["stability"] > 0.9).all()
    assert result.exponent_lo <= 0.5 <= result.exponent_hi
    assert "consistent with 1/2" in result.verdict


def test_a_linear_law_excludes_one_half():
    # exponent 1: N* d = 2 L H = 16, 32, 64, i.e. N* = 2, 4, 8 at d = 8 and 1, 2, 4 at d = 16
    members = synthetic_members(exponent=1.0, C=2.0, cells=((8, 1.0), (8, 2.0), (16, 2.0)), widths=(8, 16))
    result = scaling.architecture_scaling(members, n_boot=200)
    assert result.exponent == pytest.approx(1.0, abs=1e-9)
    assert not result.exponent_lo <= 0.5 <= result.exponent_hi
    assert "exclude 1/2" in result.verdict


def test_a_fixed_head_count_shows_as_width_dependence():
    members = synthetic_members()
    # the loss is lowest at N = 2 whatever L H and d: N* d = 2 d, so e = 0 and g = 1
    members["val_loss"] = 1.0 + 0.1 * (np.log2(members["N"]) - 1.0) ** 2
    result = scaling.architecture_scaling(members, n_boot=100)
    assert result.exponent == pytest.approx(0.0, abs=1e-9)
    assert result.width_exponent == pytest.approx(1.0, abs=1e-9)
    assert result.C == pytest.approx(2 * 64, rel=1e-9)  # N* d at d = d0 = 64
    assert "exclude: the optimal N*d depends on the width" in result.verdict


def test_seed_noise_larger_than_the_bowl_is_reported_unstable():
    result = scaling.architecture_scaling(synthetic_members(noise=0.5), n_boot=200)
    assert (result.optimal["stability"] < 0.9).any()
    assert result.exponent_hi - result.exponent_lo > 0.2


def test_architecture_needs_two_values_of_LH():
    members = synthetic_members()
    with pytest.raises(ValueError, match="L\\*H"):
        scaling.architecture_scaling(members[members["L"] == 16], n_boot=10)


def test_groups_far_above_the_entropy_floor_are_flagged():
    members = synthetic_members()  # losses ~1 nat = 1.44 bits; H = 1, 2, 4 bits
    result = scaling.architecture_scaling(members, n_boot=20)
    expected = result.optimal["val_loss"] / np.log(2) - result.optimal["H"]
    np.testing.assert_allclose(result.optimal["excess_bits"], expected)
    n_flagged = int((expected > scaling.UNLEARNED_BITS).sum())  # the H = 1 groups: 0.44 bit < 0.5, not flagged
    assert n_flagged == 0 and "have not learned" not in result.verdict
    members["val_loss"] += 1.0  # 1.44 bits more: now the H = 1 and H = 2 groups are far above the floor
    flagged = scaling.architecture_scaling(members, n_boot=20)
    assert f"In {int((flagged.optimal['excess_bits'] > 0.5).sum())} of 6 groups" in flagged.verdict
