"""Stable names of the hook points of a transformer block.

Names are built by functions, never parsed from strings by callers (STYLE.md item 4, after
TransformerLens's hook points). ``blocks.{layer}.{site}`` with the site one of:

==================  ===========================================================================
``resid.pre``       residual stream entering the block, (batch, pos, d_model)
``attn.logits``     pre-softmax attention logits ``l = q.k * scaling + bias``, (batch, head, q, k)
``attn.pattern``    attention probabilities ``softmax(l / T)``, (batch, head, q, k)
``attn.mask``       which keys exist for each query (True = key exists), (q, k) or (batch, 1, q, k)
``attn.out``        output of the attention sub-block, (batch, pos, d_model)
``mlp.post``        hidden activation of the MLP after its nonlinearity, (batch, pos, d_mlp)
``resid.post``      residual stream after the block, (batch, pos, d_model)
==================  ===========================================================================

plus ``embed`` and ``unembed`` around the blocks. Hugging Face models expose ``attn.logits`` through
``capture_logits``; the project's own ``HookedTransformer`` exposes every name.
"""

from __future__ import annotations

import operator

__all__ = ["embed", "resid_pre", "attn_logits", "attn_pattern", "attn_mask", "attn_z", "attn_out", "mlp_post", "resid_post",
           "unembed", "layer_of"]

_PREFIX = "blocks"


def _name(layer: int, site: str) -> str:
    try:
        index = operator.index(layer)
    except TypeError:
        raise ValueError(f"layer must be an integer, got {layer!r}") from None
    if index < 0:
        raise ValueError(f"layer must be >= 0, got {index}; count layers from 0")
    return f"{_PREFIX}.{index}.{site}"


def embed() -> str:
    """``"embed"``: token plus position embeddings, before the first block."""
    return "embed"


def resid_pre(layer: int) -> str:
    """``"blocks.{layer}.resid.pre"``: residual stream entering ``layer``."""
    return _name(layer, "resid.pre")


def attn_logits(layer: int) -> str:
    """``"blocks.{layer}.attn.logits"``: pre-softmax attention logits of every head of ``layer``."""
    return _name(layer, "attn.logits")


def attn_pattern(layer: int) -> str:
    """``"blocks.{layer}.attn.pattern"``: attention probabilities of every head of ``layer``."""
    return _name(layer, "attn.pattern")


def attn_mask(layer: int) -> str:
    """``"blocks.{layer}.attn.mask"``: which keys exist for each query of ``layer``."""
    return _name(layer, "attn.mask")


def attn_z(layer: int) -> str:
    """``"blocks.{layer}.attn.z"``: every head's output (its pattern applied to the values), before the
    output projection mixes the heads."""
    return _name(layer, "attn.z")


def attn_out(layer: int) -> str:
    """``"blocks.{layer}.attn.out"``: output of the attention sub-block of ``layer``."""
    return _name(layer, "attn.out")


def mlp_post(layer: int) -> str:
    """``"blocks.{layer}.mlp.post"``: MLP hidden activation after the nonlinearity."""
    return _name(layer, "mlp.post")


def resid_post(layer: int) -> str:
    """``"blocks.{layer}.resid.post"``: residual stream after ``layer``."""
    return _name(layer, "resid.post")


def unembed() -> str:
    """``"unembed"``: output logits over the vocabulary."""
    return "unembed"


def layer_of(name: str) -> int:
    """The layer index of a hook name built by this module (inverse of the functions above)."""
    parts = name.split(".")
    if len(parts) < 3 or parts[0] != _PREFIX or not parts[1].isdigit():
        raise ValueError(f"{name!r} is not a thermolens hook name; build names with thermolens.models.names")
    return int(parts[1])
