"""torch.nn.MultiheadAttention: captured logits reproduce the module's own attention weights.

Reference: the module's ``need_weights=True, average_attn_weights=False`` output (PyTorch's own
computation), max abs difference < 1e-5 as for the transformer architectures.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from thermolens.models.mha import mha_forward, mha_logits, mha_temperature

E, H, B, L, S = 16, 4, 3, 5, 7


def _module(batch_first=True, **kwargs):
    torch.manual_seed(0)
    return nn.MultiheadAttention(E, H, batch_first=batch_first, **kwargs).eval()


def _inputs(batch_first=True, kdim=E):
    g = torch.Generator().manual_seed(1)
    q = torch.randn(B, L, E, generator=g)
    k = torch.randn(B, S, kdim, generator=g)
    v = torch.randn(B, S, kdim, generator=g)
    if not batch_first:
        q, k, v = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)
    kpm = torch.zeros(B, S, dtype=torch.bool)
    kpm[1, -2:] = True
    kpm[2, -4:] = True
    return q, k, v, kpm


MASKS = {
    "none": lambda: None,
    "bool": lambda: torch.ones(L, S, dtype=torch.bool).triu(3),  # True = not allowed
    "float": lambda: torch.randn(L, S, generator=torch.Generator().manual_seed(2)),
    "per-head-float": lambda: torch.randn(B * H, L, S, generator=torch.Generator().manual_seed(3)),
}


# PyTorch warns when a bool key_padding_mask meets a float attn_mask; the mix is what is tested.
@pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask")
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("mask_kind", list(MASKS))
@pytest.mark.parametrize(
    "extra", [{}, {"bias": False}, {"add_bias_kv": True}, {"add_zero_attn": True}, {"kdim": 10, "vdim": 10}]
)
def test_softmax_of_logits_is_the_modules_pattern(batch_first, mask_kind, extra):
    mha = _module(batch_first, **extra)
    q, k, v, kpm = _inputs(batch_first, kdim=extra.get("kdim", E))
    attn_mask = MASKS[mask_kind]()
    with torch.no_grad():
        out, own = mha(q, k, v, key_padding_mask=kpm, attn_mask=attn_mask, average_attn_weights=False)
    cap = mha_logits(mha, q, k, v, key_padding_mask=kpm, attn_mask=attn_mask)
    assert cap.logits.shape == own.shape and cap.logits.dtype == torch.float32
    assert (torch.softmax(cap.logits, -1) - own).abs().max().item() < 1e-5
    assert not cap.mask[1, :, :, S - 2 : S].any() and cap.mask[0].all() == (mask_kind != "bool")
    # T = 1 reproduces the module's output and its head-averaged weights.
    with torch.no_grad():
        mine, avg = mha_forward(mha, q, k, v, kpm, True, attn_mask)
        _, own_avg = mha(q, k, v, key_padding_mask=kpm, attn_mask=attn_mask)
    torch.testing.assert_close(mine, out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(avg, own_avg, rtol=1e-5, atol=1e-6)


def test_temperature_context_heats_selected_heads_and_restores_forward():
    mha = _module()
    q, k, v, kpm = _inputs()
    cap = mha_logits(mha, q, k, v, key_padding_mask=kpm)
    with torch.no_grad():
        plain, _ = mha(q, k, v, key_padding_mask=kpm)
        with mha_temperature(mha, 2.0, heads=[1, 3]) as table:
            hot, weights = mha(q, k, v, key_padding_mask=kpm, average_attn_weights=False)
    assert table.tolist() == [1.0, 2.0, 1.0, 2.0]
    expected = torch.softmax(cap.logits / table.view(1, H, 1, 1).float(), -1)
    assert (weights - expected).abs().max().item() < 1e-6
    assert "forward" not in mha.__dict__
    with torch.no_grad():
        again, _ = mha(q, k, v, key_padding_mask=kpm)
    torch.testing.assert_close(again, plain, rtol=0, atol=0)
    assert not torch.allclose(hot, plain, atol=1e-4)


def test_temperature_inside_a_transformer_layer_and_restored_on_error():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(E, H, dim_feedforward=32, dropout=0.0, batch_first=True)
    x = torch.randn(B, L, E)
    plain = layer(x)  # gradients enabled: PyTorch's fused fast path is off, self_attn.forward is called
    with mha_temperature(layer.self_attn, 1.0):
        same = layer(x)
    torch.testing.assert_close(same, plain, rtol=1e-5, atol=1e-6)
    with pytest.raises(RuntimeError, match="boom"):
        with mha_temperature(layer.self_attn, 0.25):
            cold = layer(x)
            raise RuntimeError("boom")
    assert not torch.allclose(cold, plain, atol=1e-4)
    assert "forward" not in layer.self_attn.__dict__


def test_bad_arguments():
    mha = _module()
    q, k, v, kpm = _inputs()
    with pytest.raises(ValueError, match="MultiheadAttention"):
        mha_logits(nn.Linear(2, 2), q, k, v)
    with pytest.raises(ValueError, match="key_padding_mask"):
        mha_logits(mha, q, k, v, key_padding_mask=kpm[:, :3])
    with pytest.raises(ValueError, match="attn_mask"):
        mha_logits(mha, q, k, v, attn_mask=torch.zeros(2, L, S))
    with pytest.raises(ValueError, match="finite and > 0"):
        with mha_temperature(mha, 0.0):
            pass
    with pytest.raises(ValueError, match="out of range"):
        with mha_temperature(mha, 2.0, heads=[H]):
            pass
    assert "forward" not in mha.__dict__


def test_unbatched_call_and_dtype_minimum_masks():
    mha = _module()
    q, k, v, kpm = _inputs()
    with torch.no_grad():
        _, own = mha(q[2], k[2], v[2], key_padding_mask=kpm[2], average_attn_weights=False)
    cap = mha_logits(mha, q[2], k[2], v[2], key_padding_mask=kpm[2])
    assert (torch.softmax(cap.logits[0], -1) - own).abs().max().item() < 1e-5
    # A float mask that uses the dtype minimum instead of -inf marks missing keys just the same.
    floor = torch.zeros(B, S).masked_fill(kpm, torch.finfo(torch.float32).min)
    assert torch.equal(mha_logits(mha, q, k, v, key_padding_mask=floor).mask,
                       mha_logits(mha, q, k, v, key_padding_mask=kpm).mask)
