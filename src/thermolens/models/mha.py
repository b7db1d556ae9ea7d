"""Logits and temperature for ``torch.nn.MultiheadAttention``.

``nn.MultiheadAttention`` computes, per head ``h`` (``d = embed_dim / num_heads``)::

    l = (x_q W_q^h + b_q^h) . (x_k W_k^h + b_k^h) / sqrt(d) + attn_mask + key_padding_mask

with boolean masks meaning "True = not allowed" (turned into ``-inf``) and float masks added as
they are; ``bias_k``/``bias_v`` append one learned key/value, ``add_zero_attn`` one zero key/value.
:func:`mha_logits` recomputes exactly this from the module's weights (same layout, both
``batch_first`` settings). :func:`mha_forward` is the module's forward at temperature ``T``
(pattern ``softmax(l / T)``, float masks divided by ``T`` with everything else), and
:func:`mha_temperature` makes the module use it inside a ``with`` block: an instance attribute
``forward`` that is removed again on exit, also when the block raises.

Caveat: ``nn.TransformerEncoderLayer`` in eval mode may take PyTorch's fused "fast path", which
never calls the attention module's ``forward``; run such models in a mode that disables it (e.g.
with gradients enabled) when heating them.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from thermolens.models.attention import temperature_table

__all__ = ["MHALogits", "mha_logits", "mha_forward", "mha_temperature"]


@dataclass(frozen=True)
class MHALogits:
    """Pre-softmax logits of one ``nn.MultiheadAttention`` call.

    ``logits``: float32 ``(batch, head, n_q, n_k)``, ``-inf`` where the key does not exist.
    ``mask``: bool ``(batch, 1 or head, n_q, n_k)``, True where the key exists. ``n_k`` includes the
    extra key of ``bias_k`` / ``add_zero_attn`` when the module has them.
    """

    logits: torch.Tensor
    mask: torch.Tensor


def _check_module(mha: nn.Module) -> None:
    if not isinstance(mha, nn.MultiheadAttention):
        raise ValueError(f"expected torch.nn.MultiheadAttention, got {type(mha).__name__}")


def _float_mask(mask: torch.Tensor | None, dtype: torch.dtype, what: str) -> torch.Tensor | None:
    """Boolean masks (True = not allowed) become -inf/0; float masks are additive as they are."""
    if mask is None:
        return None
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, -math.inf)
    if not torch.is_floating_point(mask):
        raise ValueError(f"{what} must be bool (True = not allowed) or float (added to the logits)")
    return mask.to(dtype)


def _projections(mha: nn.MultiheadAttention, query, key, value):
    """Batch-first inputs -> q, k, v as (batch, head, n, d), with the bias_k / zero-attention keys."""
    e, n_heads = mha.embed_dim, mha.num_heads
    d = e // n_heads
    if mha._qkv_same_embed_dim:
        w_q, w_k, w_v = mha.in_proj_weight.chunk(3)
    else:
        w_q, w_k, w_v = mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight
    b_q = b_k = b_v = None
    if mha.in_proj_bias is not None:
        b_q, b_k, b_v = mha.in_proj_bias.chunk(3)
    q = nn.functional.linear(query, w_q, b_q)  # (batch, n_q, e)
    k = nn.functional.linear(key, w_k, b_k)  # (batch, n_k, e)
    v = nn.functional.linear(value, w_v, b_v)
    batch = q.shape[0]
    if mha.bias_k is not None:
        k = torch.cat([k, mha.bias_k.transpose(0, 1).expand(batch, 1, e)], dim=1)
        v = torch.cat([v, mha.bias_v.transpose(0, 1).expand(batch, 1, e)], dim=1)

    def heads(x):  # (batch, n, e) -> (batch, head, n, d)
        return x.view(batch, x.shape[1], n_heads, d).transpose(1, 2)

    q, k, v = heads(q), heads(k), heads(v)
    if mha.add_zero_attn:
        k = torch.cat([k, k.new_zeros(batch, n_heads, 1, d)], dim=2)
        v = torch.cat([v, v.new_zeros(batch, n_heads, 1, d)], dim=2)
    return q, k, v


def _batch_first(mha, query, key, value):
    if query.ndim not in (2, 3):
        raise ValueError(
            f"query must be (n, embed) or (batch, n, embed)/(n, batch, embed), got {tuple(query.shape)}"
        )
    unbatched = query.ndim == 2
    if unbatched:
        query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)  # seq-first, batch 1
    elif mha.batch_first:
        return query, key, value, False
    return query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1), unbatched


def _bias(mha, attn_mask, key_padding_mask, batch, n_q, n_k_raw, n_k, dtype):
    """Additive mask (batch, 1|head, n_q, n_k) from attn_mask and key_padding_mask, or None."""
    n_heads = mha.num_heads
    extra = n_k - n_k_raw  # bias_k / zero-attention keys: always allowed
    bias = None
    am = _float_mask(attn_mask, dtype, "attn_mask")
    if am is not None:
        if am.ndim == 2:
            am = am.view(1, 1, n_q, n_k_raw)
        elif am.ndim == 3 and am.shape[0] == batch * n_heads:
            am = am.view(batch, n_heads, n_q, n_k_raw)
        else:
            raise ValueError(
                f"attn_mask must be (n_q, n_k) or (batch * num_heads, n_q, n_k), got {tuple(attn_mask.shape)}"
            )
        bias = nn.functional.pad(am, (0, extra))
    kpm = _float_mask(key_padding_mask, dtype, "key_padding_mask")
    if kpm is not None:
        if tuple(kpm.shape) != (batch, n_k_raw):
            raise ValueError(
                f"key_padding_mask must be (batch, n_k) = ({batch}, {n_k_raw}), got {tuple(kpm.shape)}"
            )
        kpm = nn.functional.pad(kpm, (0, extra)).view(batch, 1, 1, n_k)
        bias = kpm if bias is None else bias + kpm
    return bias


def _logits(mha, query, key, value, key_padding_mask, attn_mask):
    """(logits incl. bias, valid, v, unbatched) in batch-first layout."""
    _check_module(mha)
    query, key, value, unbatched = _batch_first(mha, query, key, value)
    q, k, v = _projections(mha, query, key, value)
    if key_padding_mask is not None and unbatched:
        key_padding_mask = key_padding_mask.unsqueeze(0)
    logits = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.shape[-1])  # (batch, head, q, k)
    bias = _bias(mha, attn_mask, key_padding_mask, q.shape[0], q.shape[2], key.shape[1], k.shape[2], q.dtype)
    if bias is None:
        valid = torch.ones((1, 1) + tuple(logits.shape[2:]), dtype=torch.bool, device=logits.device)
    else:
        valid = bias > torch.finfo(bias.dtype).min / 2  # -inf, or the dtype minimum some callers use
        logits = logits + bias
    return logits, valid, v, unbatched


def mha_logits(
    mha: nn.MultiheadAttention,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    *,
    key_padding_mask: torch.Tensor | None = None,
    attn_mask: torch.Tensor | None = None,
) -> MHALogits:
    """Logits of the call ``mha(query, key, value, key_padding_mask=..., attn_mask=...)``.

    Inputs use the module's own layout (``batch_first`` or not, or unbatched 2-D). Raises
    ``ValueError`` naming the head when a logit at a valid key is not finite.
    """
    with torch.no_grad():
        logits, valid, _, _ = _logits(mha, query, key, value, key_padding_mask, attn_mask)
    logits = logits.float()
    bad = valid & ~torch.isfinite(logits)
    if bool(bad.any()):
        head = int(bad.expand_as(logits).any(dim=(0, 2, 3)).nonzero()[0, 0])
        raise ValueError(f"non-finite attention logits at valid keys in head {head} of {type(mha).__name__}")
    valid = valid.expand(logits.shape[0], valid.shape[1], *logits.shape[2:])
    return MHALogits(logits=logits.masked_fill(~valid, -math.inf), mask=valid)


def mha_forward(
    mha: nn.MultiheadAttention,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    need_weights: bool = True,
    attn_mask: torch.Tensor | None = None,
    average_attn_weights: bool = True,
    is_causal: bool = False,
    *,
    T: float | torch.Tensor = 1.0,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``mha.forward`` with the pattern ``softmax(l / T)``; ``T`` a number or a ``(num_heads,)`` tensor.

    Same arguments and returns as ``nn.MultiheadAttention.forward`` (``is_causal`` is a hint
    there too: the causal structure must be in ``attn_mask``).
    """
    if is_causal and attn_mask is None:
        raise ValueError("is_causal=True needs the causal attn_mask as well (as in nn.MultiheadAttention)")
    logits, valid, v, unbatched = _logits(mha, query, key, value, key_padding_mask, attn_mask)
    t = torch.as_tensor(T, dtype=logits.dtype, device=logits.device)
    heated = logits / (t.view(1, -1, 1, 1) if t.ndim == 1 else t)
    weights = torch.softmax(heated.masked_fill(~valid, -math.inf), dim=-1)
    weights_used = nn.functional.dropout(weights, p=mha.dropout, training=mha.training)
    out = torch.matmul(weights_used, v)  # (batch, head, q, d)
    batch, n_heads, n_q, d = out.shape
    out = out.transpose(1, 2).reshape(batch, n_q, n_heads * d)
    out = mha.out_proj(out)  # (batch, q, e)
    if unbatched:
        out = out.squeeze(0)
    elif not mha.batch_first:
        out = out.transpose(0, 1)
    if not need_weights:
        return out, None
    if average_attn_weights:
        weights = weights.mean(dim=1)
    return out, (weights.squeeze(0) if unbatched else weights)


@contextlib.contextmanager
def mha_temperature(
    mha: nn.MultiheadAttention,
    T: float | torch.Tensor,
    *,
    heads: Iterable[int] | int | None = None,
) -> Iterator[torch.Tensor]:
    """Inside the block, calls of ``mha`` attend at temperature ``T`` (selected ``heads``; others T = 1).

    ``T`` is a positive number or a ``(num_heads,)`` tensor. Yields the ``(num_heads,)`` float64
    temperatures in force. The module's own ``forward`` is back after the block.
    """
    _check_module(mha)
    t = torch.as_tensor(T, dtype=torch.float64)
    if t.ndim == 1:
        t = t.view(1, -1)
    table = temperature_table(1, mha.num_heads, t, heads=heads)[0]
    had_own = "forward" in mha.__dict__
    previous = mha.__dict__.get("forward")

    def heated_forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                       average_attn_weights=True, is_causal=False):
        return mha_forward(
            mha, query, key, value, key_padding_mask, need_weights, attn_mask, average_attn_weights,
            is_causal, T=table.to(dtype=query.dtype, device=query.device),
        )

    mha.forward = heated_forward
    try:
        yield table
    finally:
        if had_own:
            mha.forward = previous
        else:
            del mha.forward
