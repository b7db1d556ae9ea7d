"""The LM training loop (contract D of issue 8): config checks, schedule, learning, determinism,
the optimizer hook and the saved member."""

from __future__ import annotations

import math

import pytest
import torch

from thermolens import io
from thermolens.experiments.family import lm

SOURCE = "markov:h=1.0,order=1,vocab=8,seed=0"
MODEL = {"n_layers": 1, "d_model": 32, "n_heads": 2, "d_head": 16, "d_mlp": 64}


def small(**overrides) -> lm.LMConfig:
    base = dict(model=MODEL, source=SOURCE, seq_len=16, batch_size=16, budget_tokens=16 * 16 * 120,
                lr=1e-2, warmup_steps=10, eval_every=40, eval_batches=4, seed=0)
    base.update(overrides)
    return lm.LMConfig(**base)


@pytest.fixture(scope="module")
def trained() -> lm.LMRun:
    return lm.train_lm(small())


def test_config_rejects_derived_fields_and_tiny_budgets():
    with pytest.raises(ValueError, match="n_ctx"):
        small(model={**MODEL, "n_ctx": 16})
    with pytest.raises(ValueError, match="unknown"):
        small(model={**MODEL, "width": 3})
    with pytest.raises(ValueError, match="less than one step"):
        small(budget_tokens=100)
    with pytest.raises(ValueError, match="optimizer"):
        small(optimizer="lion")
    with pytest.raises(ValueError, match="seq_len"):
        small(seq_len=1)


def test_bad_source_spec_shows_the_grammar():
    with pytest.raises(ValueError, match="markov"):
        lm.train_lm(small(source="zipf:3"))


def test_schedule_warms_up_linearly_then_decays_to_a_tenth():
    cfg = small()  # 120 steps, warm-up 10
    assert lm.lr_factor(0, cfg) == pytest.approx(0.1)  # (step + 1) / warmup_steps, as in the grokking loop
    assert lm.lr_factor(9, cfg) == pytest.approx(1.0)
    assert lm.lr_factor(cfg.steps - 1, cfg) == pytest.approx(lm.FINAL_LR_FRACTION, abs=1e-3)
    factors = [lm.lr_factor(s, cfg) for s in range(10, cfg.steps)]
    assert all(a >= b for a, b in zip(factors, factors[1:]))
    assert lm.lr_factor(cfg.steps - 1, small(lr_schedule="constant")) == 1.0


def test_learns_the_source_down_towards_its_entropy_rate(trained):
    run = trained
    assert run.steps == 120 and run.tokens == 120 * 16 * 16
    assert list(run.history["step"]) == [40, 80, 120]
    # An untrained model predicts ~uniformly: log2(8) = 3 bits; a first-order Markov source of entropy
    # rate 1 bit/token (exact, from the source) is the floor no predictor beats on average.
    assert run.entropy_rate == pytest.approx(1.0, abs=1e-6)
    assert run.val_bits < 1.3
    # cross-entropy >= entropy rate, up to the sampling noise of 4 x 16 x 16 validation tokens
    assert run.val_bits > run.entropy_rate - 0.05
    assert run.history["val_loss"].iloc[0] > run.history["val_loss"].iloc[-1]


def test_same_seed_same_numbers(trained):
    again = lm.train_lm(small())
    assert again.history["val_loss"].tolist() == trained.history["val_loss"].tolist()
    other = lm.train_lm(small(seed=1))
    assert other.history["val_loss"].tolist() != trained.history["val_loss"].tolist()


def test_make_optimizer_replaces_adamw():
    calls = []

    def frozen(model, config):
        calls.append(config)
        return torch.optim.SGD(model.parameters(), lr=0.0)

    run = lm.train_lm(small(budget_tokens=16 * 16 * 40), make_optimizer=frozen)
    assert len(calls) == 1
    untrained = lm.HookedTransformer(run.model_config, seed=0)
    for (name, p), q in zip(run.model.named_parameters(), untrained.parameters()):
        assert torch.equal(p, q), name  # lr 0: the optimizer given was the one used


def test_member_round_trip(tmp_path, trained):
    run = lm.train_lm(small(budget_tokens=16 * 16 * 40), run_dir=tmp_path)
    meta = io.read_json(tmp_path / lm.MEMBER_JSON)
    assert meta["lm_config"]["source"] == SOURCE and "git_commit" in meta and "thermolens_version" in meta
    assert meta["summary"]["val_loss"] == pytest.approx(run.val_loss)
    model, _ = lm.load_member(tmp_path)
    tokens = torch.randint(0, 8, (3, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(tokens), run.model(tokens))
    assert io.read_table(tmp_path / lm.HISTORY)["val_bits"].iloc[-1] == pytest.approx(run.val_loss / math.log(2))
    with pytest.raises(ValueError, match="not a trained member"):
        lm.load_member(tmp_path / "nothing")
