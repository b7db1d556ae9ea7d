"""Kim 2026 as claims: the canonical-ensemble identity on a real (tiny) model and against a planted
wrong temperature; the precursor on synthetic grokking studies with a planted lead, a planted lag and
runs that never grok; the statistics behind them against closed forms; configs that round-trip."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from thermolens import io
from thermolens.claims import kim
from thermolens.claims.base import Evidence
from thermolens.claims.verdicts import decide
from thermolens.experiments.canonical import contract as canonical
from thermolens.experiments.grokking import contract as grokking
from thermolens.experiments.grokking.study import StudyConfig, run_name
from thermolens.experiments.grokking.train import GrokConfig
from thermolens.runner.study import config_from_dict, config_to_dict, resolve_study


@pytest.fixture(autouse=True)
def fewer_resamples(monkeypatch):
    """The verdict rules do not depend on the resample counts; the tests use fewer to stay fast."""
    monkeypatch.setattr(kim, "N_BOOT", 200)
    monkeypatch.setattr(kim, "N_BOOT_RUN", 60)


# --------------------------------------------------------------------------------------------------
# the claims, their pieces and configs


def test_claims_in_order_with_pieces_for_both_presets():
    assert [c.id for c in kim.CLAIMS] == ["kim-canonical-ensemble", "kim-precursor"]
    assert {c.source for c in kim.CLAIMS} == {"Kim 2026"}
    for claim in kim.CLAIMS:
        for preset in ("quick", "full"):
            (piece,) = claim.pieces(preset)
            study = resolve_study(piece.study)
            config = study.config(piece.config)  # a valid config of its study
            assert config_to_dict(config) == piece.config
            assert piece.est_s > 0 and piece.est_gib > 0
            assert "thermolens claims --only " + claim.id in claim.command(preset)
    full = kim.PRECURSOR.pieces("full")[0]
    grid = config_from_dict(StudyConfig, full.config)
    assert grid.ps == (19, 31, 59, 113) and grid.train_fractions == (0.3,) and len(grid.seeds) >= 3
    assert full.est_s > 3600  # hours, honestly
    quick = config_from_dict(StudyConfig, kim.PRECURSOR.pieces("quick")[0].config)
    assert kim.PRECURSOR.pieces("quick")[0].est_s < 7 * 60  # the quick budget of both claims
    assert "thermolens grok --p 19,31 --seeds 0,1" in kim.PRECURSOR.command("quick")
    assert quick.base.max_steps <= 5000


def test_configs_round_trip():
    c = canonical.CanonicalConfig(dtypes=("float64",), random_architectures=("bert", "gpt2"))
    assert config_from_dict(canonical.CanonicalConfig, json.loads(json.dumps(config_to_dict(c)))) == c
    s = StudyConfig(ps=(19, 31), seeds=(0, 1), fraction_overrides=((19, 0.5),),
                    base=GrokConfig(max_steps=500, every=50, adam_betas=(0.9, 0.98)))
    assert config_from_dict(StudyConfig, json.loads(json.dumps(config_to_dict(s)))) == s


@pytest.mark.parametrize("kwargs,words", [
    ({"dtypes": ("float16",)}, "dtypes"),
    ({"random_architectures": ("llama",)}, "not supported"),
    ({"thermo_temperatures": (0.5, 2.0)}, "include 1.0"),
    ({"temperatures": (1.0, 0.5, 2.0, 3.0, 4.0)}, "ascending"),
])
def test_bad_canonical_configs(kwargs, words):
    with pytest.raises(ValueError, match=words):
        canonical.CanonicalConfig(**kwargs)


# --------------------------------------------------------------------------------------------------
# kim-canonical-ensemble


def _qk(seed=0, batch=2, heads=3, n=7, d=16, spread=3.0):
    g = torch.Generator().manual_seed(seed)
    q = spread * torch.randn(batch, heads, n, d, generator=g, dtype=torch.float64)
    k = torch.randn(batch, heads, n, d, generator=g, dtype=torch.float64)
    return q, k


def test_check_layer_exact_for_a_softmax_at_sqrt_dk():
    # a "model" that attends with softmax(q.k / sqrt(d)) under a causal mask: every check is exact
    # to float64 rounding (energies of a few units; errors ~1e-15)
    q, k = _qk()
    d = q.shape[-1]
    mask = torch.ones(7, 7, dtype=torch.bool).tril()[None, None]
    logits = (q @ k.transpose(-1, -2) / math.sqrt(d)).masked_fill(~mask, -math.inf)
    p_model = torch.softmax(logits, dim=-1)
    errors, facts = canonical.check_layer(logits, mask, p_model, q, k, canonical.CanonicalConfig())
    assert set(errors) == set(canonical.CHECKS)
    assert max(errors.values()) < 1e-9
    assert facts["C_min"] >= 0.0 and facts["d_head"] == d
    # T*_K = sqrt(d) T* head by head (T* itself away from the grid's ends)
    np.testing.assert_allclose(facts["T_star_kim"], math.sqrt(d) * facts["T_star"], rtol=1e-9)
    # resolution: T_K off by 1% moves some probability by ~1e-3 or more
    assert facts["off_error"] > 1e-4


def test_check_layer_detects_a_model_at_another_temperature():
    # a model attending with softmax(q.k / d) (temperature d, not sqrt(d)): Kim's weights are off
    q, k = _qk(seed=1)
    d = q.shape[-1]
    logits = q @ k.transpose(-1, -2) / d
    mask = torch.ones(1, 1, 7, 7, dtype=torch.bool)
    errors, _ = canonical.check_layer(logits, mask, torch.softmax(logits, -1), q, k, canonical.CanonicalConfig())
    assert errors["pattern_T1"] < 1e-12  # thermolens at T = 1 is still the model
    assert errors["kim_weights"] > 0.05 and errors["energy_map"] > 0.5


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory):
    """A tiny random BERT with the bundled tokenizer, saved as a local model directory."""
    import transformers as tf

    from thermolens.models import bundled_model_dir

    torch.manual_seed(0)
    config = tf.BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=37, max_position_embeddings=64, initializer_range=0.2)
    path = tmp_path_factory.mktemp("tiny-bert")
    tf.BertModel(config).save_pretrained(path, safe_serialization=True)
    tf.AutoTokenizer.from_pretrained(bundled_model_dir(), local_files_only=True).save_pretrained(path)
    return path


def test_canonical_study_and_evidence_end_to_end(tiny_bert_dir, tmp_path, monkeypatch):
    config = canonical.CanonicalConfig(model=str(tiny_bert_dir), seq_len=32, max_tokens=96, n_random_seq=2)
    piece_dir = tmp_path / "piece"
    result = canonical.STUDY.run(config, piece_dir)
    back = canonical.STUDY.load(piece_dir)
    pd.testing.assert_frame_equal(back.checks, result.checks)
    assert back.config == config
    summary = canonical.STUDY.summary(back)
    assert set(summary) == {f"{m}/{d}" for m in (str(tiny_bert_dir), "random-gpt2") for d in ("float32", "float64")}
    # float32 rounding only; a 1% wrong T_K is orders of magnitude larger
    assert summary[f"{tiny_bert_dir}/float32"]["max_error"] < kim.TOLERANCE
    assert summary[f"{tiny_bert_dir}/float32"]["off_error"] > 10 * kim.TOLERANCE

    monkeypatch.setattr(kim, "_canonical_config", lambda preset: config)
    claim_dir = tmp_path / "claim"
    claim_dir.mkdir()
    evidence = kim.CANONICAL.evaluate("quick", {"kim-canonical-quick": piece_dir}, claim_dir)
    assert evidence.verdict == "supported" and evidence.decision is None
    assert evidence.effect < kim.TOLERANCE < evidence.null
    choices = [v.choice for v in evidence.variants]
    assert any("float64" in c for c in choices) and any("random-gpt2" in c for c in choices)
    assert all(v.verdict == "supported" for v in evidence.variants)
    assert (claim_dir / evidence.figure).is_file()
    assert Evidence.from_dict(json.loads(io.dumps_json(evidence.to_dict()))) == evidence


def test_canonical_evidence_contradicted_by_a_planted_error(tmp_path, monkeypatch):
    config = canonical.CanonicalConfig(dtypes=("float32",), random_architectures=())
    rows = [{"model": canonical.BUNDLED, "dtype": "float32", "layer": 0, "check": c, "error": 1e-7}
            for c in canonical.CHECKS]
    rows[1]["error"] = 0.02  # kim_weights off: the model attends at another temperature
    io.write_table(tmp_path / "checks.parquet", pd.DataFrame(rows))
    io.write_table(tmp_path / "facts.parquet", pd.DataFrame([{"model": canonical.BUNDLED, "dtype": "float32",
                                                              "layer": 0, "C_min": 0.0, "off_error": 0.01,
                                                              "d_head": 32, "n_rows": 10}]))
    io.write_table(tmp_path / "tstar.parquet", pd.DataFrame([{"model": canonical.BUNDLED, "dtype": "float32",
                                                              "layer": 0, "head": 0, "T_star": 0.5,
                                                              "T_star_kim": 0.5 * math.sqrt(32), "at_edge": False}]))
    io.write_json(tmp_path / "config.json", config_to_dict(config))
    monkeypatch.setattr(kim, "_canonical_config", lambda preset: config)
    evidence = kim.CANONICAL.evaluate("quick", {"kim-canonical-quick": tmp_path}, tmp_path)
    assert evidence.verdict == "contradicted" and evidence.effect == pytest.approx(0.02)


# --------------------------------------------------------------------------------------------------
# kim-precursor: one run


def _sigmoid(t, t0, w):
    return 1.0 / (1.0 + np.exp(-(t - t0) / w))


def test_grokking_criterion():
    steps = np.arange(0, 10001, 100.0)
    train = 1 - np.exp(-steps / 60)  # fits (>= 0.99) at ~280 steps
    crit = kim.GrokCriterion()
    # grokking: generalizes (0.9) near 5700 after memorising at ~280
    t_fit, t_gen, at_fit, groks = kim.grokking_delay(steps, train, 0.02 + 0.97 * _sigmoid(steps, 5000, 300), crit)
    assert groks and t_fit == pytest.approx(280, abs=40) and at_fit < 0.05
    # 0.9 crossing of 0.02 + 0.97 s: t0 + w ln(0.88 / 0.09)
    assert t_gen == pytest.approx(5000 + 300 * math.log(0.88 / 0.09), abs=20)
    # climbs straight after memorisation: test accuracy already past 0.5 when the training set fits
    assert not kim.grokking_delay(steps, train, 0.02 + 0.97 * _sigmoid(steps, 150, 2000), crit)[3]
    # ... or climbing steadily from chance: half its rise made by the midpoint (0.5 > 0.25)
    climb = 0.02 + 0.97 * np.minimum(1.0, steps / 6000)
    t_fit, t_gen, at_fit, groks = kim.grokking_delay(steps, train, climb, crit)
    assert at_fit < 0.1 and t_gen - t_fit > 5000 and not groks
    assert kim.grokking_delay(steps, train, climb, kim.GrokCriterion(max_midway_gain=0.6))[3]
    # a delay shorter than 1000 steps
    assert not kim.grokking_delay(steps, train, 0.02 + 0.97 * _sigmoid(steps, 700, 50), crit)[3]
    # never generalizes
    assert not kim.grokking_delay(steps, train, np.full(steps.size, 0.1), crit)[3]


def test_loss_drop_onset_is_the_midpoint_in_log_loss():
    steps = np.arange(0, 8001, 50.0)
    # log loss rises to 3 during memorisation, then falls to -4 as a logistic centred at 4000
    log_loss = 3.0 * (1 - np.exp(-steps / 100)) - 7.0 * _sigmoid(steps, 4000, 200)
    onset = kim.loss_drop_onset(steps, np.exp(log_loss), smooth_points=0.0)
    assert onset == pytest.approx(4000, abs=60)
    assert math.isnan(kim.loss_drop_onset(steps, np.exp(3.0 * (1 - np.exp(-steps / 100))), smooth_points=0.0))


# --------------------------------------------------------------------------------------------------
# kim-precursor: statistics


def test_sign_test_closed_forms():
    assert kim.sign_test([5, 3, 2, 9, 1, 4]) == (6, 0, pytest.approx(2 * 0.5**6))  # 0.03125
    assert kim.sign_test([-1, -2, -3, -4, -5, -6, -7, -8]) == (0, 8, pytest.approx(2 * 0.5**8))
    k_before, k_after, p = kim.sign_test([1, -1, 2, -2, math.nan, 0])
    assert (k_before, k_after) == (2, 2) and p == pytest.approx(1.0)
    assert kim.sign_test([]) == (0, 0, 1.0)


def test_cmax_power_law_fit_recovers_exponent_and_refuses_two_moduli():
    rng = np.random.default_rng(0)
    p = np.repeat([19, 31, 59, 113], 4).astype(float)
    diverging = kim.cmax_scaling(p, 0.1 * p**0.8 * np.exp(0.05 * rng.standard_normal(p.size)))
    assert diverging["exponent"] == pytest.approx(0.8, abs=0.08) and diverging["divergence"] is True
    # the t-interval covers the true exponent at about its nominal 95% (200 data sets: 0.915)
    covered = []
    for seed in range(100):
        noise = np.exp(0.05 * np.random.default_rng(seed).standard_normal(p.size))
        lo, hi = kim.cmax_scaling(p, 0.1 * p**0.8 * noise)["exponent_ci"]
        covered.append(lo < 0.8 < hi)
    assert np.mean(covered) >= 0.85
    # a small exponent over p = 19..113 cannot be told from logarithmic growth: no divergence claimed
    shallow = kim.cmax_scaling(p, 0.3 * p**0.06 * np.exp(0.01 * rng.standard_normal(p.size)))
    assert shallow["p_positive"] < 0.05 and shallow["delta_aic_log"] < 2 and shallow["divergence"] is False
    flat = kim.cmax_scaling(p, 0.3 * np.exp(0.05 * rng.standard_normal(p.size)))
    assert flat["divergence"] is False and flat["exponent_ci"][0] < 0 < flat["exponent_ci"][1]
    assert kim.cmax_scaling([19, 19, 31], [0.3, 0.31, 0.33])["divergence"] is None


def _lead(run, p, onset, peak):
    return kim.RunLead(run=run, p=p, seed=0, train_fraction=0.3, steps=10000, t_fit=200.0, t_gen=onset + 500,
                       test_acc_at_fit=0.05, groks=True, onset=onset, peak=peak, C_max=0.3, lead=onset - peak)


def test_repaired_null_tells_a_locked_peak_from_an_unrelated_one():
    onsets = [3000.0, 5000.0, 7000.0, 9000.0, 11000.0, 13000.0]
    locked = [_lead(f"r{i}", 113, o, o - 200) for i, o in enumerate(onsets)]
    out = kim.repaired_null(locked, n_perm=500)
    assert out["observed_mean_abs_lead"] == pytest.approx(200)
    assert out["median_abs_lead"] > 2000 and out["locking_p"] < 0.01  # 1/720 of shuffles is the identity
    unrelated = [_lead(f"r{i}", 113, o, 300.0) for i, o in enumerate(onsets)]  # all peak at memorisation
    assert kim.repaired_null(unrelated, n_perm=500)["locking_p"] == pytest.approx(1.0)


# --------------------------------------------------------------------------------------------------
# kim-precursor: evaluation on synthetic studies


def _history(rng, onset: float, peak: float | None, grok: bool, amp: float = 0.03, n_steps: int = 12000,
             every: int = 100):
    steps = np.arange(0, n_steps + 1, every, dtype=float)
    train = 1 - np.exp(-steps / 60)
    test = 0.02 + 0.97 * _sigmoid(steps, onset, 300) if grok else np.full(steps.size, 0.05)
    base = 0.3 * (1 - np.exp(-steps / 150))
    bump = amp * np.exp(-0.5 * ((steps - peak) / 400) ** 2) if peak is not None else 0.0
    noise = 0.0005 * rng.standard_normal(steps.size)
    c = base + bump + noise
    log_loss = 3.0 * (1 - np.exp(-steps / 100)) - (7.0 * _sigmoid(steps, onset, 300) if grok else 0.0)
    return pd.DataFrame({
        "step": steps, "train_acc": train, "test_acc": test, "test_loss": np.exp(log_loss),
        "test_C_eq": c, "train_C_eq": c * 1.01, "test_C_all": c * 0.9, "test_C_pooled": c + 0.01,
        "test_C_corr": c - 0.2,
    })


def write_study(root: Path, shift: float | None, *, grok: bool = True, ps=(19, 31, 59, 113), seeds=(0, 1)) -> Path:
    """A finished grokking-study piece in the contract's layout. Each run generalizes at a seeded
    onset in 4000..9000 with a C bump at ``onset - shift`` (``shift > 0``: the peak comes first;
    None: no bump). ``grok=False``: test accuracy never rises. C_max rises as p^0.5."""
    rng = np.random.default_rng(0)
    config = StudyConfig(ps=ps, seeds=seeds, base=GrokConfig(max_steps=12000, every=100))
    rows = []
    for run in config.runs():
        name = run_name(run)
        onset = float(rng.uniform(4000, 9000))
        history = _history(rng, onset, None if shift is None else onset - shift, grok, amp=0.03 * (run.p / 19) ** 0.5)
        run_dir = root / "runs" / name
        io.write_table(run_dir / "history.parquet", history)
        io.write_table(run_dir / "sweep.parquet", pd.DataFrame(columns=["step", "layer", "head", "T", "C", "S"]))
        rows.append({"run": name, "p": run.p, "seed": run.seed, "op": "add", "train_fraction": run.train_fraction,
                     "weight_decay": run.weight_decay, "steps": 12000, "grokked": grok})
    io.write_table(root / "runs.parquet", pd.DataFrame(rows))
    io.write_table(root / "summary.parquet", pd.DataFrame([{"p": p} for p in ps]))
    io.write_json(root / "study.json", config_to_dict(config))
    return root


def _evaluate(tmp_path: Path, piece: Path, preset: str = "full") -> Evidence:
    claim_dir = tmp_path / "claim"
    claim_dir.mkdir(exist_ok=True)
    evidence = kim.PRECURSOR.evaluate(preset, {f"kim-grokking-{preset}": piece}, claim_dir)
    assert (claim_dir / evidence.figure).is_file()
    stored = json.loads(io.dumps_json(evidence.to_dict()))  # what the report runner keeps
    assert io.to_jsonable(Evidence.from_dict(stored).to_dict()) == stored
    return evidence


def test_planted_precursor_is_supported(tmp_path):
    evidence = _evaluate(tmp_path, write_study(tmp_path / "piece", shift=1500.0))
    decision = evidence.decision
    assert decision.if_rejected == "supported"
    assert decision.p_value == pytest.approx(2 * 0.5**8)  # 8 of 8 runs: the peak comes first
    assert evidence.effect == pytest.approx(1500, abs=150) and evidence.ci[0] > 0
    assert evidence.needs_full is None
    assert len(evidence.variants) == 12
    assert {v.choice for v in evidence.variants} >= {"onset at test accuracy 0.9", "onset at the sigmoid midpoint",
                                                      "onset at the test-loss drop", "peak smoothing 4 readings"}
    numbers = evidence.numbers
    assert numbers["n_usable"] == 8 and numbers["n_lead_ci_above_0"] >= 6
    assert numbers["cmax_vs_p"]["exponent"] > 0 and numbers["cmax_vs_p"]["n_moduli"] == 4
    assert 0 < numbers["repaired_null"]["locking_p"] <= 1  # 2 seeds per p: too few to resolve locking
    # alone in the Holm family, every variant agrees: the row reads "supported"
    assert decide({"kim-precursor": evidence})["kim-precursor"].verdict == "supported"


def test_planted_lag_is_contradicted(tmp_path):
    evidence = _evaluate(tmp_path, write_study(tmp_path / "piece", shift=-600.0))
    assert evidence.decision.if_rejected == "contradicted" and evidence.decision.p_value < 0.01
    assert evidence.effect == pytest.approx(-600, abs=100)
    # at test accuracy 0.9 (~660 steps after the 0.5 crossing) the same peaks come first
    at_90 = next(v for v in evidence.variants if v.choice == "onset at test accuracy 0.9")
    assert at_90.if_rejected == "supported"
    verdict = decide({"kim-precursor": evidence})["kim-precursor"]
    assert verdict.primary == "contradicted" and verdict.verdict == "inconclusive"
    assert "onset at test accuracy 0.9" in verdict.flipped_by


def test_too_few_grokking_runs_leave_the_full_preset_inconclusive(tmp_path):
    # four runs, all with the peak first: p = 2 * 0.5^4 = 0.125, the sign test cannot reject
    evidence = _evaluate(tmp_path, write_study(tmp_path / "piece", shift=1500.0, ps=(31, 59)))
    assert evidence.needs_full is None and evidence.decision.p_value == pytest.approx(0.125)
    assert evidence.decision.if_not_rejected == "inconclusive"
    assert decide({"kim-precursor": evidence})["kim-precursor"].verdict == "inconclusive"


def test_runs_that_never_grok_test_nothing_and_quick_asks_for_full(tmp_path):
    piece = write_study(tmp_path / "piece", shift=1500.0, grok=False, ps=(19, 31))
    evidence = _evaluate(tmp_path, piece, preset="quick")
    assert evidence.decision.p_value == 1.0 and evidence.effect is None
    assert evidence.numbers["n_grok"] == 0 and evidence.numbers["n_runs"] == 4
    assert "full preset runs p in {19, 31, 59, 113}" in evidence.needs_full
    assert "None of the 4 runs groks" in evidence.reason


def test_grokking_contract_loads_what_run_wrote(tmp_path):
    config = StudyConfig(ps=(5,), seeds=(0,), base=GrokConfig(max_steps=20, every=4, sweep_every=0,
                                                                checkpoint_every=10, stop_window=0))
    result = grokking.STUDY.run(config, tmp_path)
    back = grokking.STUDY.load(tmp_path)
    assert back.config == config and list(back.run_dirs) == [run_name(config.runs()[0])]
    pd.testing.assert_frame_equal(back.runs, result.runs, check_dtype=False)
    assert grokking.STUDY.summary(back)["n_runs"] == 1
    # a second run finds every run finished and trains nothing
    again = grokking.STUDY.run(config, tmp_path)
    pd.testing.assert_frame_equal(again.runs, result.runs, check_dtype=False)
    with pytest.raises(ValueError, match="base.max_steps"):  # another config is refused, not mixed in
        grokking.STUDY.run(replace(config, base=replace(config.base, max_steps=24)), tmp_path)


@pytest.mark.slow
def test_canonical_identity_on_the_bundled_minilm(tmp_path):
    """The quick piece itself (~30 s of CPU with the imports): MiniLM float32 within the tolerance."""
    config = kim._canonical_config("quick")
    result = canonical.STUDY.run(config, tmp_path)
    summary = canonical.STUDY.summary(result)
    assert summary[f"{canonical.BUNDLED}/float32"]["max_error"] < kim.TOLERANCE
    assert summary[f"{canonical.BUNDLED}/float64"]["C_min"] >= 0
