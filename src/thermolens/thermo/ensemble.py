"""Attention as a canonical ensemble: exact thermodynamics of every query row.

A query row of a head has logits ``l_j`` (what the model feeds to its softmax) over its valid keys
``j = 1..n``. With energies ``E_j = -l_j`` and inverse temperature ``beta = 1/T`` (DESIGN.md §3;
``T = 1`` is the model's own operating point) the row is a canonical ensemble:

    p_j   = exp(beta l_j) / Z                      the attention pattern at temperature T
    log Z = logsumexp_j(beta l_j)
    F     = -T log Z                               free energy
    U     = <E>_p = -sum_j p_j l_j                 internal energy
    S     = -sum_j p_j log p_j = beta (U - F)      entropy (nats)
    C     = beta^2 Var_p(E) = -beta dS/dbeta >= 0  specific heat

Numerics. Every row is measured from its own ground state: ``m = max_j l_j`` and gaps
``e_j = m - l_j >= 0``, so the Boltzmann weights ``exp(-beta e_j)`` lie in (0, 1] with at least one
equal to 1 — nothing overflows at ``beta = 1e4`` and ``log Z = beta m + log sum_j exp(-beta e_j)``
keeps full precision at ``beta = 1e-4``. The entropy is assembled as ``beta <e> + log z`` (the
``beta m`` terms of ``beta U`` and ``log Z`` cancel analytically, not numerically), and the variance
is taken about the per-beta mean ``sum_j p_j (e_j - <e>)^2``, never as ``<E^2> - <E>^2``. All
arithmetic is float64; rows are processed in chunks so that memory stays bounded.

Masks. ``mask`` (bool, broadcastable to the logits, True = the key exists) removes keys from the
ensemble entirely; a logit of ``-inf`` is treated the same way (its weight is 0 at every finite T).
The number of valid keys ``n`` of each row is kept (``Ensemble.n_keys``): it is the finite-size
variable. A row with no valid key has no ensemble: all its quantities are NaN. A row with one valid
key has ``S = C = 0`` and ``F = U = -l``.

References: scaled dot-product attention as a canonical ensemble, G. Kim, arXiv:2602.08216
(energy ``-q.k``, temperature ``T_K = sqrt(d_k)`` at the model's operating point; the map to our
convention is ``T_K = sqrt(d_k) T``, ``F_K = sqrt(d_k) F``, ``U_K = sqrt(d_k) U``, S and C
unchanged — docs/thermo.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    import pandas as pd

Array = Any  # numpy.ndarray or torch.Tensor; results follow the input's backend

#: Working-memory budget of one chunk of ``ensemble`` (bytes of float64 temporaries).
CHUNK_BUDGET_BYTES = 256 * 2**20

_FIELDS = ("log_partition", "free_energy", "energy", "entropy", "heat_capacity")


# --------------------------------------------------------------------------------------------------
# input handling


def _as_logits(logits: Array) -> tuple[torch.Tensor, bool]:
    """``(tensor, was_numpy)``: numpy/array-likes become CPU tensors; tensors keep their device."""
    if isinstance(logits, torch.Tensor):
        if not logits.is_floating_point():
            logits = logits.double()
        return logits, False
    arr = np.ascontiguousarray(np.asarray(logits, dtype=np.float64))
    if not arr.flags.writeable:  # torch cannot wrap read-only memory; copy instead
        arr = arr.copy()
    return torch.from_numpy(arr), True


def _as_betas(betas: Array, device: torch.device) -> torch.Tensor:
    b = torch.as_tensor(np.asarray(betas.detach().cpu() if isinstance(betas, torch.Tensor) else betas,
                                   dtype=np.float64))
    if b.ndim != 1 or b.numel() == 0:
        raise ValueError(f"betas must be a non-empty 1-D sequence of inverse temperatures, got shape "
                         f"{tuple(b.shape)}; pass e.g. [beta] for a single temperature")
    if not bool(torch.all(torch.isfinite(b) & (b > 0))):
        raise ValueError("betas must be finite and > 0 (beta = 1/T); remove zero, negative or "
                         "non-finite entries")
    return b.to(device)


def _broadcast_mask(mask: Array, logits: torch.Tensor) -> torch.Tensor:
    """A boolean mask (True = key exists) broadcast to the logits' shape, on their device."""
    m = mask if isinstance(mask, torch.Tensor) else torch.from_numpy(np.array(mask))
    if m.dtype != torch.bool:
        raise ValueError(f"mask must be boolean (True = key exists), got dtype {m.dtype}; "
                         "convert an additive mask with `mask = additive_mask == 0`")
    try:
        return torch.broadcast_to(m.to(logits.device), logits.shape)
    except RuntimeError:
        raise ValueError(f"mask of shape {tuple(m.shape)} does not broadcast to logits of shape "
                         f"{tuple(logits.shape)}; give it the logits' trailing dimensions") from None


def _valid_keys(logits: torch.Tensor, mask: Array | None) -> torch.Tensor:
    """Boolean tensor shaped like ``logits``: the key exists and its logit is not ``-inf``."""
    if torch.isnan(logits).any() or torch.isposinf(logits).any():
        raise ValueError("logits contain NaN or +inf; only finite logits (or -inf for an absent key) "
                         "have a Boltzmann weight — check the capture or mask those keys")
    valid = logits > -torch.inf
    return valid if mask is None else valid & _broadcast_mask(mask, logits)


def _check_logits(logits: torch.Tensor) -> None:
    if logits.ndim < 1 or logits.shape[-1] == 0:
        raise ValueError(f"logits must be shaped (..., n_keys) with n_keys >= 1, got "
                         f"{tuple(logits.shape)}")


def _out(x: torch.Tensor, to_numpy: bool) -> Array:
    return x.cpu().numpy() if to_numpy else x


# --------------------------------------------------------------------------------------------------
# the Boltzmann distribution: the project's one softmax at temperature


def boltzmann(logits: Array, beta: float | Array, mask: Array | None = None) -> Array:
    """Attention pattern at inverse temperature ``beta``: ``softmax(beta * l)`` over the valid keys.

    ``logits`` ``(..., n_keys)``; ``beta`` a positive scalar, or a 1-D grid giving
    ``(n_betas, ..., n_keys)``; ``mask`` bool broadcastable to ``logits`` (True = key exists).
    Masked keys get probability exactly 0. A row with no valid key gets all zeros (not NaN, so a
    forward pass that uses this pattern is never poisoned by padding rows).
    A torch input keeps its dtype and device (so a model can call this inside its forward pass
    and stay differentiable); any other input returns a float64 numpy array. Logits are not
    scanned for NaN here (that would cost a pass and a device sync inside a forward pass): a NaN
    logit gives a NaN row, as in ``torch.softmax``.
    """
    x, to_numpy = _as_logits(logits)
    _check_logits(x)
    scalar = np.ndim(beta.detach().cpu() if isinstance(beta, torch.Tensor) else beta) == 0
    b = _as_betas(torch.as_tensor(beta, dtype=torch.float64).reshape(-1), x.device)
    scaled = b.to(x.dtype).reshape((-1,) + (1,) * x.ndim) * x  # (n_betas, ..., n_keys)
    if mask is not None:
        scaled = scaled.masked_fill(~_broadcast_mask(mask, x), -torch.inf)
    p = torch.softmax(scaled, dim=-1)
    p = p.masked_fill(scaled.amax(dim=-1, keepdim=True) == -torch.inf, 0.0)  # rows with no key
    if scalar:
        p = p[0]
    return _out(p, to_numpy)


# --------------------------------------------------------------------------------------------------
# one chunk of rows, exactly: shift to the ground state, then the moments of the gaps


def _ground_state_gaps(l: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(m, e)``: the row maximum ``m`` ``(rows,)`` and gaps ``e = m - l >= 0`` ``(rows, n)``.

    Invalid keys get gap 0 (their weight is zeroed separately); empty rows get ``m = 0``.
    """
    lowest = torch.finfo(l.dtype).min
    m = torch.where(valid, l, lowest).amax(dim=-1)
    m = torch.where(valid.any(dim=-1), m, torch.zeros_like(m))
    e = torch.where(valid, m[:, None] - l, torch.zeros_like(l))
    return m, e


def boltzmann_weights(e: torch.Tensor, valid: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
    """Unnormalised weights ``exp(-beta e_j)`` in (0, 1], 0 on invalid keys: ``(n_betas, rows, n)``."""
    return torch.exp(-betas[:, None, None] * e).masked_fill(~valid, 0.0)


def log_partition_shifted(w: torch.Tensor, e: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``log z = log sum_j w_j`` ``(n_betas, rows)`` to full relative precision at large beta.

    With ``g0`` ground-state keys (``e_j = 0``, weight 1) and the excited weight ``x = sum_{e_j>0} w_j``,
    ``log z = log g0 + log1p(x / g0)``: when ``x`` is tiny this keeps all its digits, where
    ``log(g0 + x)`` would round ``x`` away (and with it the entropy of a nearly frozen row).
    """
    ground = valid & (e == 0)
    g0 = ground.sum(dim=-1).to(w.dtype)  # (rows,)
    excited = w.masked_fill(ground, 0.0).sum(dim=-1)  # (n_betas, rows)
    return torch.log(g0) + torch.log1p(excited / g0)


def _chunk(l: torch.Tensor, valid: torch.Tensor, betas: torch.Tensor) -> dict[str, torch.Tensor]:
    """All five potentials for a chunk ``l`` ``(rows, n)`` float64; each ``(n_betas, rows)``."""
    m, e = _ground_state_gaps(l, valid)
    w = boltzmann_weights(e, valid, betas)  # (n_betas, rows, n)
    log_z = log_partition_shifted(w, e, valid)  # (n_betas, rows)
    b = betas[:, None]
    p = w / w.sum(dim=-1, keepdim=True)
    mean_gap = (p * e).sum(dim=-1)  # <e>
    var_gap = (p * (e - mean_gap[..., None]) ** 2).sum(dim=-1)  # about the per-beta mean
    out = {
        "log_partition": b * m + log_z,
        "free_energy": -(m + log_z / b),  # -T log Z with log Z = beta m + log z
        "energy": mean_gap - m,  # <E> = <-l> = <e> - m
        "entropy": b * mean_gap + log_z,  # beta (U - F): the beta m terms cancel analytically
        "heat_capacity": b**2 * var_gap,
    }
    empty = ~valid.any(dim=-1)
    if bool(empty.any()):
        for key in out:
            out[key] = out[key].masked_fill(empty, torch.nan)
    return out


def _rows_per_chunk(n_betas: int, n_keys: int, chunk_rows: int | None) -> int:
    if chunk_rows is not None:
        if int(chunk_rows) < 1:
            raise ValueError(f"chunk_rows={chunk_rows} must be >= 1 (or None for an automatic budget)")
        return int(chunk_rows)
    # About four (n_betas, rows, n_keys) float64 temporaries are alive at once.
    return max(1, CHUNK_BUDGET_BYTES // (4 * 8 * n_betas * n_keys))


def _thermo_rows(
    logits: Array, betas: Array, mask: Array | None, chunk_rows: int | None, fields: tuple[str, ...]
) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor, tuple[int, ...], bool]:
    """Run ``_chunk`` over all rows; returns fields ``(n_betas, *row_shape)``, n_keys, betas, shape."""
    x, to_numpy = _as_logits(logits)
    _check_logits(x)
    b = _as_betas(betas, x.device)
    valid = _valid_keys(x, mask)
    row_shape = tuple(x.shape[:-1])
    n = x.shape[-1]
    l2 = x.reshape(-1, n)  # (rows, n)
    v2 = valid.reshape(-1, n)
    n_rows = l2.shape[0]
    step = _rows_per_chunk(b.numel(), n, chunk_rows)
    out = {k: torch.empty((b.numel(), n_rows), dtype=torch.float64, device=x.device) for k in fields}
    for start in range(0, n_rows, step):
        part = _chunk(l2[start:start + step].double(), v2[start:start + step], b)
        for k in fields:
            out[k][:, start:start + step] = part[k]
    shaped = {k: v.reshape((b.numel(), *row_shape)) for k, v in out.items()}
    return shaped, v2.sum(dim=-1).reshape(row_shape), b, row_shape, to_numpy


# --------------------------------------------------------------------------------------------------
# public potentials, one at a time and all together


def log_partition(logits: Array, betas: Array, mask: Array | None = None) -> Array:
    """``log Z = logsumexp_j(beta l_j)`` per row, shaped ``(n_betas, *row_shape)``."""
    out, _, _, _, to_numpy = _thermo_rows(logits, betas, mask, None, ("log_partition",))
    return _out(out["log_partition"], to_numpy)


def entropy(logits: Array, betas: Array, mask: Array | None = None) -> Array:
    """``S = -sum_j p_j log p_j = beta (U - F)`` (nats) per row, ``(n_betas, *row_shape)``."""
    out, _, _, _, to_numpy = _thermo_rows(logits, betas, mask, None, ("entropy",))
    return _out(out["entropy"], to_numpy)


def heat_capacity(logits: Array, betas: Array, mask: Array | None = None) -> Array:
    """``C = beta^2 Var_p(E) = -beta dS/dbeta >= 0`` per row, ``(n_betas, *row_shape)``."""
    out, _, _, _, to_numpy = _thermo_rows(logits, betas, mask, None, ("heat_capacity",))
    return _out(out["heat_capacity"], to_numpy)


@dataclass(frozen=True)
class Ensemble:
    """Exact canonical-ensemble potentials of every row at every inverse temperature.

    Each potential is shaped ``(n_betas, *row_shape)`` float64 (numpy for numpy input, torch on
    the input's device for torch input); ``n_keys`` ``(*row_shape)`` counts the valid keys of each
    row; ``betas`` ``(n_betas,)``. Rows without a valid key are NaN.
    """

    log_partition: Array
    free_energy: Array
    energy: Array
    entropy: Array
    heat_capacity: Array
    n_keys: Array
    betas: Array

    def to_frame(self) -> pd.DataFrame:
        """Long table: one line per (flattened row, beta) with T, F, U, S, C, log Z and n."""
        import pandas as pd

        def flat(x: Array) -> np.ndarray:
            a = x.cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
            return a.reshape(a.shape[0], -1) if a.ndim > 1 else a.reshape(a.shape[0], 1)

        betas = flat(self.betas)[:, 0]
        n_keys = np.asarray(self.n_keys.cpu() if isinstance(self.n_keys, torch.Tensor) else self.n_keys)
        n_rows = n_keys.size
        cols = {
            "row": np.tile(np.arange(n_rows), betas.size),
            "beta": np.repeat(betas, n_rows),
            "T": np.repeat(1.0 / betas, n_rows),
            "n_keys": np.tile(n_keys.reshape(-1), betas.size),
        }
        for name in _FIELDS:
            cols[name] = flat(getattr(self, name)).reshape(-1)
        return pd.DataFrame(cols)


def ensemble(
    logits: Array, betas: Array, mask: Array | None = None, *, chunk_rows: int | None = None
) -> Ensemble:
    """Exact ``log Z, F, U, S, C`` of every query row at every ``beta`` (closed form, no sampling).

    ``logits`` ``(..., n_keys)`` numpy array or torch tensor (pre-softmax, ``T = 1`` is the
    model); ``betas`` 1-D, positive; ``mask`` bool broadcastable to ``logits``, True = the key
    exists. Rows are processed ``chunk_rows`` at a time (default: an automatic ~256 MiB budget).
    Stable for ``beta`` from 1e-4 to 1e4 (see the module docstring for how). numpy in -> numpy
    float64 out; torch in -> torch float64 on the input's device.
    """
    out, n_keys, b, _, to_numpy = _thermo_rows(logits, betas, mask, chunk_rows, _FIELDS)
    return Ensemble(
        **{k: _out(out[k], to_numpy) for k in _FIELDS},
        n_keys=_out(n_keys, to_numpy),
        betas=_out(b, to_numpy),
    )
