"""Temperature inside the forward pass (issue 2, part 6: the `propagated` sweep mode).

Independent reference: heating head h of layer l to T is the same as dividing that head's query
projection (weights and bias) by T, since l = (q/T).k * scaling + mask and the masks here are pure
0/-inf masks (rotary embeddings are linear in q, so this holds for Llama too). The reference model
is a copy with those weights scaled and no thermolens code active.
"""

from __future__ import annotations

import copy

import pytest
import torch

from thermolens.models import attention, capture_logits, temperature, temperature_table

# Mistral and Qwen2 add sliding windows (pure 0/-inf masks, so the reference above still holds) and,
# for Qwen2, biased query projections (divided by T with the weights).
FAMILIES = ["bert", "gpt2", "llama", "mistral", "qwen2"]


def _query_projection(loaded, layer):
    base = loaded.base_model
    if loaded.family == "bert":
        return base.encoder.layer[layer].attention.self.query, 0  # Linear: rows are outputs
    if loaded.family == "gpt2":
        return base.h[layer].attn.c_attn, 1  # Conv1D: columns are outputs, queries first
    return base.layers[layer].self_attn.q_proj, 0


def _scaled_copy(loaded, table):
    """A copy whose query projection of head (l, h) is divided by table[l, h]."""
    clone = copy.deepcopy(loaded)
    d = clone.d_head
    with torch.no_grad():
        for layer in range(clone.n_layers):
            proj, axis = _query_projection(clone, layer)
            for head in range(clone.n_heads):
                t = float(table[layer, head])
                sl = slice(head * d, (head + 1) * d)
                if axis == 0:
                    proj.weight[sl] /= t
                else:
                    proj.weight[:, sl] /= t
                if proj.bias is not None:
                    proj.bias[sl] /= t
    return clone


def _hidden(loaded, ids, mask):
    with torch.no_grad():
        return loaded.base_model(input_ids=ids, attention_mask=mask).last_hidden_state


@pytest.mark.parametrize("family", [*FAMILIES, "gemma2"])
def test_t_equal_one_reproduces_the_model(tiny_models, padded_batch, family):
    loaded = tiny_models[family]
    ids, mask = padded_batch()
    plain = _hidden(loaded, ids, mask)
    with temperature(loaded, 1.0) as table:
        inside = _hidden(loaded, ids, mask)
    assert torch.equal(table, torch.ones(loaded.n_layers, loaded.n_heads, dtype=torch.float64))
    torch.testing.assert_close(inside, plain, rtol=0, atol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(
    "T, layers, heads",
    [(2.0, None, None), (0.5, [1], None), (3.0, [0, 2], [1, 3])],
    ids=["all-heads", "one-layer", "some-heads"],
)
def test_heating_equals_scaled_queries(tiny_models, padded_batch, family, T, layers, heads):
    loaded = tiny_models[family]
    ids, mask = padded_batch()
    table = temperature_table(loaded.n_layers, loaded.n_heads, T, layers=layers, heads=heads)
    expected = _hidden(_scaled_copy(loaded, table), ids, mask)
    with temperature(loaded, T, layers=layers, heads=heads):
        heated = _hidden(loaded, ids, mask)
    torch.testing.assert_close(heated, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(heated, _hidden(loaded, ids, mask), atol=1e-4)  # it did change


@pytest.mark.parametrize("family", FAMILIES)
def test_per_head_temperatures(tiny_models, padded_batch, family):
    loaded = tiny_models[family]
    ids, mask = padded_batch()
    g = torch.Generator().manual_seed(1)
    T = 0.3 + 3 * torch.rand(loaded.n_layers, loaded.n_heads, generator=g, dtype=torch.float64)
    expected = _hidden(_scaled_copy(loaded, T), ids, mask)
    with temperature(loaded, T):
        heated = _hidden(loaded, ids, mask)
    torch.testing.assert_close(heated, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_first_layer_pattern_at_t2_is_softmax_of_logits_over_2(tiny_models, padded_batch, family):
    loaded = tiny_models[family]
    ids, mask = padded_batch()
    logits = capture_logits(loaded, ids, mask, layers=0).logits[0]
    model = loaded.model
    model.set_attn_implementation("eager")  # so the model itself reports its pattern
    try:
        with temperature(loaded, 2.0), torch.no_grad():
            own = loaded.base_model(input_ids=ids, attention_mask=mask, output_attentions=True).attentions
    finally:
        model.set_attn_implementation("sdpa")
    rows = torch.isfinite(logits).any(dim=-1)  # Mistral: padding queries whose window holds only padding
    assert (torch.softmax(logits / 2.0, dim=-1) - own[0])[rows].abs().max().item() < 1e-6


def test_capture_inside_temperature_sees_the_heated_upstream(tiny_models, padded_batch):
    loaded = tiny_models["llama"]
    ids, mask = padded_batch()
    table = temperature_table(loaded.n_layers, loaded.n_heads, 2.5, layers=0)
    reference = capture_logits(_scaled_copy(loaded, table), ids, mask, layers=[1])
    with temperature(loaded, 2.5, layers=0):
        heated = capture_logits(loaded, ids, mask, layers=[0, 1])
    plain = capture_logits(loaded, ids, mask, layers=[0, 1])
    # Layer 0 logits are l itself (not l/T); layer 1 logits move because layer 0 was heated.
    torch.testing.assert_close(heated.logits[0], plain.logits[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(heated.logits[1], reference.logits[1], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(heated.logits[1], plain.logits[1], atol=1e-4)


def test_heated_forward_keeps_the_fast_kernel(tiny_models, padded_batch, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("the heated forward pass must not fall back to eager attention")

    monkeypatch.setattr(attention, "_eager_attention", forbidden)
    loaded = tiny_models["llama"]
    with temperature(loaded, torch.full((loaded.n_layers, loaded.n_heads), 1.7, dtype=torch.float64)):
        _hidden(loaded, *padded_batch())


def test_nested_blocks_innermost_wins(tiny_models, padded_batch):
    loaded = tiny_models["gpt2"]
    ids, mask = padded_batch()
    with temperature(loaded, 2.0):
        outer = _hidden(loaded, ids, mask)
        with temperature(loaded, 0.5):
            inner = _hidden(loaded, ids, mask)
        again = _hidden(loaded, ids, mask)
    with temperature(loaded, 0.5):
        direct = _hidden(loaded, ids, mask)
    torch.testing.assert_close(inner, direct, rtol=0, atol=0)
    torch.testing.assert_close(outer, again, rtol=0, atol=0)
    # Per-head tables nest too (and equal tables are told apart).
    table = torch.tensor([[0.5, 1.0, 2.0, 4.0]] * loaded.n_layers, dtype=torch.float64)
    with temperature(loaded, table), temperature(loaded, table * 2), temperature(loaded, table * 2):
        innermost = _hidden(loaded, ids, mask)
    with temperature(loaded, table * 2):
        torch.testing.assert_close(innermost, _hidden(loaded, ids, mask), rtol=0, atol=0)
    assert not attention._FRAMES


@pytest.mark.parametrize("family", FAMILIES)
def test_model_is_unchanged_after_the_block_also_on_error(tiny_models, padded_batch, family):
    loaded = tiny_models[family]
    ids, mask = padded_batch()
    before_impl = loaded.model.config._attn_implementation
    before = _hidden(loaded, ids, mask)
    hooks = [(dict(m._forward_hooks), dict(m._forward_pre_hooks)) for m in loaded.model.modules()]
    with pytest.raises(RuntimeError, match="boom"):
        with temperature(loaded, 4.0):
            _hidden(loaded, ids, mask)
            raise RuntimeError("boom")
    assert loaded.model.config._attn_implementation == before_impl
    assert not attention._FRAMES and not attention._SAVED_IMPL
    assert hooks == [(dict(m._forward_hooks), dict(m._forward_pre_hooks)) for m in loaded.model.modules()]
    torch.testing.assert_close(_hidden(loaded, ids, mask), before, rtol=0, atol=0)


@pytest.mark.parametrize(
    "T, kwargs, match",
    [
        (0.0, {}, "finite and > 0"),
        (-1.0, {}, "finite and > 0"),
        (float("nan"), {}, "finite and > 0"),
        (torch.ones(2, 2), {}, "shape"),
        (2.0, {"layers": [7]}, "out of range"),
        (2.0, {"heads": [4]}, "out of range"),
        (2.0, {"heads": ["a"]}, "integers"),
    ],
)
def test_bad_temperature_arguments(tiny_models, T, kwargs, match):
    loaded = tiny_models["bert"]
    with pytest.raises(ValueError, match=match):
        with temperature(loaded, T, **kwargs):
            pass
    assert loaded.model.config._attn_implementation == "sdpa"


@pytest.mark.parametrize("per_head", [False, True])
def test_additive_float_biases_are_heated_too(tiny_models, padded_batch, per_head):
    # An ALiBi-like bias -m_h |i - j| (slopes 2^-h as in Press et al. 2021, arXiv:2108.12409),
    # passed as a 4-D float mask that transformers hands to attention unchanged.
    loaded = tiny_models["bert-bare"]
    ids, pad = padded_batch()
    l0 = capture_logits(loaded, ids, pad, layers=0).logits[0]  # q.k / sqrt(d), padding -inf
    slopes = 2.0 ** -torch.arange(1.0, 5.0)
    pos = torch.arange(12.0)
    bias = -slopes.view(1, 4, 1, 1) * (pos[None, :] - pos[:, None]).abs()
    padding = ~pad.bool()[:, None, None, :]
    bias = bias.expand(3, 4, 12, 12).masked_fill(padding, torch.finfo(torch.float32).min)
    T = torch.tensor([[0.5, 1.0, 2.0, 4.0]] * loaded.n_layers, dtype=torch.float64) if per_head else 2.0
    t = torch.as_tensor(T, dtype=torch.float32)[0].view(1, -1, 1, 1) if per_head else 2.0
    expected = torch.softmax((l0 + bias) / t, dim=-1)  # softmax(l / T), l including the bias
    model = loaded.model
    with torch.no_grad():
        with temperature(loaded, T):
            sdpa_out = model(input_ids=ids, attention_mask=bias).last_hidden_state
        model.set_attn_implementation("eager")
        try:
            with temperature(loaded, T):
                out = model(input_ids=ids, attention_mask=bias, output_attentions=True)
        finally:
            model.set_attn_implementation("sdpa")
    assert (out.attentions[0] - expected).abs().max().item() < 1e-6
    torch.testing.assert_close(sdpa_out, out.last_hidden_state, rtol=1e-5, atol=1e-5)
