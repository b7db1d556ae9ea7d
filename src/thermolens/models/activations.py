"""Activations of Hugging Face transformers at three sites of every block, streamed layer by layer.

Sites (the names the avalanche analysis uses; hook names from ``thermolens.models.names``):

==========  ====================  ===========================================================
``resid``   ``blocks.L.resid.post``  residual stream after block ``L`` (the block's output), (batch, pos, d_model)
``mlp``     ``blocks.L.mlp.post``    MLP hidden units after the nonlinearity: the *input* of the MLP's
                                     output projection (for gated MLPs, act(gate) * up), (batch, pos, d_mlp)
``attn``    ``blocks.L.attn.out``    output of the attention sub-block: the attention's output projection,
                                     before dropout, residual and any norm, (batch, pos, d_model)
==========  ====================  ===========================================================

Mechanism: PyTorch forward hooks (forward pre-hooks for ``mlp``) on the block modules of the model,
attached only inside :func:`capture_activations` and removed on leaving it, also when it raises
(STYLE.md item 4). Nothing is stored: each layer's activation is handed to a callback as soon as it
exists, so a caller can reduce it (e.g. to event counts) without holding every layer in memory.

The blocks are found structurally: the ``nn.ModuleList`` of the base model with one entry per layer
that holds the self-attention modules; inside a block the projections are looked up by the module
names of the supported families (BERT, GPT-2, Llama/Gemma/Mistral/Qwen and others that reuse them).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch

from thermolens.models import names
from thermolens.models.attention import check_batch, forward_kwargs
from thermolens.models.loading import LoadedModel, check_supported

__all__ = ["SITES", "site_hook_name", "block_modules", "activation_hooks", "capture_activations", "head_outputs"]

SITES = ("resid", "mlp", "attn")

# Relative module names inside a block, tried in order (first match wins).
_ATTN_OUT = ("attention.output.dense", "attn.c_proj", "self_attn.o_proj", "self_attn.out_proj", "attn.out_proj",
             "attention.dense", "self_attention.dense")
_MLP_OUT = ("output.dense", "mlp.c_proj", "mlp.down_proj", "mlp.fc2", "mlp.dense_4h_to_h", "mlp.fc_out")

LayerFn = Callable[[int, torch.Tensor], None]


def check_site(site: str) -> str:
    if site not in SITES:
        raise ValueError(f"unknown site {site!r}; valid sites: {', '.join(SITES)}")
    return site


def site_hook_name(site: str, layer: int) -> str:
    """The stable hook name of ``site`` at ``layer`` (``blocks.L.resid.post`` etc.)."""
    return {"resid": names.resid_post, "mlp": names.mlp_post, "attn": names.attn_out}[check_site(site)](layer)


def _blocks(loaded: LoadedModel) -> list[Any]:
    """The model's blocks in layer order: the ModuleList of ``n_layers`` entries holding the self-attention."""
    attention = check_supported(loaded.model)
    attention_ids = {id(m) for m in attention}
    for module in loaded.base_model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == loaded.n_layers:
            if all(any(id(m) in attention_ids for m in block.modules()) for block in module):
                return list(module)
    raise ValueError(
        f"cannot find the {loaded.n_layers} transformer blocks of {loaded.family!r}; activation capture supports "
        "BERT-family, GPT-2 and Llama-family models"
    )


def _find(block: Any, candidates: tuple[str, ...], what: str, family: str) -> Any:
    for name in candidates:
        try:
            return block.get_submodule(name)
        except AttributeError:
            continue
    raise ValueError(
        f"{family!r} blocks have none of the modules {', '.join(candidates)} ({what}); "
        "use --site resid, which every architecture supports"
    )


def block_modules(loaded: LoadedModel, site: str) -> list[Any]:
    """Per layer, the module whose output (``resid``, ``attn``) or input (``mlp``) is the site's activation."""
    blocks = _blocks(loaded)
    if check_site(site) == "resid":
        return blocks
    if site == "attn":
        candidates, what = _ATTN_OUT, "attention output projection"
    else:
        candidates, what = _MLP_OUT, "MLP output projection"
    return [_find(block, candidates, what, loaded.family) for block in blocks]


def _first_tensor(value: Any) -> torch.Tensor:
    return value[0] if isinstance(value, (tuple, list)) else value


@contextlib.contextmanager
def activation_hooks(loaded: LoadedModel, site: str, layers: list[int], fn: LayerFn) -> Iterator[None]:
    """Inside the block every forward pass calls ``fn(layer, activation)`` at ``site`` of ``layers`` (raw, undetached)."""
    modules = block_modules(loaded, site)
    handles = []
    try:
        for layer in layers:
            module = modules[layer]
            if site == "mlp":
                handles.append(module.register_forward_pre_hook(
                    lambda _m, args, layer=layer: fn(layer, _first_tensor(args))))
            else:
                handles.append(module.register_forward_hook(
                    lambda _m, _args, out, layer=layer: fn(layer, _first_tensor(out))))
        yield
    finally:
        for handle in handles:
            handle.remove()


def capture_activations(
    loaded: LoadedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    site: str,
    fn: LayerFn,
    *,
    layers: list[int] | None = None,
) -> None:
    """One forward pass; ``fn(layer, activation)`` is called for every layer as its activation appears.

    ``input_ids``/``attention_mask``: ``(batch, seq_len)`` (mask 1 for real tokens). ``activation`` is
    ``(batch, seq_len, units)`` on the model's device, padding positions included (the caller masks
    them). Inside a :func:`thermolens.models.temperature` block the pass runs at that temperature.
    The callback must not keep references it does not need: the point is to reduce as the pass goes.
    """
    if not isinstance(loaded, LoadedModel):
        raise ValueError("capture_activations needs a LoadedModel; wrap a built model with from_pretrained_model")
    input_ids, attention_mask = check_batch(input_ids, attention_mask)
    chosen = list(range(loaded.n_layers)) if layers is None else sorted(set(layers))
    bad = [layer for layer in chosen if not 0 <= layer < loaded.n_layers]
    if bad:
        raise ValueError(
            f"layers {bad} out of range; the model has {loaded.n_layers} layers (0..{loaded.n_layers - 1})"
        )
    seen: set[int] = set()
    device = loaded.device  # a sharded model's layers sit on several devices: hand activations over on one

    def record(layer: int, x: torch.Tensor) -> None:
        seen.add(layer)
        fn(layer, x.detach().to(device))

    with activation_hooks(loaded, site, chosen, record), torch.no_grad():
        loaded.base_model(**forward_kwargs(loaded, input_ids, attention_mask))
    missing = [layer for layer in chosen if layer not in seen]
    if missing:
        raise RuntimeError(f"layers {missing} of {loaded.family!r} produced no {site} activation in the forward pass")


@contextlib.contextmanager
def head_outputs(loaded: LoadedModel, fn: LayerFn, *, layers: list[int] | None = None) -> Iterator[None]:
    """Inside the block, every forward pass calls ``fn(layer, z)`` with the heads' outputs of ``layer``.

    ``z`` is ``(batch, pos, head, d_head)``: each head's pattern applied to its values, the input of the
    attention's output projection split by head (``blocks.L.attn.z``), before the projection mixes the
    heads. Pre-hooks on the output projections, removed on leaving the block.
    """
    n_heads = loaded.n_heads
    modules = block_modules(loaded, "attn")
    chosen = list(range(loaded.n_layers)) if layers is None else sorted(set(layers))
    handles = []

    def record(layer: int, x: torch.Tensor) -> None:
        if x.shape[-1] % n_heads:
            raise ValueError(
                f"the attention output projection of layer {layer} takes {x.shape[-1]} features, not a multiple of "
                f"{n_heads} heads; per-head outputs are not available for {loaded.family!r}"
            )
        fn(layer, x.detach().unflatten(-1, (n_heads, -1)).to(loaded.device))

    try:
        for layer in chosen:
            handles.append(modules[layer].register_forward_pre_hook(
                lambda _m, args, layer=layer: record(layer, _first_tensor(args))))
        yield
    finally:
        for handle in handles:
            handle.remove()
