"""One pass of a model over a set of sequences at one attention temperature: the token states of every layer.

A :class:`Trace` holds what the dynamics measurement needs from a forward pass run with ``T`` applied
inside attention (``thermolens.models.temperature``; every head of every layer heated, so downstream
layers feel it):

* ``states``: the token states ``(n_layers + 1, S, n, d)``: the embeddings (what enters layer 0), then the
  output of every block (the residual stream after it; for pre-norm models before the final norm);
* ``heads``: every head's output ``(n_layers, S, n, H, d_head)`` before the output projection mixes them;
* ``logits``: per layer, the sums of the fit ``l_ij ~ beta u_i . u_j`` (``meanfield.effective``) of each head,
  with ``u`` the states entering the layer, computed from the logits of the same pass.

Two kinds of model: Hugging Face models wrapped as ``LoadedModel`` (the bundled MiniLM, GPT-2, Llama ...)
and thermolens's own ``HookedTransformer`` (the grokking and family models). Both give the same fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from thermolens.meanfield.effective import LogitSums, logit_sums

__all__ = ["Trace", "is_hooked", "trace"]


@dataclass(frozen=True)
class Trace:
    T: float
    states: np.ndarray = field(repr=False)  # (n_layers + 1, S, n, d) float32
    heads: np.ndarray | None = field(repr=False)  # (n_layers, S, n, H, d_head) float32
    logits: tuple[LogitSums, ...] | None = field(repr=False)  # per layer, (S, H) sums

    @property
    def n_layers(self) -> int:
        return self.states.shape[0] - 1


def is_hooked(model: Any) -> bool:
    """True for thermolens's own ``HookedTransformer`` (the grokking and family models)."""
    from thermolens.models.hooked import HookedTransformer

    return isinstance(model, HookedTransformer)


def _concat_logit_sums(parts: list[LogitSums]) -> LogitSums:
    return LogitSums(*(np.concatenate([getattr(p, k) for p in parts]) for k in ("sxy", "sxx", "syy")))


def _pass_hooked(model: Any, ids: torch.Tensor, T: float, want_heads: bool, want_logits: bool):
    from thermolens.models import names

    n_layers = model.cfg.n_layers
    with torch.no_grad():
        _, cache = model.run_with_cache(ids.to(model.W_E.device), temperature=model.default_temperature() * T)
    states = [cache[names.embed()]] + [cache[names.resid_post(layer)] for layer in range(n_layers)]
    heads = [cache[names.attn_z(layer)] for layer in range(n_layers)] if want_heads else None
    logits = None
    if want_logits:
        logits = [(cache[names.attn_logits(layer)], cache[names.attn_mask(layer)][None, None]) for layer in range(n_layers)]
    return states, heads, logits


def _pass_loaded(loaded: Any, ids: torch.Tensor, T: float, want_heads: bool, want_logits: bool):
    import contextlib

    from thermolens import models
    from thermolens.models.activations import activation_hooks, head_outputs
    from thermolens.models.attention import forward_kwargs, logit_capture

    n_layers = loaded.n_layers
    blocks: dict[int, torch.Tensor] = {}
    heads: dict[int, torch.Tensor] = {}
    mask = torch.ones_like(ids)
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.no_grad())
        stack.enter_context(models.temperature(loaded, T))
        store = stack.enter_context(logit_capture(loaded)) if want_logits else None
        stack.enter_context(activation_hooks(
            loaded, "resid", list(range(n_layers)), lambda layer, x: blocks.__setitem__(layer, x.detach())))
        if want_heads:
            stack.enter_context(head_outputs(loaded, lambda layer, z: heads.__setitem__(layer, z)))
        out = loaded.base_model(**forward_kwargs(loaded, ids, mask), output_hidden_states=True)
    device = loaded.device
    states = [out.hidden_states[0]] + [blocks[layer].to(device) for layer in range(n_layers)]
    logits = [store[layer] for layer in range(n_layers)] if want_logits else None
    return states, [heads[layer] for layer in range(n_layers)] if want_heads else None, logits


def trace(
    model: Any,
    tokens: torch.Tensor,
    *,
    T: float = 1.0,
    heads: bool = True,
    logits: bool = True,
    batch_size: int = 8,
) -> Trace:
    """Run ``model`` over ``tokens`` ``(S, n)`` (full-length sequences, no padding) at attention temperature ``T``.

    ``T`` multiplies every head's own operating temperature (``T = 1`` is the model itself).
    """
    if not T > 0 or not np.isfinite(T):
        raise ValueError(f"temperature T={T} must be positive and finite")
    one_pass = _pass_hooked if is_hooked(model) else _pass_loaded
    state_parts: list[list[np.ndarray]] = []
    head_parts: list[list[np.ndarray]] = []
    logit_parts: list[list[LogitSums]] = []
    for start in range(0, tokens.shape[0], batch_size):
        ids = tokens[start : start + batch_size]
        states, z, captured = one_pass(model, ids, T, heads, logits)
        states_np = [s.detach().float().cpu().numpy() for s in states]
        state_parts.append(states_np)
        if z is not None:
            head_parts.append([h.detach().float().cpu().numpy() for h in z])
        if captured is not None:
            logit_parts.append([
                logit_sums(l.detach().float().cpu().numpy(), v.detach().cpu().numpy(), states_np[layer])
                for layer, (l, v) in enumerate(captured)
            ])
    n_layers = len(state_parts[0]) - 1
    return Trace(
        T=float(T),
        states=np.stack([np.concatenate([p[i] for p in state_parts]) for i in range(n_layers + 1)]),
        heads=np.stack([np.concatenate([p[i] for p in head_parts]) for i in range(n_layers)]) if heads else None,
        logits=tuple(_concat_logit_sums([p[i] for p in logit_parts]) for i in range(n_layers)) if logits else None,
    )
