"""Null ensembles for a head: random logits matched in valid-key structure and logit variance.

A softmax over ``n`` random logits already has a specific-heat peak. For ``n`` independent
Gaussian logits of standard deviation ``sigma`` — Derrida's random energy model (REM; Derrida 1981,
Phys. Rev. B 24, 2613) — the annealed free energy gives ``S(beta) = ln n - beta^2 sigma^2 / 2``,
which reaches 0 at the freezing point

    beta_c sigma = sqrt(2 ln n),   i.e.   T_c = sigma / sqrt(2 ln n);

for ``n -> infinity`` ``C = beta^2 sigma^2`` below ``beta_c`` and 0 above, so C peaks at ``T_c``.
At attention sizes (n ~ 10^2..10^3) the crossover is smooth and the peak of the quenched average
of C sits near, but not at, ``T_c`` (tests compute it exactly; docs/thermo.md gives numbers). A
head's T* therefore means little on its own: it is compared with the same quantity for

* the Gaussian null: i.i.d. ``N(0, sigma_h^2)`` logits on exactly the head's valid keys, with
  ``sigma_h`` the head's within-row logit standard deviation (``logit_std``); and
* the shuffled null: the head's own row-centred logits pooled across all rows of a sequence and
  re-dealt at random into the same valid positions. This keeps the head's marginal logit
  distribution (heavy tails, outliers) and destroys which key gets which logit in which row.
  Shuffling within a row would not do: a row's F, U, S and C depend only on the multiset of its
  logits, so they would be unchanged.

Rows are shift-invariant (adding a constant to a row changes no pattern), so each row's mean over
its valid keys is removed before pooling or measuring variance.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def _panels(logits: Any, mask: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits, valid)`` as tensors shaped ``(batch, heads, n_q, n_k)``, valid broadcast."""
    x = logits if isinstance(logits, torch.Tensor) else torch.as_tensor(np.array(logits))
    if x.ndim != 4:
        raise ValueError(f"logits must be shaped (batch, heads, n_q, n_k), got {tuple(x.shape)}")
    if mask is None:
        return x, torch.ones(x.shape, dtype=torch.bool, device=x.device)
    m = mask if isinstance(mask, torch.Tensor) else torch.as_tensor(np.array(mask))
    if m.dtype != torch.bool:
        raise ValueError(f"mask must be boolean (True = key exists), got {m.dtype}")
    try:
        return x, torch.broadcast_to(m.to(x.device), x.shape)
    except RuntimeError:
        raise ValueError(f"mask of shape {tuple(m.shape)} does not broadcast to logits "
                         f"{tuple(x.shape)}") from None


def _row_centred(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Logits minus their row mean over valid keys (float64), 0 on invalid keys."""
    v = valid.double()
    xd = torch.where(valid, x.double(), 0.0)
    mean = xd.sum(-1, keepdim=True) / v.sum(-1, keepdim=True).clamp_min(1.0)
    return (xd - mean) * v


def within_row_sums(logits: Any, mask: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Additive pieces of the pooled within-row variance per head: ``(sum_sq, dof)``, ``(heads,)``.

    ``sum_sq = sum over rows of sum_j (l_j - mean_row)^2`` and ``dof = sum over rows of (n - 1)``
    (rows with ``n >= 1``), both float64; add them over batches, then ``sigma = sqrt(sum_sq/dof)``.
    """
    x, valid = _panels(logits, mask)
    centred = _row_centred(x, valid)
    sum_sq = (centred**2).sum(dim=(0, 2, 3))
    n = valid.sum(-1).double()  # (batch, heads, n_q)
    dof = (n - 1.0).clamp_min(0.0).sum(dim=(0, 2))
    return sum_sq, dof


def logit_std(logits: Any, mask: Any = None) -> torch.Tensor:
    """Per-head within-row logit standard deviation, pooled over rows: ``(heads,)`` float64.

    ``sigma_h^2 = sum_rows sum_j (l_j - mean_row)^2 / sum_rows (n_row - 1)``: the unbiased pooled
    estimate, i.e. the variance parameter of i.i.d. Gaussian logits that would give the same
    expected within-row spread. Heads with no row of two or more keys give NaN.
    """
    sum_sq, dof = within_row_sums(logits, mask)
    return torch.where(dof > 0, torch.sqrt(sum_sq / dof.clamp_min(1.0)), torch.nan)


def gaussian_null_logits(
    mask: Any, sigma: Any, generator: torch.Generator | None = None, *, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """I.i.d. ``N(0, sigma_h^2)`` logits with the valid-key structure of ``mask``.

    ``mask`` bool ``(batch, heads or 1, n_q, n_k)``, True = key exists; ``sigma`` ``(heads,)``
    (``logit_std`` of the real head); ``generator`` a ``torch.Generator`` on the mask's device (or
    None for torch's global one). Returns ``(batch, heads, n_q, n_k)`` on the mask's device; masked
    positions hold 0 and must be passed with the same ``mask`` (they are not keys).
    """
    m = mask if isinstance(mask, torch.Tensor) else torch.as_tensor(np.array(mask))
    if m.dtype != torch.bool or m.ndim != 4:
        raise ValueError(f"mask must be a boolean (batch, heads, n_q, n_k) tensor, got {m.dtype} "
                         f"{tuple(m.shape)}; use shape (batch, 1, n_q, n_k) for a mask shared by heads")
    s = torch.as_tensor(sigma, dtype=torch.float64, device=m.device).reshape(-1)
    if not bool(torch.all(torch.isfinite(s) & (s >= 0))):
        raise ValueError("sigma must be finite and >= 0 for every head (see logit_std)")
    if m.shape[1] not in (1, s.numel()):
        raise ValueError(f"mask has {m.shape[1]} heads but sigma has {s.numel()}; they must match "
                         "(or give the mask a head axis of size 1)")
    shape = (m.shape[0], s.numel(), m.shape[2], m.shape[3])
    z = torch.randn(shape, generator=generator, dtype=torch.float64, device=m.device)
    return (z * s[None, :, None, None] * m).to(dtype)


def shuffled_null_logits(
    logits: Any, mask: Any = None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Each (sequence, head)'s row-centred valid logits, re-dealt at random into its valid positions.

    ``logits`` ``(batch, heads, n_q, n_k)``; ``mask`` bool broadcastable to it; ``generator`` on the
    logits' device (or None). Returns a tensor of
    the logits' shape and dtype (float32/float64) on their device, with 0 at masked positions.
    Every row keeps its number of valid keys; the pooled multiset of centred logits of each
    (sequence, head) is preserved exactly.
    """
    x, valid = _panels(logits, mask)
    b, h, n_q, n_k = x.shape
    centred = _row_centred(x, valid).reshape(b * h, n_q * n_k)
    v = valid.reshape(b * h, n_q * n_k).cpu().numpy()
    values = centred.cpu().numpy()
    out = np.zeros_like(values)
    # One permutation of the valid positions per panel, drawn by numpy (seeded from ``generator``):
    # several times cheaper than argsorting a random key for every position of the batch.
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device if generator else "cpu"))
    rng = np.random.default_rng(seed)
    for p in range(b * h):
        slots = np.flatnonzero(v[p])
        out[p, slots] = values[p, slots[rng.permutation(slots.size)]]
    dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    return torch.from_numpy(out).to(device=x.device, dtype=dtype).reshape(b, h, n_q, n_k)
