"""``thermolens dynamics`` on models: traces, the measurement tables, the sweep, the CLI and its refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from thermolens.cli import app
from thermolens.experiments.dynamics.measure import MeasureConfig, transition_shape
from thermolens.experiments.dynamics.study import DynamicsConfig, run_dynamics, sequences
from thermolens.experiments.dynamics.trace import trace

TEXT = " ".join(f"The {w} particle moves along the sphere while the attention heads cluster tokens {i}." for i, w in
                enumerate(["first", "second", "third", "fourth", "fifth", "sixth"] * 12))


@pytest.fixture(scope="module")
def gpt2():
    import transformers as tf

    from thermolens.models import from_pretrained_model

    torch.manual_seed(1)
    model = tf.GPT2LMHeadModel(tf.GPT2Config(vocab_size=97, n_embd=24, n_layer=2, n_head=3, n_positions=32))
    return from_pretrained_model(model, name="tiny-gpt2")


@pytest.fixture(scope="module")
def hooked():
    from thermolens.models.hooked import HookedConfig, HookedTransformer

    cfg = HookedConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, d_vocab=11, n_ctx=6, act="gelu",
                       layernorm=True, causal=True)
    return HookedTransformer(cfg, seed=0).eval()


def test_bert_trace_holds_embeddings_block_outputs_heads_and_logit_fits(tiny):
    model, _, loaded = tiny
    ids = torch.randint(1000, 2000, (5, 12))
    tr = trace(loaded, ids, batch_size=2)
    assert tr.states.shape == (3, 5, 12, 32) and tr.heads.shape == (2, 5, 12, 4, 8)
    with torch.no_grad():
        out = model.bert(input_ids=ids, output_hidden_states=True)
    for layer in range(3):  # BERT is post-norm: hidden_states are the block outputs themselves
        np.testing.assert_allclose(tr.states[layer], out.hidden_states[layer].numpy(), atol=1e-5)
    # the heads' outputs through the output projection give the attention sub-block's output
    dense = model.bert.encoder.layer[0].attention.output.dense
    with torch.no_grad():
        projected = dense(torch.from_numpy(tr.heads[0]).flatten(-2))
    assert projected.shape == (5, 12, 32)
    assert len(tr.logits) == 2 and tr.logits[0].sxy.shape == (5, 4)
    assert np.all(tr.logits[0].sxx > 0)


def test_temperature_changes_downstream_states_only(tiny, gpt2, hooked):
    _, _, loaded = tiny
    ids = torch.randint(1000, 2000, (3, 10))
    cold, hot = trace(loaded, ids, T=1.0, heads=False), trace(loaded, ids, T=4.0, heads=False)
    np.testing.assert_allclose(cold.states[0], hot.states[0])  # embeddings are not heated
    assert not np.allclose(cold.states[-1], hot.states[-1], atol=1e-4)
    # the logit fit sees l, and the head's beta at T is its slope over T (checked through the study table)
    np.testing.assert_allclose(cold.logits[0].sxy, hot.logits[0].sxy, rtol=1e-5)
    for model, ids in ((gpt2, torch.randint(0, 97, (3, 10))), (hooked, torch.randint(0, 11, (3, 6)))):
        a, b = trace(model, ids), trace(model, ids, T=3.0)
        assert a.states.shape[0] == 3 and a.heads.shape[:2] == (2, 3)
        assert not np.allclose(a.states[-1], b.states[-1], atol=1e-5)


def test_hooked_trace_matches_its_cache(hooked):
    from thermolens.models import names

    ids = torch.randint(0, 11, (4, 6))
    tr = trace(hooked, ids)
    with torch.no_grad():
        _, cache = hooked.run_with_cache(ids)
    np.testing.assert_allclose(tr.states[2], cache[names.resid_post(1)].numpy(), atol=1e-6)
    np.testing.assert_allclose(tr.heads[1], cache[names.attn_z(1)].numpy(), atol=1e-6)


def test_run_dynamics_tables_and_summary(tiny):
    _, _, loaded = tiny
    config = DynamicsConfig(seq_len=16, n_sequences=6, temperatures=(0.5, 1.0, 2.0),
                            measure=MeasureConfig(n_boot=50))
    tokens, special = sequences(loaded, [TEXT], config)
    assert tokens.shape == (6, 16) and special.tolist() == [True] + [False] * 14 + [True]  # [CLS] ... [SEP]
    res = run_dynamics(loaded, tokens, config, name="tiny", special=special)
    s = res.summary()
    assert len(s["mean_cosine"]) == 3 and len(s["null"]["mean_cosine"]) == 3 and len(s["beta_eff"]) == 2
    assert set(s["components"]) == {"no_special", "minus_position", "minus_mean"}
    assert abs(np.mean(s["null"]["mean_cosine"])) < 0.1
    # the sweep's T = 1 pass is the depth run's last layer
    at_one = res.sweep[(res.sweep["T"] == 1.0) & (res.sweep["quantity"] == "r1")]["value"].iloc[0]
    assert at_one == pytest.approx(res.curve("r1")[-1], rel=1e-6)
    # in the sweep beta_eff of a layer is its T = 1 slope over T
    eff = res.sweep_effective
    b1 = res.effective["beta_eff"].to_numpy()
    np.testing.assert_allclose(eff[eff["T"] == 2.0].sort_values("layer")["beta_eff"], b1 / 2, rtol=1e-9)
    assert res.shape["shape"] in ("flat", "continuous", "jump") and "hysteresis" in res.shape
    assert len(res.heads) == 2 * 4 * 3 and len(res.head_beta) == 8


def test_transition_shape_tells_a_jump_from_a_smooth_rise():
    x = np.linspace(0, 1, 11)
    smooth = x.copy()
    jump = (x > 0.55).astype(float)
    band = np.full_like(x, 0.01)
    assert transition_shape(x, smooth, smooth - band, smooth + band)["shape"] == "continuous"
    out = transition_shape(x, jump, jump - band, jump + band)
    assert out["shape"] == "jump" and out["at"] == pytest.approx((0.5, 0.6))
    assert transition_shape(x, 0.001 * x, 0.001 * x - band, 0.001 * x + band)["shape"] == "flat"


def _run(args):
    return CliRunner().invoke(app, args)


def test_cli_dynamics_json(tmp_path, tiny_dir):
    text = tmp_path / "corpus.txt"
    text.write_text(TEXT)
    out = tmp_path / "run"
    res = _run(["dynamics", "--model", str(tiny_dir), "--text", str(text), "--seq-len", "16", "--sequences", "5",
                "--temperatures", "0.5:2:3", "--bootstrap", "20", "--out", str(out), "--json", "--quiet"])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout.strip().splitlines()[-1])
    assert len(payload["mean_cosine"]) == 3 and len(payload["null"]["mean_cosine"]) == 3
    assert len(payload["beta_eff"]) == 2 and payload["sweep"]["shape"]["shape"] in ("flat", "continuous", "jump")
    for name in ("depth.parquet", "effective.parquet", "sweep.parquet", "report.html", "depth.png", "placement.png",
                 "sweep.png", "manifest.json"):
        assert (out / name).is_file(), name


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--temperatures", "0,1"], "positive"),
        (["--temperatures", "-1,2"], "positive"),
        (["--seq-len", "400"], "seq_len"),
        (["--simulate", "doi-onsager"], "no particle dynamics"),
        (["--simulate", "ising"], "unknown kernel"),
        (["--checkpoints", "/nonexistent/run"], "not a directory"),
    ],
)
def test_cli_bad_input(tmp_path, tiny_dir, extra, message):
    res = _run(["dynamics", "--model", str(tiny_dir), "--out", str(tmp_path / "run"), "--quiet", *extra])
    assert res.exit_code == 2, res.output
    assert message in res.output


def test_cli_refuses_a_corpus_shorter_than_one_sequence(tmp_path, tiny_dir):
    text = tmp_path / "short.txt"
    text.write_text("Too short.")
    res = _run(["dynamics", "--model", str(tiny_dir), "--text", str(text), "--seq-len", "32",
                "--out", str(tmp_path / "run"), "--quiet"])
    assert res.exit_code == 2 and "shorter than one sequence" in res.output, res.output


def test_cli_names_a_model_whose_attention_cannot_be_heated(tmp_path):
    import transformers as tf

    from thermolens.models import bundled_model_dir

    path = tmp_path / "bloom"
    tf.BloomForCausalLM(tf.BloomConfig(vocab_size=30522, hidden_size=32, n_layer=2, n_head=4)).save_pretrained(path)
    tf.AutoTokenizer.from_pretrained(bundled_model_dir(), local_files_only=True).save_pretrained(path)
    res = _run(["dynamics", "--model", str(path), "--out", str(tmp_path / "run"), "--quiet"])
    assert res.exit_code == 2 and "'bloom' does not route attention" in res.output, res.output


def test_mean_field_prediction_reads_crossings_of_the_instability_line():
    import pandas as pd

    from thermolens.experiments.dynamics.study import mean_field_prediction

    T = np.array([4.0, 2.0, 1.0, 0.5])
    frame = pd.DataFrame({"layer": 1, "T": T, "beta_eff": 2.0 / T, "K_ratio": [0.5, 0.8, 1.2, 1.5], "beta_star": 1.005})
    out = mean_field_prediction(frame, "continuous")
    (crossing,) = out["crossings"]
    # K_ratio - 1 goes -0.2 -> +0.2 between T = 2 and T = 1: halfway in log T (sqrt 2), beta_eff halfway (1.5)
    assert crossing["T"] == pytest.approx(np.sqrt(2.0)) and crossing["beta_eff"] == pytest.approx(1.5)
    assert crossing["order"] == "discontinuous" and crossing["direction"] == "into clustered"
    assert out["mean_field"] == "jump" and out["agrees"] is False
    low = frame.assign(beta_star=3.0)  # the same crossing below beta_*: continuous
    assert mean_field_prediction(low, "continuous")["mean_field"] == "continuous"
    assert mean_field_prediction(low, "continuous")["agrees"] is True
    none = frame.assign(K_ratio=0.3)
    assert mean_field_prediction(none, "flat")["mean_field"] == "no transition in range"


def test_particles_through_the_model_pipeline_return_their_own_beta_and_K():
    from thermolens.experiments.dynamics.simulate import SimulationConfig, run_simulation

    config = SimulationConfig(betas=(1.0,), K_ratio=2.0, d=3, n_particles=200, n_sequences=6, n_layers=4,
                              tau_layer=1.5, anneal_ratios=(), measure=MeasureConfig(n_boot=100))
    result = run_simulation(config)
    run = result.summary()["runs"][0]
    assert run["beta_eff"] == [1.0] * 5  # the particles' logits are beta u.u exactly
    assert run["mean_cosine"][-1] > 0.3 > abs(run["null"]["mean_cosine"][-1])  # K = 2 K_#: they cluster
    eff = result.effective
    clustered = eff[eff["layer"] >= 3]  # once the field is visible, the probe steps give K back
    assert np.all(np.abs(clustered["K_eff"] / clustered["K_true"] - 1) < 0.25), clustered[["K_eff", "K_true"]]
    assert result.theory["transition"].iloc[0] == "continuous"  # beta = 1 < beta_*(3) = 1.816


def test_cli_simulate_json(tmp_path):
    out = tmp_path / "sim"
    res = _run(["dynamics", "--simulate", "noisy-transformer", "--beta", "1,3", "--particles", "300",
                "--sequences", "2", "--layers", "2", "--anneal", "0.9,1.1", "--bootstrap", "20", "--out", str(out),
                "--json", "--quiet"])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout.strip().splitlines()[-1])
    assert [r["transition"] for r in payload["runs"]] == ["continuous", "discontinuous"]  # beta_* = 2.4469
    assert all(len(r["mean_cosine"]) == 3 and "loop_width" in r for r in payload["runs"])
    for name in ("depth.parquet", "effective.parquet", "anneal.parquet", "theory.parquet", "particles.png",
                 "report.html"):
        assert (out / name).is_file(), name
