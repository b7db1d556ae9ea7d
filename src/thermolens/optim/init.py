"""Critical initialization: start every attention head at its critical temperature.

A head's logits are ``l = q.k / sqrt(d_head)`` with ``q = x W_Q + b_Q`` and ``k = x W_K + b_K``.
Scaling that head's ``W_Q, b_Q, W_K, b_K`` by ``s`` scales its logits by ``s^2``, and the peak of
its specific heat ``C(T)`` (``thermolens.optim.temperature``) moves from ``T*`` to ``s^2 T*``. With
``s = sqrt(T_op / T*)`` the head's operating temperature ``T_op`` (its ``head_temperature``, 1 by
default) sits at the peak: the head starts at criticality. Layers are treated in order, each
re-measured after the ones below it moved (their outputs are its inputs); a head whose ``T*`` lies
at an edge of the grid is scaled to that edge and measured again, ``n_rounds`` times at most.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from thermolens.optim.temperature import default_grid, measure_critical_temperatures, require_attention


@dataclass(frozen=True)
class CriticalInit:
    """``T_star_before``/``T_star_after``: ``(n_layers, n_heads)`` critical temperatures on the given
    inputs before and after; ``scale``: the factor applied to each head's ``W_Q`` and ``W_K``;
    ``T_op``: the operating temperatures the heads were placed at."""

    T_star_before: np.ndarray
    T_star_after: np.ndarray
    scale: np.ndarray
    T_op: np.ndarray


def _scale_head(block, head: int, s: float) -> None:
    cfg = block.cfg
    h, dh = cfg.n_heads, cfg.d_head
    for which in (0, 1):  # q, k columns of the fused (d_model, 3 * h * d_head) weight
        cols = slice(which * h * dh + head * dh, which * h * dh + (head + 1) * dh)
        block.W_QKV[:, cols] *= s
        block.b_QKV[cols] *= s


def critical_init(model: torch.nn.Module, tokens: torch.Tensor, *, temperatures=None,
                  n_rounds: int = 3, tol: float = 0.05) -> CriticalInit:
    """Rescale every head of ``model`` (in place) so that ``T*`` equals its operating temperature
    on ``tokens`` ``(batch, pos)``; ``tol``: accepted ``|log(T*/T_op)|``."""
    model = require_attention(model)
    grid = default_grid() if temperatures is None else tuple(temperatures)
    T_op = model.head_temperature.detach().cpu().numpy().astype(np.float64)
    before = measure_critical_temperatures(model, tokens, grid).T_star
    scale = np.ones_like(T_op)
    with torch.no_grad():
        for layer, block in enumerate(model.blocks):
            for _ in range(n_rounds):
                star = measure_critical_temperatures(model, tokens, grid).T_star[layer]
                off = np.log(star / T_op[layer])
                if np.all(np.abs(off) <= tol):
                    break
                for head in range(model.cfg.n_heads):
                    if np.isfinite(star[head]) and abs(off[head]) > tol:
                        s = float(np.sqrt(T_op[layer, head] / star[head]))
                        _scale_head(block, head, s)
                        scale[layer, head] *= s
    after = measure_critical_temperatures(model, tokens, grid).T_star
    return CriticalInit(np.asarray(before), np.asarray(after), scale, T_op)
