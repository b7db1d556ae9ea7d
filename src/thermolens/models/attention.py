"""Pre-softmax attention logits of Hugging Face models, and temperature inside their forward pass.

A head's logits are what the model feeds to its softmax (DESIGN.md §3)::

    l = softcap(q . k * scaling) + bias          # (batch, head, q, k)

with ``q`` and ``k`` after rotary embeddings, grouped-query key heads expanded to one per query
head, ``bias`` the additive mask (padding, causal, sliding window) and any position bias the model
adds, and ``softcap(x) = c tanh(x / c)`` where the architecture has soft-capping (Gemma-2). The
pattern at temperature ``T`` is ``softmax(l / T)``; ``T = 1`` is the model itself.

Mechanism. transformers (5.x) dispatches every BERT, GPT-2 and Llama-family attention call through
``ALL_ATTENTION_FUNCTIONS[config._attn_implementation]``. Inside a ``with`` block this module
switches the model's implementation name from ``X`` to ``"thermolens|X"``, a name registered with
transformers' ``AttentionInterface`` (our function) and ``AttentionMaskInterface`` (``X``'s own
mask builder, so the masks are unchanged). Our function

* for a layer being captured: computes ``l`` in full, stores it (float32) with the mask of valid
  keys, then ``softmax(l / T) @ V`` exactly like the eager implementation;
* for a heated layer that is not captured: folds ``1/T`` into the model's own kernel (``scaling / T``
  for a common temperature, ``q / T_h`` per head, additive float biases divided by ``T``), so the
  model's fast kernel (sdpa) still runs: ``softmax((q/T).k s + b/T) = softmax(l/T)``;
* otherwise calls the model's own implementation ``X`` untouched.

Precision. Whatever the model's dtype, ``l`` is computed in float32: bfloat16/float16 ``q`` and
``k`` are converted before their product, so the captured logits carry only the rounding of ``q``
and ``k`` themselves, not a second rounding of every product to 8 (bfloat16) or 11 (float16)
significant bits. The thermodynamic sums that use them (``thermolens.thermo.sequence_sums``) take
float32 Boltzmann weights and accumulate in float64. The layer's own output keeps the model's dtype.

Sharded models (a ``device_map``): each layer's logits are computed on that layer's device and
gathered on ``LoadedModel.device`` (the input embeddings' device) when the forward pass ends.

On leaving the block the implementation name is restored on the model's config (and sub-configs),
also when the block raises. The registered names stay in transformers' registry (a name, not a
hook on any model). Temperature as such — softmax of ``l / T`` and its thermodynamics — lives in
``thermolens.thermo``; here it is only applied inside the forward pass.

Models whose attention does not use the interface (the ALiBi models Bloom, MPT, Falcon in
transformers 5.x) are refused by :func:`thermolens.models.from_pretrained_model`.
"""

from __future__ import annotations

import contextlib
import math
import operator
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from thermolens.models import names
from thermolens.models.loading import LoadedModel, check_supported, input_device

__all__ = ["CapturedLogits", "capture_logits", "logit_capture", "temperature"]

IMPL_PREFIX = "thermolens|"


# --------------------------------------------------------------------------------------------------
# result


@dataclass(frozen=True)
class CapturedLogits:
    """Pre-softmax logits of the captured layers for one batch.

    ``logits[layer]``: float32 ``(batch, head, n_q, n_k)`` (also for bfloat16/float16 models);
    entries at keys that do not exist are ``-inf`` so that ``softmax(logits[layer], -1)`` is the
    model's own pattern. ``mask[layer]``: bool ``(batch, 1 or head, n_q, n_k)``, True where the key
    exists (padding, causal and ``-inf`` entries of additive masks are False). Tensors are on
    ``LoadedModel.device`` (for a sharded model: gathered there from every layer's device).
    A row can have no valid key at all (a padding query whose sliding window holds only padding):
    its logits are all ``-inf`` and ``n_keys`` is 0; leave such rows out.
    """

    logits: dict[int, torch.Tensor]
    mask: dict[int, torch.Tensor]

    @property
    def layers(self) -> tuple[int, ...]:
        return tuple(sorted(self.logits))

    def by_name(self) -> dict[str, torch.Tensor]:
        """The logits keyed by hook name (``names.attn_logits(layer)``)."""
        return {names.attn_logits(layer): self.logits[layer] for layer in self.layers}

    def n_keys(self, layer: int) -> torch.Tensor:
        """Number of valid keys of every row, ``(batch, 1 or head, n_q)`` (the finite-size variable)."""
        return self.mask[layer].sum(dim=-1)


# --------------------------------------------------------------------------------------------------
# per-model state while a `with` block is active


@dataclass(eq=False)  # frames are told apart by identity (a stack may hold equal ones)
class _Frame:
    # Per layer: None (T = 1), a float 1/T for all heads, or a (1, head, 1, 1) tensor of 1/T_h.
    inv_t: list[float | torch.Tensor | None] | None = None
    capture_layers: frozenset[int] = frozenset()
    store: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None
    stop_after: int | None = None
    pure_mask_cache: list[Any] = field(default_factory=lambda: [None, False])


class _StopForward(Exception):
    """Raised after the last layer to capture: the rest of the forward pass is not needed."""


_FRAMES: dict[int, list[_Frame]] = {}  # id(config) -> stack of frames, innermost last
_SAVED_IMPL: dict[int, list[tuple[Any, Any]]] = {}  # id(root config) -> [(config, implementation)]


def _configs(config: Any) -> list[Any]:
    """A config and, recursively, its sub-configs (multimodal models give the text model its own)."""
    found = [config]
    for key in getattr(config, "sub_configs", {}) or {}:
        sub = getattr(config, key, None)
        if sub is not None and hasattr(sub, "_attn_implementation"):
            found.extend(_configs(sub))
    return found


def _register(original: str) -> str:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    name = IMPL_PREFIX + original
    AttentionInterface.register(name, _thermolens_attention)
    if original in ALL_MASK_ATTENTION_FUNCTIONS._global_mapping:
        AttentionMaskInterface.register(name, ALL_MASK_ATTENTION_FUNCTIONS[original])
    return name


@contextlib.contextmanager
def _frame(model: Any, frame: _Frame) -> Iterator[_Frame]:
    """Push ``frame`` for ``model``'s configs; switch its attention to ours while any frame is active."""
    root = model.config
    configs = _configs(root)
    if id(root) not in _SAVED_IMPL:
        saved = [(c, c._attn_implementation_internal) for c in configs]
        for c, impl in saved:
            c._attn_implementation_internal = _register(impl or "eager")
        _SAVED_IMPL[id(root)] = saved
    for c in configs:
        _FRAMES.setdefault(id(c), []).append(frame)
    try:
        yield frame
    finally:
        for c in configs:
            stack = _FRAMES[id(c)]
            stack.remove(frame)
            if not stack:
                del _FRAMES[id(c)]
        if id(root) not in _FRAMES:
            for c, impl in _SAVED_IMPL.pop(id(root)):
                c._attn_implementation_internal = impl


def _current(config: Any) -> tuple[list | None, _Frame | None]:
    """(innermost temperature table, innermost capturing frame) for this config."""
    inv_t, capture = None, None
    for frame in reversed(_FRAMES.get(id(config), ())):
        if inv_t is None and frame.inv_t is not None:
            inv_t = frame.inv_t
        if capture is None and frame.store is not None:
            capture = frame
    return inv_t, capture


# --------------------------------------------------------------------------------------------------
# the attention function registered with transformers


def _original_function(original: str, module: Any):
    from transformers import AttentionInterface

    if original != "eager" and original in AttentionInterface._global_mapping:
        return AttentionInterface._global_mapping[original]
    own = getattr(sys.modules.get(type(module).__module__), "eager_attention_forward", None)
    return own if own is not None else _eager_attention


def _valid_keys(mask: torch.Tensor | None, is_causal: bool, n_q: int, n_k: int, device) -> torch.Tensor:
    """Bool (batch|1, 1|head, n_q, n_k), True where the key exists, from whatever mask was passed."""
    if mask is None:
        valid = torch.ones(n_q, n_k, dtype=torch.bool, device=device)
        if is_causal and n_q > 1:
            valid = valid.tril(n_k - n_q)  # bottom-right aligned, like sdpa's is_causal with a cache
        return valid[None, None]
    if mask.dtype == torch.bool:
        return mask
    return mask > torch.finfo(mask.dtype).min / 2


def _is_pure_mask(mask: torch.Tensor, frame_cache: list[Any]) -> bool:
    """True if a float mask holds only 0 and "minus infinity": dividing it by T changes nothing.

    The same mask object is handed to every layer of a forward pass; the answer is cached for it.
    """
    if frame_cache[0] is mask:
        return frame_cache[1]
    pure = bool(((mask == 0) | (mask <= torch.finfo(mask.dtype).min / 2)).all())
    frame_cache[0], frame_cache[1] = mask, pure
    return pure


def _raise_if_non_finite(logits: torch.Tensor, valid: torch.Tensor, layer: int) -> None:
    """ValueError naming the first head with a non-finite logit at a valid key."""
    bad = valid & ~torch.isfinite(logits)
    if bool(bad.any()):
        head = int(bad.expand_as(logits).any(dim=(0, 2, 3)).nonzero()[0, 0])
        raise ValueError(
            f"non-finite attention logits at valid keys in layer {layer} head {head} "
            f"({names.attn_logits(layer)}); check the model weights and dtype (try float32)"
        )


def _scores(
    module: Any,
    query: torch.Tensor,  # (batch, head, q, d)
    key: torch.Tensor,  # (batch, kv_head, k, d)
    attention_mask: torch.Tensor | None,
    store: dict | None,
    pure_mask_cache: list[Any] | None,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The pre-softmax logits ``(batch, head, q, k)`` (float32 for bfloat16/float16 models; -inf at
    missing keys) and the valid-key mask; stored in ``store`` (checked finite) when given.

    Every pass over the (batch, head, q, k) scores counts (it is most of what capture adds to a
    plain forward pass), hence the checks on the small mask before the big tensor is touched.
    """
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    if query.dtype in (torch.float16, torch.bfloat16):
        # Reduced-precision models: the product of the model's own q and k, taken in float32.
        query, key = query.float(), key.float()
    n_rep = query.shape[1] // key.shape[1]
    if n_rep > 1:  # grouped-query attention: one key head per query head, like repeat_kv
        key = key.repeat_interleave(n_rep, dim=1)
    # (q * s) . k: the scale is applied to the small (q, d) tensor, not the (q, k) scores.
    logits = torch.matmul(query * scaling, key.transpose(-1, -2))  # (batch, head, q, k)
    softcap = kwargs.get("softcap")
    if softcap is not None:
        logits = torch.tanh(logits / softcap) * softcap
    n_q, n_k = logits.shape[-2:]
    is_causal = kwargs.get("is_causal")
    is_causal = bool(getattr(module, "is_causal", False) if is_causal is None else is_causal)
    valid = _valid_keys(attention_mask, is_causal, n_q, n_k, logits.device)
    layer = module.layer_idx
    if attention_mask is not None and attention_mask.dtype != torch.bool:
        # Adding a pure 0/-inf mask changes no valid logit; only real biases are added.
        if not _is_pure_mask(attention_mask, pure_mask_cache or [None, False]):
            logits = logits + attention_mask
    if kwargs.get("position_bias") is not None:
        logits = logits + kwargs["position_bias"]
    if store is not None and not bool(torch.isfinite(logits.sum(dtype=torch.float32))):  # one cheap pass first
        _raise_if_non_finite(logits, valid, layer)
    if not bool(valid.all()):  # the check is on the small mask, the fill on the big scores
        # -inf at missing keys: softmax gives them exactly 0, as the eager mask (dtype minimum) does.
        logits = logits.masked_fill(~valid, -math.inf)
    if store is not None:
        logits = logits.detach().float()
        store[layer] = (logits, valid.expand(logits.shape[0], valid.shape[1], n_q, n_k))
    return logits, valid


def _eager_attention(
    module: Any,
    query: torch.Tensor,  # (batch, head, q, d)
    key: torch.Tensor,  # (batch, kv_head, k, d)
    value: torch.Tensor,  # (batch, kv_head, k, d_v)
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    *,
    inv_t: float | torch.Tensor | None = None,
    store: dict | None = None,
    pure_mask_cache: list[Any] | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eager attention at temperature ``1/inv_t``; optionally stores the logits (see module doc)."""
    logits, valid = _scores(module, query, key, attention_mask, store, pure_mask_cache, scaling, **kwargs)
    n_rep = query.shape[1] // value.shape[1]
    if n_rep > 1:
        value = value.repeat_interleave(n_rep, dim=1)
    if isinstance(inv_t, torch.Tensor):
        inv_t = inv_t.to(logits.device)
    heated = logits if inv_t is None else logits * inv_t
    if not bool(valid.any(dim=-1).all()):
        # Rows without any valid key: the dtype minimum keeps them finite (uniform), as in eager.
        heated = heated.masked_fill(~valid, torch.finfo(heated.dtype).min)
    weights = torch.softmax(heated, dim=-1, dtype=torch.float32).to(value.dtype)
    weights = torch.nn.functional.dropout(weights, p=dropout, training=module.training)
    out = torch.matmul(weights, value).transpose(1, 2).contiguous()  # (batch, q, head, d_v)
    return out, weights


def _thermolens_attention(module, query, key, value, attention_mask, **kwargs):
    """Registered as ``"thermolens|X"``: capture and/or heat, else run the model's own ``X``.

    transformers' attention modules pass everything after the mask by keyword (``scaling``,
    ``dropout``, ``softcap``, ...), which is what this function relies on.
    """
    original = module.config._attn_implementation.removeprefix(IMPL_PREFIX)
    own = _original_function(original, module)
    inv_t_table, capture = _current(module.config)
    layer = module.layer_idx
    inv_t = inv_t_table[layer] if inv_t_table is not None and layer < len(inv_t_table) else None
    capturing = capture is not None and layer in capture.capture_layers
    if capturing or inv_t is not None:
        for sink in ("sinks", "s_aux"):
            if kwargs.get(sink) is not None:  # extra softmax logits that no mask or scaling reaches
                raise ValueError(
                    f"attention sinks ({sink}) are not supported by thermolens capture/temperature"
                )
    if capturing:
        # The logits are stored from their own product; the layer's output comes from the model's
        # own attention function (sdpa, usually), as in a plain forward pass. Soft-capping and
        # position biases run eagerly on the stored logits instead.
        own_output = kwargs.get("softcap") is None and kwargs.get("position_bias") is None
        if own_output:
            _scores(module, query, key, attention_mask, capture.store, capture.pure_mask_cache, **kwargs)
        else:
            result = _eager_attention(
                module, query, key, value, attention_mask, inv_t=inv_t, store=capture.store,
                pure_mask_cache=capture.pure_mask_cache, **kwargs
            )
        if layer == capture.stop_after:
            raise _StopForward
        if not own_output:
            return result
    if inv_t is None:
        return own(module, query, key, value, attention_mask, **kwargs)
    if kwargs.get("softcap") is not None:  # tanh soft-capping cannot be folded into q
        return _eager_attention(module, query, key, value, attention_mask, inv_t=inv_t, **kwargs)
    scaling = kwargs.get("scaling")
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    if isinstance(inv_t, float):
        kwargs["scaling"] = scaling * inv_t
    else:
        kwargs["scaling"] = scaling
        query = (query * inv_t.to(query.device)).to(query.dtype)  # one rounding, in the model's dtype
    if attention_mask is not None and attention_mask.dtype != torch.bool:
        frames = _FRAMES.get(id(module.config), [])
        cache = frames[-1].pure_mask_cache if frames else [None, False]
        if not _is_pure_mask(attention_mask, cache):
            floor = torch.finfo(attention_mask.dtype).min
            attention_mask = (attention_mask * inv_t).clamp_min(floor)
    if kwargs.get("position_bias") is not None:
        kwargs["position_bias"] = kwargs["position_bias"] * inv_t
    return own(module, query, key, value, attention_mask, **kwargs)


# --------------------------------------------------------------------------------------------------
# public API


def _model_shape(loaded_or_model: Any) -> tuple[Any, int, int]:
    if isinstance(loaded_or_model, LoadedModel):
        return loaded_or_model.model, loaded_or_model.n_layers, loaded_or_model.n_heads
    config = getattr(loaded_or_model, "config", None)
    if config is None:
        raise ValueError(
            f"expected a LoadedModel or a transformers model, got {type(loaded_or_model).__name__}; "
            "for torch.nn.MultiheadAttention use thermolens.models.mha.mha_temperature"
        )
    check_supported(loaded_or_model)
    return loaded_or_model, int(config.num_hidden_layers), int(config.num_attention_heads)


def _select(values: Iterable[int] | int | None, n: int, what: str) -> list[int]:
    if values is None:
        return list(range(n))
    if hasattr(values, "__index__") and getattr(values, "ndim", 0) == 0:  # one index (int, 0-d tensor)
        values = [values]
    chosen = []
    for v in values:
        try:
            i = operator.index(v)
        except TypeError:
            raise ValueError(f"{what} must be integers, got {v!r}") from None
        if not 0 <= i < n:
            raise ValueError(f"{what} index {i} is out of range; the model has {n} {what} (0..{n - 1})")
        chosen.append(i)
    if not chosen:
        raise ValueError(f"no {what} selected; pass None for all {what}")
    return sorted(set(chosen))


def temperature_table(
    n_layers: int,
    n_heads: int,
    T: float | torch.Tensor,
    *,
    layers: Iterable[int] | int | None = None,
    heads: Iterable[int] | int | None = None,
) -> torch.Tensor:
    """Temperatures of every head, ``(n_layers, n_heads)`` float64: ``T`` on the selected heads, 1 elsewhere.

    ``T`` is a positive number or a tensor ``(n_layers, n_heads)`` of per-head temperatures; the
    selected heads are ``layers x heads`` (``None`` = all).
    """
    rows = _select(layers, n_layers, "layers")
    cols = _select(heads, n_heads, "heads")
    table = torch.ones(n_layers, n_heads, dtype=torch.float64)
    t = torch.as_tensor(T, dtype=torch.float64).detach().cpu()
    if t.ndim == 0:
        t = t.expand(n_layers, n_heads)
    elif tuple(t.shape) != (n_layers, n_heads):
        raise ValueError(
            f"per-head temperatures must have shape (n_layers, n_heads) = ({n_layers}, {n_heads}), "
            f"got {tuple(t.shape)}"
        )
    if not bool(torch.isfinite(t).all()) or not bool((t > 0).all()):
        raise ValueError("temperatures must be finite and > 0")
    index = torch.tensor(rows)[:, None], torch.tensor(cols)[None, :]
    table[index] = t[index]
    return table


def _inverse_table(table: torch.Tensor, device, dtype) -> list[float | torch.Tensor | None]:
    out: list[float | torch.Tensor | None] = []
    for row in table:
        if bool((row == 1).all()):
            out.append(None)
        elif bool((row == row[0]).all()):
            out.append(1.0 / float(row[0]))
        else:
            out.append((1.0 / row).to(device=device, dtype=dtype).view(1, -1, 1, 1))
    return out


@contextlib.contextmanager
def temperature(
    loaded_or_model: Any,
    T: float | torch.Tensor,
    *,
    layers: Iterable[int] | int | None = None,
    heads: Iterable[int] | int | None = None,
) -> Iterator[torch.Tensor]:
    """Run attention at temperature ``T`` inside the forward pass, so downstream layers feel it.

    In the block every selected head computes ``softmax(l / T)`` instead of ``softmax(l)`` (``l``
    the full logits, biases included); unselected heads stay at ``T = 1``. ``T`` is a number or a
    ``(n_layers, n_heads)`` tensor of per-head temperatures. Yields the ``(n_layers, n_heads)``
    table in force. Nested blocks: the innermost temperature applies. Nothing stays attached to
    the model after the block, also when it raises.
    """
    model, n_layers, n_heads = _model_shape(loaded_or_model)
    table = temperature_table(n_layers, n_heads, T, layers=layers, heads=heads)
    # Per-head 1/T in (at least) float32, on the input device: each layer takes it to its own device,
    # and q / T is rounded once, to the model's dtype, where it is used.
    dtype = torch.promote_types(next(model.parameters()).dtype, torch.float32)
    frame = _Frame(inv_t=_inverse_table(table, input_device(model), dtype))
    with _frame(model, frame):
        yield table


def check_batch(input_ids: Any, attention_mask: Any) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(input_ids, torch.Tensor) or input_ids.ndim != 2 or input_ids.dtype not in (
        torch.long,
        torch.int,
    ):
        raise ValueError("input_ids must be an integer tensor of shape (batch, seq_len)")
    if input_ids.shape[0] == 0 or input_ids.shape[1] == 0:
        raise ValueError(f"input_ids is empty, shape {tuple(input_ids.shape)}; pass at least one token")
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    attention_mask = torch.as_tensor(attention_mask)
    if tuple(attention_mask.shape) != tuple(input_ids.shape):
        raise ValueError(
            f"attention_mask shape {tuple(attention_mask.shape)} differs from input_ids shape "
            f"{tuple(input_ids.shape)}"
        )
    return input_ids.long(), attention_mask.long()


def forward_kwargs(loaded: LoadedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict:
    """Keyword arguments of a plain forward pass on the model's device (no KV cache)."""
    device = loaded.device
    kwargs = {"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device)}
    if getattr(loaded.model.config, "use_cache", None) is not None:
        kwargs["use_cache"] = False
    return kwargs


def _check_capturable(loaded: LoadedModel) -> None:
    impl = (loaded.model.config._attn_implementation or "eager").removeprefix(IMPL_PREFIX)
    if impl.startswith(("flash", "flex", "paged")):
        raise ValueError(
            f"capture needs the sdpa or eager attention implementation, the model uses {impl!r}; "
            "call model.set_attn_implementation('sdpa') first"
        )


@contextlib.contextmanager
def logit_capture(
    loaded: LoadedModel, *, layers: Iterable[int] | int | None = None
) -> Iterator[dict[int, tuple[torch.Tensor, torch.Tensor]]]:
    """Capture the logits of ``layers`` (default all) in forward passes run inside the block.

    Unlike :func:`capture_logits` the pass runs to its end, so the caller keeps the model's outputs
    (hidden states, say) of the same pass. Yields a dict ``layer -> (logits, valid)`` (as in
    :class:`CapturedLogits`, on each layer's device) that every pass overwrites; read it after each
    pass. Works inside a :func:`temperature` block (the logits are ``l``, not ``l / T``).
    """
    if not isinstance(loaded, LoadedModel):
        raise ValueError("logit_capture needs a LoadedModel; wrap a built model with from_pretrained_model")
    _check_capturable(loaded)
    store: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    frame = _Frame(capture_layers=frozenset(_select(layers, loaded.n_layers, "layers")), store=store)
    with _frame(loaded.model, frame):
        yield store


def capture_logits(
    loaded: LoadedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    *,
    layers: Iterable[int] | int | None = None,
) -> CapturedLogits:
    """Pre-softmax logits of every head of ``layers`` (default all) for one batch, in one forward pass.

    ``input_ids``/``attention_mask``: ``(batch, seq_len)``, mask 1 for real tokens, 0 for padding.
    The forward pass stops after the last requested layer. Inside a :func:`temperature` block the
    downstream layers see the heated model, and the logits are those of that pass (``l``, not
    ``l / T``). Raises ``ValueError`` naming layer and head when a logit at a valid key is not
    finite.
    """
    if not isinstance(loaded, LoadedModel):
        raise ValueError("capture_logits needs a LoadedModel; wrap a built model with from_pretrained_model")
    input_ids, attention_mask = check_batch(input_ids, attention_mask)
    chosen = _select(layers, loaded.n_layers, "layers")
    _check_capturable(loaded)
    store: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    frame = _Frame(capture_layers=frozenset(chosen), store=store, stop_after=max(chosen))
    with _frame(loaded.model, frame), torch.no_grad():
        try:
            loaded.base_model(**forward_kwargs(loaded, input_ids, attention_mask))
        except _StopForward:
            pass
    missing = [layer for layer in chosen if layer not in store]
    if missing:
        raise RuntimeError(
            f"layers {missing} of {loaded.family!r} did not go through the attention interface; "
            "this architecture is not supported by thermolens capture"
        )
    device = loaded.device  # a sharded model's layers sit on several devices: gather them here
    return CapturedLogits(
        logits={layer: store[layer][0].to(device) for layer in chosen},
        mask={layer: store[layer][1].to(device) for layer in chosen},
    )
