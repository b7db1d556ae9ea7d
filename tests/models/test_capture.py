"""Captured logits reproduce each model's own attention probabilities (issue 2, part 5).

Reference: the model's own ``output_attentions=True`` with transformers' eager attention, same
weights, same padded batch. Target from the issue: max abs difference < 1e-5.
"""

from __future__ import annotations

import pytest
import torch

from thermolens.models import capture_logits, from_pretrained_model, names, temperature


def _own_attentions(loaded, ids, mask):
    model = loaded.model
    before = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            out = loaded.base_model(input_ids=ids, attention_mask=mask, output_attentions=True)
    finally:
        model.set_attn_implementation(before)
    return out.attentions


def _window(loaded, layer):
    """The sliding window of ``layer`` as the config states it (None: full attention)."""
    config = loaded.model.config
    window = getattr(config, "sliding_window", None)
    types = getattr(config, "layer_types", None)  # Qwen2/Gemma-2 name each layer's kind; Mistral slides everywhere
    if window is None or (types is not None and types[layer] != "sliding_attention"):
        return None
    return int(window)


def _expected_valid(loaded, layer, mask, n):
    """Keys that exist by definition: real tokens; for causal models j <= i; in a window of w, i - j < w."""
    i, j = torch.arange(n)[:, None], torch.arange(n)[None, :]
    keys = torch.ones(n, n, dtype=torch.bool)
    if loaded.is_causal:
        keys &= j <= i
    window = _window(loaded, layer)
    if window is not None:
        keys &= i - j < window
    return mask[:, None, None, :].bool() & keys


FAMILIES = ["bert", "bert-bare", "gpt2", "llama", "mistral", "qwen2"]


@pytest.mark.parametrize("family", FAMILIES)
def test_softmax_of_captured_logits_is_the_models_pattern(tiny_models, padded_batch, family):
    loaded = tiny_models[family]
    ids, mask = padded_batch()
    captured = capture_logits(loaded, ids, mask)
    own = _own_attentions(loaded, ids, mask)
    assert captured.layers == tuple(range(loaded.n_layers))
    for layer in captured.layers:
        logits = captured.logits[layer]
        assert logits.dtype == torch.float32
        assert logits.shape == (3, loaded.n_heads, 12, 12)
        # The mask marks exactly the keys that exist: padding, the future (causal), outside the window.
        valid = captured.mask[layer].expand_as(logits)
        expected = _expected_valid(loaded, layer, mask, 12).expand_as(logits)
        assert torch.equal(valid, expected)
        assert torch.isfinite(logits[valid]).all() and torch.isneginf(logits[~valid]).all()
        # Rows without any valid key (padding queries whose window holds only padding) are left out.
        rows = valid.any(dim=-1)
        pattern = torch.softmax(logits, dim=-1)
        assert (pattern - own[layer])[rows].abs().max().item() < 1e-5
    if _window(loaded, loaded.n_layers - 1) is not None:  # the window is really narrower than the sequence
        assert captured.n_keys(loaded.n_layers - 1)[0, 0].tolist() == [1, 2, 3] + [4] * 9


@pytest.mark.parametrize("family", ["bert", "gpt2", "llama", "mistral", "qwen2"])
def test_unpadded_batch(tiny_models, padded_batch, family):
    # Without padding, sdpa's mask builder may return no mask at all (causal: is_causal=True).
    loaded = tiny_models[family]
    ids, _ = padded_batch()
    mask = torch.ones_like(ids)
    captured = capture_logits(loaded, ids, mask)
    own = _own_attentions(loaded, ids, mask)
    for layer in captured.layers:
        assert (torch.softmax(captured.logits[layer], -1) - own[layer]).abs().max().item() < 1e-5
        window = _window(loaded, layer) or 12
        expected = [min(i + 1, window) for i in range(12)] if loaded.is_causal else [12] * 12
        assert captured.n_keys(layer)[0, 0].tolist() == expected


def test_soft_capping_and_sliding_window(tiny_models, padded_batch):
    loaded = tiny_models["gemma2"]  # runs on eager attention: sdpa has no soft-capping
    ids, mask = padded_batch()
    captured = capture_logits(loaded, ids, mask)
    own = _own_attentions(loaded, ids, mask)
    for layer in captured.layers:
        # Padding queries whose window holds only padding have no valid key (n = 0): the model's
        # uniform row there is an artefact of its -inf mask, and the lens leaves those rows out.
        rows = captured.n_keys(layer).expand(-1, loaded.n_heads, -1) > 0
        diff = torch.softmax(captured.logits[layer], -1) - own[layer]
        assert diff[rows].abs().max().item() < 1e-5
        assert layer == 1 or not rows.all()  # the window case is really exercised
        finite = captured.logits[layer][captured.mask[layer].expand_as(captured.logits[layer])]
        assert finite.abs().max().item() <= 5.0 and finite.abs().max().item() > 4.0  # c = 5 reached
    # Sliding-window layers (0 and 2) see at most 4 keys; the full-attention layer 1 sees all before.
    assert captured.n_keys(0)[0, 0].tolist() == [1, 2, 3] + [4] * 9
    assert captured.n_keys(1)[0, 0].tolist() == list(range(1, 13))
    # At T = 2 the soft-capped pattern is softmax(l / 2) of the capped logits (eager fallback).
    with temperature(loaded, 2.0), torch.no_grad():
        hot = loaded.base_model(input_ids=ids, attention_mask=mask, output_attentions=True).attentions
    rows = captured.n_keys(0).expand(-1, loaded.n_heads, -1) > 0
    assert (torch.softmax(captured.logits[0] / 2, -1) - hot[0])[rows].abs().max().item() < 1e-6


def test_bundled_minilm_capture_matches_its_attention(minilm):
    assert (minilm.family, minilm.n_layers, minilm.n_heads, minilm.d_head) == ("bert", 6, 12, 32)
    enc = minilm.tokenizer(
        ["Attention is a softmax over keys.", "A phase transition?"], padding=True, return_tensors="pt"
    )
    ids, mask = enc["input_ids"], enc["attention_mask"]
    assert (mask == 0).any()  # the batch is padded
    captured = capture_logits(minilm, ids, mask)
    own = _own_attentions(minilm, ids, mask)
    for layer in range(6):
        diff = (torch.softmax(captured.logits[layer], -1) - own[layer]).abs().max().item()
        assert diff < 1e-5, (layer, diff)
    # The logits are q.k / sqrt(d_head) of the first layer, recomputed here from the weights.
    with torch.no_grad():
        h = minilm.model.embeddings(input_ids=ids)
        attn = minilm.model.encoder.layer[0].attention.self
        q = attn.query(h).view(2, -1, 12, 32).transpose(1, 2)
        k = attn.key(h).view(2, -1, 12, 32).transpose(1, 2)
        expected = q @ k.transpose(-1, -2) / 32**0.5
    valid = captured.mask[0].expand_as(expected)
    torch.testing.assert_close(captured.logits[0][valid], expected[valid], atol=1e-5, rtol=1e-5)


def test_layer_selection_and_names(tiny_models, padded_batch):
    loaded = tiny_models["gpt2"]
    ids, mask = padded_batch()
    captured = capture_logits(loaded, ids, mask, layers=[1])
    assert captured.layers == (1,)
    assert list(captured.by_name()) == [names.attn_logits(1)] == ["blocks.1.attn.logits"]
    full = capture_logits(loaded, ids, mask)
    # Layer 0 ran on sdpa in the first pass and eagerly in the second: equal to float32 rounding.
    torch.testing.assert_close(captured.logits[1], full.logits[1], rtol=0, atol=1e-6)
    assert captured.n_keys(1)[0, 0].tolist() == list(range(1, 13))  # causal: query i sees i + 1 keys


def test_model_config_is_restored_after_capture(tiny_models, padded_batch):
    loaded = tiny_models["bert"]
    before = loaded.model.config._attn_implementation
    capture_logits(loaded, *padded_batch(), layers=0)
    assert loaded.model.config._attn_implementation == before


def test_non_finite_logits_name_layer_and_head(padded_batch):
    import transformers as tf

    torch.manual_seed(0)
    config = tf.BertConfig(
        vocab_size=101, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37
    )
    model = tf.BertModel(config)
    with torch.no_grad():
        # Head 2 of layer 1 gets an infinite query bias.
        model.encoder.layer[1].attention.self.query.bias[16:24] = float("inf")
    loaded = from_pretrained_model(model)
    with pytest.raises(ValueError, match=r"layer 1 head 2"):
        capture_logits(loaded, *padded_batch())
    assert model.config._attn_implementation == "sdpa"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(layers=[5]), "out of range"),
        (dict(layers=[]), "no layers"),
    ],
)
def test_bad_layer_selection(tiny_models, padded_batch, kwargs, match):
    with pytest.raises(ValueError, match=match):
        capture_logits(tiny_models["bert"], *padded_batch(), **kwargs)


def test_bad_inputs(tiny_models):
    loaded = tiny_models["bert"]
    with pytest.raises(ValueError, match="integer tensor"):
        capture_logits(loaded, torch.zeros(2, 3), None)
    with pytest.raises(ValueError, match="differs"):
        capture_logits(loaded, torch.zeros(2, 3, dtype=torch.long), torch.ones(2, 4))
