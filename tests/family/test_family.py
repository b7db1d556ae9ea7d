"""The model family: grid and skips, one member end to end, the per-head scan, reading a family back,
and the CLI of `family train` and `scaling`."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from thermolens import io, thermo
from thermolens.cli import app
from thermolens.experiments.family import train as family
from thermolens.experiments.family import lm
from thermolens.models import names
from thermolens.experiments.scan.heads import DEFAULT_TEMPERATURES
from thermolens.models.hooked import HookedConfig, HookedTransformer

TINY = family.FamilyConfig(
    widths=(8, 16), heads=(1, 2), seq_lens=(8, 16),
    sources=("markov:h=1.0,order=1,vocab=6,seed=0", "markov:h=2.0,order=1,vocab=6,seed=0"), seeds=(0,),
    budget_tokens=2**11, batch_tokens=128, lr=1e-2, warmup_steps=4, eval_every=16, eval_batches=2,
    scan_sequences=8, n_boot=20,
)


@pytest.fixture(scope="module")
def tiny_family(tmp_path_factory):
    """The 16 members of TINY trained in this process (no sweep runner involved)."""
    root = tmp_path_factory.mktemp("family")
    family.write_family_json(root, TINY)
    for member in TINY.plan().members:
        family.train_member(member.job_config(), root / member.name)
    return root


def test_grid_skips_indivisible_widths_with_a_reason():
    config = dataclasses.replace(TINY, widths=(6, 8), heads=(1, 4))
    plan = config.plan()
    skipped = dict(plan.skipped)
    assert len(plan.members) == 3 * 2 * 2 and len(skipped) == 2 * 2  # d=6, N=4 for 2 sources x 2 lengths
    assert all("d=6 is not divisible by N=4" in why for why in skipped.values())
    assert all(m.d % m.N == 0 for m in plan.members)


def test_config_errors_say_what_to_do():
    with pytest.raises(ValueError, match="divisible"):
        dataclasses.replace(TINY, widths=(6,), heads=(4,))
    with pytest.raises(ValueError, match="repeats"):
        dataclasses.replace(TINY, widths=(8, 8))
    with pytest.raises(ValueError, match="batch_tokens"):
        dataclasses.replace(TINY, batch_tokens=8, seq_lens=(16,))
    assert family.FamilyConfig.from_dict(TINY.to_dict()) == TINY


def test_members_share_steps_and_budget():
    configs = [m.lm_config() for m in TINY.plan().members]
    assert {c.steps for c in configs} == {2**11 // 128}  # batch = batch_tokens // L windows
    assert {c.budget_tokens for c in configs} == {2**11}
    m = TINY.plan().members[0]
    assert m.lm_config().model["d_head"] == m.d // m.N


def test_scan_heads_matches_the_ensemble_directly():
    """The scan of captured logits (the scan's fused sums) gives the T* of the per-row heat capacity
    computed by thermo.heat_capacity on the same logits and causal mask (an independent path)."""
    cfg = HookedConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, n_ctx=12, d_vocab=7, d_vocab_out=None,
                       layernorm=True, causal=True, init_range=0.5)
    model = HookedTransformer(cfg, seed=0).eval()
    windows = torch.randint(0, 7, (6, 12), generator=torch.Generator().manual_seed(1))
    heads = family.scan_heads(model, windows, n_boot=10)
    assert len(heads) == 4 and list(heads["layer"]) == [0, 0, 1, 1]
    temps = np.asarray(DEFAULT_TEMPERATURES)
    with torch.no_grad():
        _, cache = model.run_with_cache(windows)
    for layer in range(2):
        logits = cache[names.attn_logits(layer)].double()  # (seq, head, q, k)
        mask = cache[names.attn_mask(layer)][None, None]  # (1, 1, q, k), causal
        c = thermo.heat_capacity(logits, 1.0 / temps, mask)  # (T, seq, head, q): every row has >= 1 key
        expected = thermo.critical_temperature(temps, c.mean(dim=(1, 3)).T.numpy())
        got = heads[heads["layer"] == layer]["T_star"].to_numpy()
        np.testing.assert_allclose(got, expected.T_star, rtol=1e-4)


def test_train_member_writes_its_directory(tiny_family):
    member = TINY.plan().members[0]
    run_dir = tiny_family / member.name
    for name in (lm.WEIGHTS, lm.MEMBER_JSON, lm.HISTORY, family.HEADS):
        assert (run_dir / name).is_file(), name
    heads = io.read_table(run_dir / family.HEADS)
    assert len(heads) == member.N
    assert {"T_star", "T_star_lo", "T_star_hi", "T_star_null_gauss", "T_star_null_shuffled"} <= set(heads.columns)


def test_load_family_and_code_version_warning(tiny_family, tmp_path):
    data = family.load_family(tiny_family)
    assert len(data.members) == 16 and not data.mixed_versions
    assert set(data.members["H"].round(6)) == {1.0, 2.0}  # exact entropy rates of the sources
    assert len(data.heads) == int(data.members["N"].sum())
    # a member trained by other code: warn and list it
    import shutil

    copy = tmp_path / "fam"
    shutil.copytree(tiny_family, copy)
    name = TINY.plan().members[3].name
    meta = io.read_json(copy / name / lm.MEMBER_JSON)
    meta["git_commit"] = "0" * 40
    io.write_json(copy / name / lm.MEMBER_JSON, meta)
    with pytest.warns(UserWarning, match="different code versions") as caught:
        mixed = family.load_family(copy)
    assert mixed.mixed_versions and name in str(caught[0].message)
    with pytest.raises(ValueError, match="no trained member"):
        family.load_family(tmp_path)


runner = CliRunner()


def test_cli_scaling_json(tiny_family):
    res = runner.invoke(app, ["scaling", "temperature", str(tiny_family), "--json", "--n-boot", "50", "--quiet"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert {"alpha_k", "T_0", "universality", "verdict"} <= set(out)
    assert [row["k"] for row in out["alpha_k"]] == [0, 1]
    for png in ("temperature_scaling.png", "context_scaling.png"):
        assert (tiny_family / "scaling_temperature" / png).is_file()
    res = runner.invoke(app, ["scaling", "architecture", str(tiny_family), "--json", "--n-boot", "50", "--quiet"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert math.isfinite(out["exponent"]) and out["C"] > 0 and out["exponent_lo"] <= out["exponent"] <= out["exponent_hi"]
    assert out["n_groups"] == 2 * 2 * 2  # (L, H, d)
    assert (tiny_family / "scaling_architecture" / "architecture_scaling.png").is_file()


def test_cli_bad_input_exits_2(tmp_path):
    res = runner.invoke(app, ["scaling", "temperature", str(tmp_path / "missing")])
    assert res.exit_code == 2
    res = runner.invoke(app, ["family", "train", "--source", "zipf:3", "--out", str(tmp_path / "f")])
    assert res.exit_code == 2 and "markov:h=" in res.output  # the grammar is shown
    res = runner.invoke(app, ["family", "train", "--widths", "6", "--heads", "4", "--out", str(tmp_path / "g")])
    assert res.exit_code == 2 and "divisible" in res.output
    res = runner.invoke(app, ["family", "train", "--quick", "--executor", "mpi", "--out", str(tmp_path / "h")])
    assert res.exit_code == 2


@pytest.mark.slow
def test_quick_family_end_to_end(tmp_path):
    """`family train --quick` (72 members on the local sweep), both analyses, and a resumed rerun."""
    out = tmp_path / "famq"
    res = runner.invoke(app, ["family", "train", "--quick", "--out", str(out), "--json", "--quiet"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["n_members"] == 72 and summary["n_failed"] == 0 and not summary["mixed_versions"]
    assert summary["wall_s"] < 600  # the budget for the quick preset
    data = family.load_family(out)
    # every member learned: below the uniform log2(8) = 3 bits, never below the entropy-rate floor
    # (minus the sampling noise of the fixed validation set)
    assert (data.members["val_bits"] < 3.0).all()
    assert (data.members["val_bits"] > data.members["H"] - 0.05).all()
    for command, key in (("temperature", "alpha_k"), ("architecture", "exponent")):
        res = runner.invoke(app, ["scaling", command, str(out), "--json", "--quiet", "--n-boot", "200"])
        assert res.exit_code == 0, res.output
        assert key in json.loads(res.stdout.strip().splitlines()[-1])
    again = runner.invoke(app, ["family", "train", "--quick", "--out", str(out), "--json", "--quiet"])
    assert again.exit_code == 0 and json.loads(again.stdout.strip().splitlines()[-1])["wall_s"] < 30
    changed = runner.invoke(app, ["family", "train", "--quick", "--lr", "0.1", "--out", str(out)])
    assert changed.exit_code == 2 and "lr" in changed.output


def test_cli_trains_and_lists_skipped_combinations(tmp_path):
    out = tmp_path / "fam"
    args = ["family", "train", "--quick", "--widths", "6,8", "--heads", "1,4", "--seq-len", "8", "--seeds", "0",
            "--budget-tokens", "1024", "--source", "markov:h=1.0,order=2,vocab=8", "--executor", "inline",
            "--out", str(out), "--json", "--quiet"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["n_members"] == 3 and summary["n_failed"] == 0
    assert summary["skipped"] == [{"member": "markov_h_1.0_order_2_vocab_8_seed_0-L8-d6-N4-s0",
                                   "reason": "d=6 is not divisible by N=4 heads (d_head = d/N)"}]
    assert io.read_json(out / io.MANIFEST)["status"] == "complete"
    assert len(io.read_table(out / "members.parquet")) == 3


def test_cli_member_that_fails_is_reported_and_exits_1(tmp_path):
    text = tmp_path / "tiny.txt"
    text.write_text("abcabcabdabcabcabdabcabcabdabcabcabd")  # 36 chars: the 10 % validation split has 4
    args = ["family", "train", "--quick", "--widths", "8", "--heads", "1", "--seq-len", "16", "--seeds", "0",
            "--source", f"text:{text}", "--executor", "inline", "--retries", "0", "--out", str(tmp_path / "f"),
            "--json", "--quiet"]
    res = runner.invoke(app, args)
    assert res.exit_code == 1
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["n_failed"] == 1 and "fewer than seq_len" in next(iter(summary["failed"].values()))
