"""The attention thermometer: canonical-ensemble readings of a model's heads on a set of inputs.

Every reading comes from ``thermolens.thermo.ensemble`` applied to the pre-softmax logits the model
caches (``blocks.{L}.attn.logits``, ``(batch, head, q, k)``) with its causal mask; nothing here
re-derives the thermodynamics. Conventions (DESIGN.md §3): ``E_j = -l_j``, ``beta = 1/T``,
``C = beta^2 Var_p(E)``, and ``T = 1`` is the model's own operating point.

Specific heats recorded at ``T = 1`` (for a sequence ``a b =`` the answer is read at the ``=``
query, the last position; under the causal mask it sees all three keys):

``C_eq``      the estimator we read as Kim's (arXiv:2602.08216): the per-row specific heat of the
              last (``=``) query row, averaged over inputs and over heads (per head: ``C_eq_L{l}H{h}``).
              Kim's ``T_K = sqrt(d_k)`` with energy ``-q.k`` gives the same Boltzmann weights as our
              ``T = 1`` with ``E = -l``; since ``E_K = sqrt(d_k) E`` and ``T_K = sqrt(d_k) T``,
              ``C_K = Var(E_K) / T_K^2 = Var(E) / T^2 = C`` — the number is identical.
``C_all``     variant: the same average over every query row with at least two visible keys.
``C_pooled``  variant: the specific heat of the ``=`` rows pooled into one ensemble (a uniform
              mixture over inputs): ``mean C + beta^2 Var_inputs(U)`` (law of total variance).
``C_null``    null model: each ``=`` row's logits replaced by i.i.d. Gaussian logits with the row's
              own number of keys ``n`` and variance (the row's sample variance over its keys,
              ddof 1); a fixed draw per run, so the null follows the model smoothly through
              training. ``C_corr = C_eq - C_null``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from thermolens.models import hooked
from thermolens.thermo import ensemble


@dataclass(frozen=True)
class NullDraw:
    """Fixed standard-normal draws for the Gaussian null, one per (input, layer, head, key)."""

    z: torch.Tensor  # (batch, layer, head, k)


def null_draw(n_inputs: int, n_layers: int, n_heads: int, n_keys: int, seed: int) -> NullDraw:
    generator = torch.Generator().manual_seed(int(seed))
    return NullDraw(torch.randn(n_inputs, n_layers, n_heads, n_keys, generator=generator, dtype=torch.float64))


def head_label(layer: int, head: int) -> str:
    return f"L{layer}H{head}"


def _task_scores(out: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """Cross-entropy (float64 log-softmax) and accuracy of the answer logits ``(batch, vocab)``."""
    out = out.double()
    loss = torch.nn.functional.cross_entropy(out, labels)
    acc = (out.argmax(dim=-1) == labels).double().mean()
    return float(loss), float(acc)


def attention_rows(
    model: hooked.HookedTransformer, tokens: torch.Tensor  # (batch, pos)
) -> tuple[torch.Tensor, dict[int, tuple[torch.Tensor, torch.Tensor]]]:
    """The answer logits ``(batch, vocab_out)`` at the last position and, per layer, every query
    row's attention logits ``(batch, head, q, k)`` with the mask ``(q, k)``.

    Outputs are computed at the last position only. Under a causal mask, query ``i`` of the last
    layer sees tokens ``0..i`` only, so its row is the last row of the prefix of length ``i + 1``:
    the earlier rows come from prefix passes that stop at those logits instead of a full forward
    (same numbers, a fraction of the work).
    """
    cfg = model.cfg
    last = cfg.n_layers - 1
    with torch.no_grad():
        out, cache = model.run_with_cache(tokens, last_only=True)
        rows = {layer: (cache[hooked.attn_logits(layer)], cache[hooked.attn_mask(layer)]) for layer in range(last)}
        if not cfg.causal:
            _, full = model.run_with_cache(tokens)
            rows[last] = (full[hooked.attn_logits(last)], full[hooked.attn_mask(last)])
            return out[:, -1], rows
        n_batch, n_pos = tokens.shape
        eq = cache[hooked.attn_logits(last)]  # (batch, head, 1, pos)
        logits = torch.zeros(n_batch, cfg.n_heads, n_pos, n_pos, dtype=eq.dtype, device=eq.device)  # masked keys: 0
        logits[:, :, -1] = eq[:, :, 0]
        for i in range(n_pos - 1):
            _, prefix = model.run_with_cache(tokens[:, : i + 1], last_only=True, stop_after=hooked.attn_logits(last))
            logits[:, :, i, : i + 1] = prefix[hooked.attn_logits(last)][:, :, 0]
        rows[last] = (logits, torch.tril(torch.ones(n_pos, n_pos, dtype=torch.bool, device=eq.device)))
    return out[:, -1], rows


def read(
    model: hooked.HookedTransformer,
    tokens: torch.Tensor,  # (batch, pos)
    labels: torch.Tensor,  # (batch,)
    null: NullDraw,
) -> dict[str, float]:
    """One thermometer reading on one set of inputs: loss, accuracy and the ensemble at ``T = 1``.

    Returns a flat dict of floats (keys described in the module docstring, plus ``S_eq``, ``F_eq``,
    ``U_eq`` for entropy, free energy and energy of the ``=`` rows, and per-head columns).
    """
    cfg = model.cfg
    answer, rows = attention_rows(model, tokens)
    loss, acc = _task_scores(answer, labels)
    reading: dict[str, float] = {"loss": loss, "acc": acc}
    one = torch.ones(1, dtype=torch.float64)
    per_head: dict[str, list[torch.Tensor]] = {k: [] for k in ("C_eq", "S_eq", "F_eq", "U_eq", "C_all", "C_pooled", "C_null")}
    for layer in range(cfg.n_layers):
        logits, mask = rows[layer]  # (batch, head, q, k), (q, k)
        ens = ensemble(logits, one, mask)
        C, S, F, U = (getattr(ens, f)[0] for f in ("heat_capacity", "entropy", "free_energy", "energy"))  # (batch, head, q)
        per_head["C_eq"].append(C[:, :, -1].mean(0))
        per_head["S_eq"].append(S[:, :, -1].mean(0))
        per_head["F_eq"].append(F[:, :, -1].mean(0))
        per_head["U_eq"].append(U[:, :, -1].mean(0))
        per_head["C_pooled"].append(C[:, :, -1].mean(0) + U[:, :, -1].var(0, unbiased=False))
        several = ens.n_keys[0, 0] >= 2  # (q,) rows with a fluctuating energy (n_keys: (batch, head, q))
        per_head["C_all"].append(C[:, :, several].mean(dim=(0, 2)))
        # Gaussian null matched per row in n and in logit variance, estimated without bias (ddof 1)
        # so that the null's expected spread over keys equals the row's: C_corr -> 0 as T -> inf.
        eq_logits = logits[:, :, -1].double()  # (batch, head, k)
        eq_mask = mask[-1]  # (k,)
        valid = eq_logits[..., eq_mask]
        sigma = valid.std(dim=-1, unbiased=True, keepdim=True)  # (batch, head, 1)
        z = null.z[: logits.shape[0], layer, :, : int(eq_mask.sum())]  # (batch, head, n)
        null_heat = ensemble(sigma * z, one).heat_capacity[0]  # (batch, head)
        per_head["C_null"].append(null_heat.mean(0))
    for key, values in per_head.items():
        table = torch.stack(values)  # (layer, head)
        reading[key] = float(table.mean())
        if key in ("C_eq", "S_eq", "C_null"):
            for layer in range(cfg.n_layers):
                for head in range(cfg.n_heads):
                    reading[f"{key}_{head_label(layer, head)}"] = float(table[layer, head])
    reading["C_corr"] = reading["C_eq"] - reading["C_null"]
    return reading


def temperature_sweep(
    model: hooked.HookedTransformer, tokens: torch.Tensor, temperatures: np.ndarray
) -> dict[str, np.ndarray]:
    """``C(T)`` and ``S(T)`` of the ``=`` rows, averaged over inputs, per head.

    Returns ``{"T": (n_T,), "C": (n_T, layer, head), "S": (n_T, layer, head)}``.
    The logits are those of the model at ``T = 1``; the sweep reweights them by ``beta = 1/T``
    (one forward pass, exact canonical ensemble at every T).
    """
    cfg = model.cfg
    betas = 1.0 / np.asarray(temperatures, dtype=np.float64)
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, last_only=True, stop_after=hooked.attn_logits(cfg.n_layers - 1))
    C, S = [], []
    for layer in range(cfg.n_layers):
        logits = cache[hooked.attn_logits(layer)][:, :, -1:]  # (batch, head, 1, k)
        mask = cache[hooked.attn_mask(layer)][-1:]  # (1, k)
        ens = ensemble(logits, betas, mask)  # fields (n_T, batch, head, 1)
        C.append(ens.heat_capacity[..., 0].mean(1))
        S.append(ens.entropy[..., 0].mean(1))
    return {
        "T": np.asarray(temperatures, dtype=np.float64),
        "C": torch.stack(C, dim=1).cpu().numpy(),
        "S": torch.stack(S, dim=1).cpu().numpy(),
    }
