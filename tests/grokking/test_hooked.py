"""The hooked GPT-style model: architecture, attention against an independent reference, hooks,
temperature scoping."""

import math

import pytest
import torch

from thermolens.models import hooked
from thermolens.models.hooked import HookedConfig, HookedTransformer, nanda2023


def _reference_attention(model, x):
    """Causal attention of block 0 via torch's scaled_dot_product_attention (independent path)."""
    block = model.blocks[0]
    q = torch.einsum("bpd,hde->bhpe", x, block.W_Q) + block.b_QKV[:128].view(4, 1, 32)
    k = torch.einsum("bpd,hde->bhpe", x, block.W_K) + block.b_QKV[128:256].view(4, 1, 32)
    v = torch.einsum("bpd,hde->bhpe", x, block.W_V) + block.b_QKV[256:].view(4, 1, 32)
    z = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)  # (b, h, p, e)
    return z.transpose(1, 2).reshape(x.shape[0], x.shape[1], 128) @ block.W_O + block.b_O


def _tokens(p=113, n=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    ab = torch.randint(0, p, (n, 2), generator=g)
    return torch.cat([ab, torch.full((n, 1), p)], dim=1)


def test_nanda_preset_parameter_count_and_init():
    model = HookedTransformer(nanda2023(113), seed=0)
    # Shapes of Nanda et al. 2023 (arXiv:2301.05217) as TransformerLens builds them, biases included:
    # W_E 114x128 + W_pos 3x128 + W_QKV 3x4x128x32 + b 3x128 + W_O 4x32x128 + b_O 128
    # + W_in 128x512 + b_in 512 + W_out 512x128 + b_out 128 + W_U 128x113 + b_U 113 = 227,313.
    assert sum(p.numel() for p in model.parameters()) == 227_313
    # TransformerLens "gpt2" init: std 0.8 / sqrt(d_model) = 0.0707 for d_model = 128
    assert model.blocks[0].W_in.std().item() == pytest.approx(0.8 / math.sqrt(128), rel=0.02)
    assert torch.all(model.blocks[0].b_in == 0)


def test_attention_matches_sdpa_reference():
    model = HookedTransformer(nanda2023(113), seed=1)
    tokens = _tokens(n=50)
    _, cache = model.run_with_cache(tokens)
    expected = _reference_attention(model, cache[hooked.resid_pre(0)])
    torch.testing.assert_close(cache[hooked.attn_out(0)], expected, rtol=1e-5, atol=1e-5)


def test_T1_pattern_is_the_models_softmax_and_mask_is_causal():
    model = HookedTransformer(nanda2023(113), seed=2)
    _, cache = model.run_with_cache(_tokens(n=20))
    logits, mask = cache[hooked.attn_logits(0)], cache[hooked.attn_mask(0)]
    assert torch.equal(mask, torch.tril(torch.ones(3, 3, dtype=torch.bool)))
    expected = torch.softmax(logits.masked_fill(~mask, float("-inf")), dim=-1)
    torch.testing.assert_close(cache[hooked.attn_pattern(0)], expected)
    assert torch.all(cache[hooked.attn_pattern(0)][..., ~mask] == 0)


def test_table_path_and_last_only_agree_with_direct_path():
    model = HookedTransformer(nanda2023(113), seed=3)
    tokens = _tokens(n=400)  # batch > d_vocab: first layer projects the (token, position) table
    full = model(tokens)
    direct = torch.cat([model(tokens[i:i + 100]) for i in range(0, 400, 100)])  # batch < d_vocab
    torch.testing.assert_close(full, direct, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model(tokens, last_only=True), full[:, -1:], rtol=1e-5, atol=1e-5)


def test_temperature_scope_and_per_head_temperature():
    model = HookedTransformer(nanda2023(113), seed=4)
    tokens = _tokens(n=10)
    before = model(tokens)
    with model.temperature(2.0):
        _, hot = model.run_with_cache(tokens)
    l, mask = hot[hooked.attn_logits(0)], hot[hooked.attn_mask(0)]
    torch.testing.assert_close(hot[hooked.attn_pattern(0)], torch.softmax((l / 2).masked_fill(~mask, -torch.inf), -1))
    torch.testing.assert_close(model(tokens), before)  # nothing stays attached after the block
    temps = torch.tensor([0.5, 1.0, 2.0, 4.0])
    _, cache = model.run_with_cache(tokens, temperature=temps)
    for h in range(4):
        expected = torch.softmax((l[:, h] / temps[h]).masked_fill(~mask, -torch.inf), -1)
        torch.testing.assert_close(cache[hooked.attn_pattern(0)][:, h], expected)
    per_head = HookedTransformer(nanda2023(113, temperature=(0.5, 1.0, 2.0, 4.0)), seed=4)
    torch.testing.assert_close(per_head(tokens), model(tokens, temperature=temps))


def test_hooks_replace_activations_for_one_call_only():
    model = HookedTransformer(nanda2023(113), seed=5)
    tokens = _tokens(n=300)
    base = model(tokens)
    uniform = model(tokens, hooks={hooked.attn_pattern(0): lambda p: torch.where(p > 0, 1.0, 0.0) / (p > 0).sum(-1, keepdim=True)})
    assert not torch.allclose(uniform, base)
    # a hook on the embedding forces the direct path and must give the same numbers when it is the identity
    torch.testing.assert_close(model(tokens, hooks={hooked.embed(): lambda x: None}), base, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model(tokens), base)


def test_general_config_layernorm_gelu_bidirectional_multilayer():
    cfg = HookedConfig(n_layers=2, d_model=32, n_heads=2, d_head=16, d_mlp=64, n_ctx=8, d_vocab=50,
                       d_vocab_out=None, act="gelu", layernorm=True, causal=False)
    model = HookedTransformer(cfg, seed=0)
    tokens = torch.randint(0, 50, (4, 8), generator=torch.Generator().manual_seed(0))
    logits, cache = model.run_with_cache(tokens)
    assert logits.shape == (4, 8, 50)
    assert cache[hooked.attn_logits(1)].shape == (4, 2, 8, 8)
    assert bool(cache[hooked.attn_mask(1)].all())  # bidirectional: every key visible
    torch.testing.assert_close(model(tokens, last_only=True), logits[:, -1:], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kwargs,words", [
    (dict(n_heads=0), "n_heads"),
    (dict(act="tanh"), "act"),
    (dict(temperature=0.0), "positive"),
    (dict(temperature=(1.0, 2.0)), "one per head"),
])
def test_config_validation(kwargs, words):
    with pytest.raises(ValueError, match=words):
        HookedConfig(**kwargs)


def test_bad_temperature_and_tokens():
    model = HookedTransformer(nanda2023(7), seed=0)
    with pytest.raises(ValueError, match="positive"):
        model(torch.zeros(1, 3, dtype=torch.long), temperature=-1.0)
    with pytest.raises(ValueError, match="n_ctx"):
        model(torch.zeros(1, 5, dtype=torch.long))


def test_stop_after_caches_up_to_the_named_point_only():
    model = HookedTransformer(nanda2023(113), seed=6)
    tokens = _tokens(n=30)
    _, full = model.run_with_cache(tokens)
    out, cache = model.run_with_cache(tokens, stop_after=hooked.attn_logits(0))
    assert out is None
    torch.testing.assert_close(cache[hooked.attn_logits(0)], full[hooked.attn_logits(0)])
    assert torch.equal(cache[hooked.attn_mask(0)], full[hooked.attn_mask(0)])
    assert hooked.attn_pattern(0) not in cache and hooked.mlp_post(0) not in cache
    with pytest.raises(ValueError, match="not a hook point"):
        model.run_with_cache(tokens, stop_after="blocks.7.attn.logits")
