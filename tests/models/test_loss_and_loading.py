"""Model loss at temperature (issue 2, part 6) and loading the bundled, local and hub models (part 5)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from thermolens.models import load_model, mlm_corruption, model_loss, temperature


def test_causal_loss_matches_a_hand_computed_cross_entropy(tiny_models, padded_batch):
    loaded = tiny_models["gpt2"]
    ids, mask = padded_batch()
    loss = model_loss(loaded, ids, mask)
    with torch.no_grad():
        logits = loaded.model(input_ids=ids, attention_mask=mask).logits
    # Next-token cross-entropy over pairs (t, t+1) where token t+1 is real (right padding).
    targets = ids[:, 1:]
    keep = mask[:, 1:].bool()
    expected = torch.nn.functional.cross_entropy(logits[:, :-1][keep], targets[keep])
    assert math.isfinite(loss)
    assert loss == pytest.approx(float(expected), rel=1e-5)
    # Random weights over 101 tokens: loss near log(101) = 4.62 (uniform predictor).
    assert abs(loss - math.log(101)) < 0.5


def test_loss_is_finite_for_llama_and_moves_with_temperature(tiny_models, padded_batch):
    loaded = tiny_models["llama"]
    ids, mask = padded_batch()
    plain = model_loss(loaded, ids, mask)
    with temperature(loaded, 1.0):
        assert model_loss(loaded, ids, mask) == pytest.approx(plain, abs=1e-6)
    with temperature(loaded, 0.05):
        cold = model_loss(loaded, ids, mask)
    assert math.isfinite(cold) and cold != pytest.approx(plain, abs=1e-6)


def test_mlm_loss_is_finite_seeded_and_scores_only_masked_positions(tiny_models, padded_batch):
    loaded = tiny_models["bert"]
    assert loaded.loss_kind == "mlm"
    ids, mask = padded_batch(seq_len=40)
    a = model_loss(loaded, ids, mask, seed=3)
    b = model_loss(loaded, ids, mask, seed=3)
    c = model_loss(loaded, ids, mask, seed=4)
    assert math.isfinite(a) and a == b and a != c
    # Random 30522-way head: loss near log(30522) = 10.3.
    assert abs(a - math.log(30522)) < 1.0


def test_mlm_corruption_follows_the_80_10_10_scheme():
    # Devlin et al. 2018 (arXiv:1810.04805) §3.1: 15% chosen; of those 80% [MASK], 10% random, 10% kept.
    n = 200_000
    ids = torch.randint(5, 1000, (1, n), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[0, -1000:] = 0  # padding is never chosen
    corrupted, labels = mlm_corruption(ids, mask, mask_token_id=3, vocab_size=1000, seed=0)
    chosen = labels != -100
    assert not chosen[0, -1000:].any()
    assert torch.equal(labels[chosen], ids[chosen])
    assert torch.equal(corrupted[~chosen], ids[~chosen])
    frac = chosen.float().mean().item()
    masked = (corrupted[chosen] == 3).float().mean().item()
    kept = (corrupted[chosen] == ids[chosen]).float().mean().item()
    # Binomial standard errors at n = 2e5 are < 0.002; 5 sigma bands.
    assert frac == pytest.approx(0.15 * (n - 1000) / n, abs=0.004)
    assert masked == pytest.approx(0.8, abs=0.01)
    assert kept == pytest.approx(0.1 + 0.1 / 1000, abs=0.01)  # a random token can equal the original


def test_mlm_corruption_always_scores_one_token_and_skips_specials():
    ids = torch.tensor([[101, 7, 102, 0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    _, labels = mlm_corruption(ids, mask, mask_token_id=103, vocab_size=200, special_ids=(0, 101, 102))
    assert labels.tolist() == [[-100, 7, -100, -100]]
    with pytest.raises(ValueError, match="no real, non-special token"):
        mlm_corruption(
            ids[:, [0, 2]], mask[:, [0, 2]], mask_token_id=103, vocab_size=200, special_ids=(101, 102)
        )


def test_no_head_means_no_loss(minilm, tiny_models, padded_batch):
    assert minilm.loss_kind is None and not minilm.has_lm_head
    enc = minilm.tokenizer(["no head to score"], return_tensors="pt")
    assert model_loss(minilm, enc["input_ids"], enc["attention_mask"]) is None
    assert model_loss(tiny_models["bert-bare"], *padded_batch()) is None


def test_loaded_facts(tiny_models):
    bert, gpt2, llama = (tiny_models[f] for f in ("bert", "gpt2", "llama"))
    assert (bert.family, bert.is_causal, bert.loss_kind) == ("bert", False, "mlm")
    assert (gpt2.family, gpt2.is_causal, gpt2.loss_kind) == ("gpt2", True, "causal")
    assert (gpt2.n_layers, gpt2.n_heads) == (3, 4)
    assert (llama.family, llama.n_heads, llama.n_kv_heads, llama.d_head) == ("llama", 4, 2, 8)
    assert not llama.model.training


def test_local_directory_round_trip(tmp_path, tiny_models, padded_batch):
    loaded = tiny_models["gpt2"]
    loaded.model.save_pretrained(tmp_path / "tiny")  # safetensors
    again = load_model(str(tmp_path / "tiny"))
    assert (again.family, again.loss_kind, again.n_layers) == ("gpt2", "causal", 3)
    ids, mask = padded_batch()
    assert model_loss(again, ids, mask) == pytest.approx(model_loss(loaded, ids, mask), rel=1e-6)


@pytest.mark.parametrize(
    "name, match",
    [
        ("/no/such/model/dir", "does not exist"),
        ("./missing-model", "does not exist"),
        ("someone/not-a-cached-model", "needs network access or a local path"),
        ("bad name with spaces!", "needs network access or a local path"),
        ("", "local directory or a Hugging Face name"),
    ],
)
def test_bad_model_names(monkeypatch, name, match):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match=match):
        load_model(name)


def test_directory_without_config_and_file_paths(tmp_path):
    with pytest.raises(ValueError, match="no config.json"):
        load_model(str(tmp_path))
    f = tmp_path / "weights.safetensors"
    f.write_bytes(b"x")
    with pytest.raises(ValueError, match="is a file"):
        load_model(str(f))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="cannot load the model"):
        load_model(str(tmp_path / "broken"))


def test_alibi_models_that_bypass_the_interface_are_refused():
    # Bloom (ALiBi) computes attention inside its own module in transformers 5.x: no exact capture.
    import transformers as tf

    from thermolens.models import from_pretrained_model

    model = tf.BloomForCausalLM(tf.BloomConfig(vocab_size=101, hidden_size=32, n_layer=2, n_head=4))
    with pytest.raises(ValueError, match="'bloom' does not route attention"):
        from_pretrained_model(model)
    with pytest.raises(ValueError, match="'bloom' does not route attention"):
        with temperature(model, 2.0):
            pass


def test_temperature_accepts_a_plain_transformers_model(tiny_models, padded_batch):
    loaded = tiny_models["gpt2"]
    ids, mask = padded_batch()
    with temperature(loaded.model, 3.0, layers=1) as table:
        raw = model_loss(loaded, ids, mask)
    with temperature(loaded, 3.0, layers=1):
        wrapped = model_loss(loaded, ids, mask)
    assert raw == wrapped and table[1].tolist() == [3.0] * 4 and table[0].tolist() == [1.0] * 4
    for layers in (torch.tensor([1]), np.array([1]), torch.tensor(1), np.int64(1)):
        with temperature(loaded.model, 3.0, layers=layers) as same:
            assert torch.equal(same, table)
