"""Additive per-sequence sums of the attention ensemble: the hot path of a temperature scan.

``sequence_sums(logits, betas, mask)`` takes one batch of a layer's logits
``(batch, heads, n_q, n_k)`` and returns, for every (beta, sequence, head), SUMS over the valid query
rows (rows with at least one valid key) of the per-row quantities below. Sums are additive, so a
scan adds them over batches, and a bootstrap resamples sequences by index-and-sum; ``curves`` turns
them into row averages (see ``thermolens.thermo.curves`` for xi and chi).

Per row (query i, valid keys j, gaps ``e_j = m - l_j`` above the row maximum ``m`` at key ``j*``,
``p = softmax(beta l)`` over valid keys, ``n`` valid keys, offsets ``r_j = j - j*`` and
``d = j* - i``):

    field             per-row quantity
    rows              1
    keys              n
    free_energy       F = -(m + log z / beta),   z = sum_j exp(-beta e_j)
    energy            U = <e> - m
    entropy           S = beta <e> + log z
    heat_capacity     C = beta^2 (<e^2> - <e>^2)
    concentration     q = (Y - 1/n) / (1 - 1/n),  Y = sum_j p_j^2   (q = 1 when n = 1)
    concentration_sq  q^2
    spread            Var_p(j) = <r^2> - <r>^2               (positional width of the pattern)
    distance          <(j - i)^2> = <r^2> + 2 d <r> + d^2     (second moment of query-key distance)
    uniform_spread    Var_u(j)        the same two at uniform attention over the valid keys
    uniform_distance  <(j - i)^2>_u   (the T -> infinity baseline of xi; beta-independent)

Moments are taken about the row's ground state (``e >= 0`` and ``r`` measured from ``j*``), the
origin where the Boltzmann weights ``exp(-beta e) in (0, 1]`` concentrate at low T; at high T the
origin is within a few logit standard deviations of the mean. ``precision="float32"`` (default)
runs, on CPU, the fused kernel of ``thermolens.thermo._kernel`` (weights and key sums in float32
SIMD lanes, everything after the key sums in float64); on an accelerator, and for
``precision="float64"``, whole-array kernels compute one ``exp``, a batched matrix product against
the stack ``[1, e, e^2, r, r^2]`` and one dot product per (beta, row, key). The float32 paths agree
with the float64 path to a few 1e-7 of each curve's maximum on real attention logits
(docs/thermo.md gives the measured figures).
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from thermolens.thermo import _kernel
from thermolens.thermo.ensemble import _as_betas

Array = Any  # torch.Tensor on the input's device, or numpy after ``SequenceSums.numpy()``

SUM_FIELDS = (
    "rows", "keys", "free_energy", "energy", "entropy", "heat_capacity", "concentration",
    "concentration_sq", "spread", "distance", "uniform_spread", "uniform_distance",
)

#: Bytes of float32 Boltzmann weights per chunk: small enough to stay in cache on CPU.
CPU_CHUNK_BYTES = 4 * 2**20
#: On an accelerator, larger chunks amortise kernel launches.
ACCEL_CHUNK_BYTES = 512 * 2**20
#: A block's temporaries: per-key moment columns, and the float64 ``(n_betas, rows)`` arrays of
#: the per-row algebra. Small blocks matter: large temporaries are fresh pages from the kernel on
#: every allocation, and faulting them in costs more than the arithmetic done on them.
BLOCK_BYTES = 4 * 2**20
ROW_TEMP_BYTES = 512 * 2**10
#: Longest chain of squarings from one computed weight (see ``_doubling_sources``).
_MAX_SQUARINGS = 4


@dataclass(frozen=True)
class SequenceSums:
    """Sums over valid query rows, each field ``(n_betas, batch, heads)`` float64 (see module doc).

    ``betas`` ``(n_betas,)``. Torch tensors on the logits' device as returned by
    ``sequence_sums``; ``numpy()`` gives a CPU copy. Sums are additive: ``a + b`` adds two batches
    of the same sequences, ``SequenceSums.concat`` stacks sequences, ``total()`` sums them.
    """

    betas: Array
    rows: Array
    keys: Array
    free_energy: Array
    energy: Array
    entropy: Array
    heat_capacity: Array
    concentration: Array
    concentration_sq: Array
    spread: Array
    distance: Array
    uniform_spread: Array
    uniform_distance: Array

    @property
    def n_sequences(self) -> int:
        return int(self.rows.shape[1])

    def _map(self, fn) -> SequenceSums:
        return dataclasses.replace(self, **{k: fn(getattr(self, k)) for k in SUM_FIELDS})

    def numpy(self) -> SequenceSums:
        """The same sums as CPU numpy float64 arrays."""
        conv = (lambda x: x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x))
        return dataclasses.replace(self._map(conv), betas=conv(self.betas))

    def total(self) -> SequenceSums:
        """Sum over sequences (the batch axis kept with size 1)."""
        return self._map(lambda x: x.sum(axis=1, keepdims=True) if isinstance(x, np.ndarray)
                         else x.sum(dim=1, keepdim=True))

    def select(self, index) -> SequenceSums:
        """Sequences ``index`` (int array / slice) along the batch axis."""
        return self._map(lambda x: x[:, index])

    def __add__(self, other: SequenceSums) -> SequenceSums:
        return dataclasses.replace(
            self, **{k: getattr(self, k) + getattr(other, k) for k in SUM_FIELDS})

    @staticmethod
    def concat(parts: list[SequenceSums]) -> SequenceSums:
        """Stack the sequences of several batches (same betas and heads) along the batch axis."""
        if not parts:
            raise ValueError("concat needs at least one SequenceSums")
        first = parts[0]
        out = {}
        for k in SUM_FIELDS:
            xs = [getattr(p, k) for p in parts]
            out[k] = np.concatenate(xs, axis=1) if isinstance(xs[0], np.ndarray) else torch.cat(xs, dim=1)
        return dataclasses.replace(first, **out)


class SequenceBlocks:
    """The ``SequenceSums`` of a stream of sequences, folded into at most ``max_blocks`` contiguous blocks.

    ``n_sequences`` is known in advance; block ``b`` holds sequences ``[b s, (b + 1) s)`` with
    ``s = ceil(n_sequences / max_blocks)``, so with ``n_sequences <= max_blocks`` every block is one
    sequence and ``sums`` equals ``SequenceSums.concat`` of the batches. Memory is fixed by
    ``max_blocks``, not by the corpus; the blocks are the units a bootstrap resamples. Sums are
    additive, so every curve computed from the blocks equals the one from single sequences, and how the
    stream is cut into batches does not change the blocks.
    """

    def __init__(self, n_sequences: int, max_blocks: int) -> None:
        if n_sequences < 1 or max_blocks < 1:
            raise ValueError(f"need n_sequences >= 1 and max_blocks >= 1 (got {n_sequences}, {max_blocks})")
        self.n_sequences = int(n_sequences)
        self.block_size = -(-self.n_sequences // int(max_blocks))
        self.n_blocks = -(-self.n_sequences // self.block_size)
        self._seen = 0
        self._sums: SequenceSums | None = None

    def add(self, sums: SequenceSums) -> None:
        """Fold the next ``sums.n_sequences`` sequences of the stream into their blocks."""
        stop = self._seen + sums.n_sequences
        if stop > self.n_sequences:
            raise ValueError(f"{stop} sequences added to blocks made for {self.n_sequences}")
        if self._sums is None:
            self._sums = dataclasses.replace(sums, **{
                k: getattr(sums, k).new_zeros((sums.rows.shape[0], self.n_blocks, *sums.rows.shape[2:]))
                for k in SUM_FIELDS})
        index = torch.arange(self._seen, stop, device=sums.rows.device) // self.block_size
        for k in SUM_FIELDS:
            getattr(self._sums, k).index_add_(1, index, getattr(sums, k))
        self._seen = stop

    @property
    def sums(self) -> SequenceSums:
        """One entry per block on the batch axis (``(n_betas, n_blocks, heads)``)."""
        if self._sums is None or self._seen != self.n_sequences:
            raise ValueError(f"{self._seen} of {self.n_sequences} sequences were added; add them all first")
        return self._sums


# --------------------------------------------------------------------------------------------------
# per-row key sums of one block of rows, in chunks of bounded memory


def _numpy_kernels(device: torch.device) -> bool:
    """numpy's exp and stacked matmul run ~2x and ~3x faster than torch's for these shapes on CPU."""
    return device.type == "cpu"


class _Buffers:
    """Per-worker arrays reused for every block: fresh multi-MiB allocations page-fault."""

    def __init__(self, rows: int, chunk: int, n_b: int, n_k: int, dtype: torch.dtype, device: torch.device):
        self.work = torch.empty((chunk, n_b, n_k), dtype=dtype, device=device)  # weights of a chunk
        self.x = torch.empty((rows, 5, n_k), dtype=dtype, device=device)  # moment columns
        self.s = torch.empty((rows, n_b, 5), dtype=dtype, device=device)  # key sums
        self.s_ww = torch.empty((rows, n_b), dtype=dtype, device=device)


def _key_moments(
    l: torch.Tensor, valid: torch.Tensor | None, betas: torch.Tensor, buf: _Buffers
) -> tuple[torch.Tensor, ...]:
    """Key sums of a block of rows ``l`` ``(rows, n_k)`` (``valid`` None: every key exists).

    Returns ``m, j_star, n`` per row and the float64 sums ``(n_betas, rows)``:
    ``z = sum w, s_e = sum w e, s_ee = sum w e^2, s_r = sum w r, s_rr = sum w r^2, s_ww = sum w^2``
    with ``w = exp(-beta e)`` (in the buffers' dtype), ``e = m - l`` and ``r = j - j*``.
    """
    n_rows, n_k = l.shape
    dtype = buf.work.dtype
    if dtype == torch.float64:
        l = l.double()
    if valid is None:
        m, j_star = l.max(dim=-1)  # (rows,)
        n = torch.full((n_rows,), n_k, device=l.device)
    else:
        m, j_star = torch.where(valid, l, torch.finfo(l.dtype).min).max(dim=-1)
        n = valid.sum(dim=-1)
        m = torch.where(n > 0, m, 0.0)  # rows without keys: any finite origin will do
    # Per-key columns [1, e, e^2, r, r^2], laid out (rows, 5, n_k) so the product reads them
    # contiguously; 0 on invalid keys.
    x = buf.x[:n_rows]
    e, r = x[:, 1], x[:, 3]
    torch.sub(m[:, None], l, out=e)  # gaps >= 0 on valid keys
    torch.sub(torch.arange(n_k, device=l.device, dtype=dtype)[None, :], j_star[:, None].to(dtype), out=r)
    torch.mul(e, e, out=x[:, 2])
    torch.mul(r, r, out=x[:, 4])
    if valid is None:
        x[:, 0].fill_(1.0)
        e_exp = e
    else:
        x[:, 0].copy_(valid)
        # Invalid keys get an infinite gap: exp(-beta * inf) = 0 exactly, for every beta > 0.
        e_exp = e.masked_fill(~valid, torch.inf)
        x[:, 1:].mul_(x[:, :1])
    neg_betas = -betas.to(dtype)[None, :, None]
    s, s_ww = buf.s[:n_rows], buf.s_ww[:n_rows]
    step = buf.work.shape[0]
    use_numpy = _numpy_kernels(l.device)
    x_np, s_np = (x.numpy(), s.numpy()) if use_numpy else (None, None)
    for c0 in range(0, n_rows, step):
        c1 = min(n_rows, c0 + step)
        w = buf.work[: c1 - c0]  # (rows, n_betas, n_k)
        torch.mul(neg_betas, e_exp[c0:c1, None, :], out=w)
        if use_numpy:
            wn = w.numpy()
            np.exp(wn, out=wn)
            np.matmul(wn, x_np[c0:c1].transpose(0, 2, 1), out=s_np[c0:c1])  # (rows, n_betas, 5)
        else:
            w.exp_()
            torch.bmm(w, x[c0:c1].transpose(1, 2), out=s[c0:c1])
        torch.linalg.vector_norm(w, dim=-1, out=s_ww[c0:c1])  # one pass, no temporary
    # (5, n_betas, rows) and (n_betas, rows), contiguous: elementwise torch ops on permuted views
    # keep the permuted layout in every result and run several times slower.
    s = s.permute(2, 1, 0).to(torch.float64, memory_format=torch.contiguous_format)
    s_ww = s_ww.T.to(torch.float64, memory_format=torch.contiguous_format)
    return m.double(), j_star, n, s[0], s[1], s[2], s[3], s[4], s_ww * s_ww


def _panel_sums(
    l: torch.Tensor, valid: torch.Tensor | None, betas: torch.Tensor, buf: _Buffers, q_index: torch.Tensor,
    n_panels: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Row sums over the rows of each panel in a block, laid out as ``_kernel.panel_sums``'s.

    ``l``, ``valid`` ``(n_panels * rows, n_k)``, rows of one panel contiguous. Returns float64
    ``(7, n_betas, n_panels)`` and ``(5, n_panels)``. Rows without a valid key contribute exactly 0:
    their key sums are 0, and the few row-level terms that would not vanish are zeroed explicitly.
    """
    m, j_star, n, z, s_e, s_ee, s_r, s_rr, s_ww = _key_moments(l, valid, betas, buf)
    n_b = betas.numel()
    nf = n.double()
    keep = (n > 0).double()  # (rows,)
    z = torch.where(n > 0, z, 1.0)  # empty rows: every key sum is 0; keep their algebra finite
    log_z = torch.log(z)
    inv_z = torch.reciprocal(z)
    mean_e = s_e * inv_z
    # Var = <e^2> - <e>^2 about the ground state; rounding can leave -eps, and Var >= 0 exactly.
    var_e = torch.addcmul(s_ee * inv_z, mean_e, mean_e, value=-1.0).clamp_min_(0.0)
    mean_r = s_r * inv_z
    mean_rr = s_rr * inv_z
    y = s_ww * inv_z * inv_z
    # q = (Y - 1/n) / (1 - 1/n) = a Y - c with a = n/(n-1), c = 1/(n-1); q = 1 for a single key.
    many = nf > 1
    a = torch.where(many, nf / (nf - 1.0).clamp_min(1.0), 0.0)
    c = torch.where(many, 1.0 / (nf - 1.0).clamp_min(1.0), -keep)
    q = torch.addcmul(-c, y, a)
    d = (j_star.double() - q_index.double()) * keep  # offset of the ground state from the query
    # Uniform attention over valid keys: moments of the key index j and of j - i (beta-independent).
    if valid is None:  # contiguous keys 0..n-1: mean (n-1)/2, variance (n^2-1)/12
        mu_j = (nf - 1.0) / 2
        uniform_spread = (nf**2 - 1.0) / 12
    else:
        jj = torch.arange(l.shape[-1], device=l.device, dtype=torch.float64)
        vf = valid.double()
        nn = nf.clamp_min(1.0)
        mu_j = (vf * jj).sum(-1) / nn
        uniform_spread = (vf * (jj - mu_j[:, None]) ** 2).sum(-1) / nn
    uniform_distance = (uniform_spread + (mu_j - q_index.double()) ** 2) * keep

    def per_panel(x: torch.Tensor) -> torch.Tensor:  # (n_betas, rows) -> (n_betas, panels)
        return x.reshape(n_b, n_panels, -1).sum(-1)

    def per_panel_row(x: torch.Tensor) -> torch.Tensor:  # (rows,) -> (panels,)
        return x.reshape(n_panels, -1).sum(-1)

    by_beta = torch.stack([  # _kernel.BETA_FIELDS
        per_panel(log_z), per_panel(mean_e), per_panel(var_e), per_panel(q), per_panel(q * q),
        per_panel(torch.addcmul(mean_rr, mean_r, mean_r, value=-1.0).clamp_min_(0.0)),
        per_panel(torch.addcmul(mean_rr + d * d, mean_r, 2.0 * d)),
    ])
    by_row = torch.stack([  # _kernel.ROW_FIELDS
        per_panel_row(keep), per_panel_row(nf), per_panel_row(m), per_panel_row(uniform_spread),
        per_panel_row(uniform_distance),
    ])
    return by_beta, by_row


def _fields(by_beta: torch.Tensor, by_row: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
    """The module table's sums ``(n_fields, n_betas, panels)`` from the raw row sums of
    ``_kernel.BETA_FIELDS`` ``(7, n_betas, panels)`` and ``_kernel.ROW_FIELDS`` ``(5, panels)``.
    F, U and S are linear in the row sums of ``log z``, ``<e>`` and ``m``, so they combine here."""
    log_z, mean_e, var_e, q, q_sq, spread, distance = by_beta
    rows, keys, m, uniform_spread, uniform_distance = (x.expand_as(log_z) for x in by_row[:, None, :])
    b = betas[:, None]
    sums = {
        "rows": rows, "keys": keys,
        "free_energy": -(m + log_z / b),
        "energy": mean_e - m,
        "entropy": b * mean_e + log_z,
        "heat_capacity": b**2 * var_e,
        "concentration": q, "concentration_sq": q_sq, "spread": spread, "distance": distance,
        "uniform_spread": uniform_spread, "uniform_distance": uniform_distance,
    }
    return torch.stack([sums[k] for k in SUM_FIELDS])


# --------------------------------------------------------------------------------------------------
# the whole batch, chunk by chunk


def _check_inputs(logits: Any, mask: Any, check_finite: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    if not isinstance(logits, torch.Tensor):
        logits = torch.as_tensor(np.array(logits))
    logits = logits.detach()  # sums are measurements, not a differentiable path
    if logits.ndim != 4 or logits.shape[-1] == 0 or logits.shape[-2] == 0:
        raise ValueError(f"logits must be shaped (batch, heads, n_q, n_k), got {tuple(logits.shape)}; "
                         "add leading axes with [None] for a single sequence or head")
    if logits.dtype not in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        raise ValueError(f"logits must be floating point, got {logits.dtype}")
    if mask is not None:
        if not isinstance(mask, torch.Tensor):
            mask = torch.as_tensor(np.array(mask))
        if mask.dtype != torch.bool:
            raise ValueError(f"mask must be boolean (True = key exists), got {mask.dtype}")
        try:
            mask = torch.broadcast_to(mask.to(logits.device), logits.shape)
        except RuntimeError:
            raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to logits "
                             f"{tuple(logits.shape)}; use e.g. (batch, 1, n_q, n_k) or (batch, 1, 1, n_k)"
                             ) from None
    # A sum is non-finite if any entry is NaN or +-inf (or if it overflows, and then the exact
    # check below decides): one cheap pass first.
    if not check_finite or bool(torch.isfinite(logits.sum(dtype=torch.float32))):
        return logits, mask
    finite = torch.isfinite(logits)
    if bool(finite.all()):
        return logits, mask
    # As in `ensemble`: -inf marks an absent key (a captured additive mask); NaN or +inf at a key
    # that exists is an error. Absent keys are zeroed so no inf * 0 reaches the moment sums.
    absent = logits == -torch.inf
    exists = ~absent if mask is None else mask & ~absent
    if bool((exists & ~finite).any()):
        raise ValueError("logits contain NaN or +inf at valid keys; check the capture for the layer/head "
                         "that produced them (only -inf, or a False mask entry, marks an absent key)")
    return logits.masked_fill(~exists, 0.0), exists


@dataclass(frozen=True)
class _Plan:
    """How rows are cut: chunks (weights in memory) inside blocks (per-key arrays in memory)."""

    n_panels: int  # batch * heads; a panel is the n_q rows of one (sequence, head)
    n_q: int
    n_k: int
    rows_per_chunk: int
    seg: int  # rows of one panel inside a block
    panels_per_block: int

    def blocks(self) -> list[tuple[int, int, int, int]]:
        """``(p0, p1, q0, q1)``: panels ``p0:p1``, query rows ``q0:q1`` of each."""
        return [(p0, min(self.n_panels, p0 + self.panels_per_block), q0, min(self.n_q, q0 + self.seg))
                for p0 in range(0, self.n_panels, self.panels_per_block)
                for q0 in range(0, self.n_q, self.seg)]


def _plan(shape: tuple[int, ...], n_b: int, elem: int, chunk_bytes: int, n_workers: int) -> _Plan:
    n_batch, n_heads, n_q, n_k = shape
    rows_per_chunk = max(1, int(chunk_bytes) // (n_b * n_k * elem))
    # Per-key preparation and the float64 per-row algebra run on blocks of many chunks, so their
    # fixed per-call costs are paid rarely. A block is whole panels, or a run of rows inside one
    # panel when a panel alone is larger than a block; there are at least as many blocks as workers.
    n_rows = n_batch * n_heads * n_q
    rows_per_block = max(rows_per_chunk, min(BLOCK_BYTES // (n_k * elem * 5), ROW_TEMP_BYTES // (n_b * 8)))
    rows_per_block = max(1, min(rows_per_block, -(-n_rows // n_workers)))
    seg = n_q if n_q <= rows_per_block else rows_per_block
    panels_per_block = max(1, rows_per_block // n_q) if seg == n_q else 1
    return _Plan(n_batch * n_heads, n_q, n_k, rows_per_chunk, seg, panels_per_block)


def _block_sums(
    block: tuple[int, int, int, int], by_panel: torch.Tensor, mask: torch.Tensor | None, betas: torch.Tensor,
    plan: _Plan, dtype: torch.dtype, n_heads: int, buffers: threading.local,
) -> tuple[int, int, tuple[torch.Tensor, torch.Tensor]]:
    """Raw row sums (as ``_panel_sums``) over the query rows ``q0:q1`` of panels ``p0:p1``."""
    p0, p1, q0, q1 = block
    device, n_k, n_b = by_panel.device, plan.n_k, betas.numel()
    if not hasattr(buffers, "buf"):  # one set per worker thread, reused for every block
        rows = plan.panels_per_block * plan.seg
        buffers.buf = _Buffers(rows, min(plan.rows_per_chunk, rows), n_b, n_k, dtype, device)
    l = by_panel[p0:p1, q0:q1].reshape(-1, n_k)  # (panels * rows, n_k)
    q_all = torch.arange(q0, q1, device=device)
    if mask is None:
        valid = None
    else:  # gathers only this block of the (broadcast) mask
        panels = torch.arange(p0, p1, device=device)
        valid = mask[(panels // n_heads)[:, None], (panels % n_heads)[:, None], q_all[None, :]]
        valid = valid.reshape(-1, n_k)
    return p0, p1, _panel_sums(l, valid, betas, buffers.buf, q_all.repeat(p1 - p0), p1 - p0)


def _torch_sums(
    logits: torch.Tensor, mask: torch.Tensor | None, betas: torch.Tensor, dtype: torch.dtype, n_workers: int,
    chunk_bytes: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw row sums with whole-array torch/numpy kernels: float64 precision, and accelerators."""
    n_batch, n_heads, n_q, n_k = logits.shape
    device, n_b = logits.device, betas.numel()
    plan = _plan(tuple(logits.shape), n_b, torch.finfo(dtype).bits // 8, chunk_bytes, n_workers)
    src = logits if logits.dtype in (torch.float32, torch.float64) else logits.float()
    by_panel = src.reshape(plan.n_panels, n_q, n_k)  # a view for contiguous logits
    by_beta = torch.zeros((len(_kernel.BETA_FIELDS), n_b, plan.n_panels), dtype=torch.float64, device=device)
    by_row = torch.zeros((len(_kernel.ROW_FIELDS), plan.n_panels), dtype=torch.float64, device=device)
    buffers = threading.local()
    blocks = plan.blocks()

    def run(block: tuple[int, int, int, int]) -> tuple[int, int, tuple[torch.Tensor, torch.Tensor]]:
        return _block_sums(block, by_panel, mask, betas, plan, dtype, n_heads, buffers)

    def add(results) -> None:
        for p0, p1, (part_beta, part_row) in results:
            by_beta[:, :, p0:p1] += part_beta
            by_row[:, p0:p1] += part_row

    if n_workers == 1 or len(blocks) == 1:
        add(map(run, blocks))
    else:
        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(max_workers=n_workers) as pool:
                add(pool.map(run, blocks))
        finally:
            torch.set_num_threads(previous)
    return by_beta, by_row


def _doubling_sources(betas: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ascending order of ``betas``; per beta, the index whose weights it squares (-1: none); and
    the index of its double (-1: not on the grid; padded with -1 to an even length).

    ``exp(-2 beta e) = exp(-beta e)**2``: on an octave-aligned grid (a whole number of points per
    factor 2 in T) most weights are squares of others, and ``sum w^2`` at beta is ``z - 1`` at 2
    beta. Each squaring doubles the relative rounding error of a float32 weight, so chains are at
    most ``_MAX_SQUARINGS`` long (error <= 16x one exp).
    """
    order = np.argsort(betas, kind="stable")
    source = np.full(betas.size, -1, dtype=np.int64)
    double = np.full(betas.size + betas.size % 2, -1, dtype=np.int64)
    depth = np.zeros(betas.size, dtype=np.int64)
    for k in order:
        half = np.flatnonzero(np.abs(2.0 * betas - betas[k]) <= 1e-9 * betas[k])
        double[half] = k
        half = half[depth[half] < _MAX_SQUARINGS]
        if half.size:
            source[k] = half[0]
            depth[k] = depth[half[0]] + 1
    return order, source, double


def _compact_mask(mask: torch.Tensor | None, n_k: int) -> np.ndarray:
    """The mask as a C-contiguous numpy bool array with broadcast axes kept at size 1."""
    if mask is None:
        return np.ones((1, 1, 1, n_k), dtype=bool)
    for axis in range(3):
        if mask.stride(axis) == 0:
            mask = mask.narrow(axis, 0, 1)
    return np.ascontiguousarray(mask.cpu().numpy())


@functools.lru_cache(maxsize=4)
def _worker_pool(n_workers: int) -> ThreadPoolExecutor:
    """One pool of kernel threads per size, kept for the process: a scan calls the kernel thousands
    of times, and starting threads costs ~1 ms a call."""
    return ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="thermolens-sums")


def _kernel_sums(
    logits: torch.Tensor, mask: torch.Tensor | None, betas: torch.Tensor, n_workers: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw row sums with the fused float32 CPU kernel, panels shared among ``n_workers`` threads."""
    n_batch, n_heads, n_q, n_k = logits.shape
    n_panels = n_batch * n_heads
    by_panel = np.ascontiguousarray(logits.to(torch.float32).reshape(n_panels, n_q, n_k).numpy())
    valid = _compact_mask(mask, n_k)
    b = betas.cpu().numpy().astype(np.float64)
    order, source, double = _doubling_sources(b)
    step = max(1, -(-n_panels // (4 * n_workers)))  # a few blocks per worker balance uneven panels

    def run(p0: int) -> tuple[int, np.ndarray, np.ndarray]:
        p1 = min(n_panels, p0 + step)
        part_beta = np.zeros((len(_kernel.BETA_FIELDS), b.size, p1 - p0))
        part_row = np.zeros((len(_kernel.ROW_FIELDS), p1 - p0))
        _kernel.panel_sums(by_panel[p0:p1], valid, n_heads, p0, b, order, source, double, part_beta, part_row)
        return p0, part_beta, part_row

    by_beta = np.empty((len(_kernel.BETA_FIELDS), b.size, n_panels))
    by_row = np.empty((len(_kernel.ROW_FIELDS), n_panels))
    starts = range(0, n_panels, step)
    if n_workers == 1 or len(starts) == 1:
        parts = [run(p0) for p0 in starts]
    else:
        parts = list(_worker_pool(n_workers).map(run, starts))
    for p0, part_beta, part_row in parts:
        by_beta[:, :, p0:p0 + part_beta.shape[-1]] = part_beta
        by_row[:, p0:p0 + part_row.shape[-1]] = part_row
    return torch.from_numpy(by_beta), torch.from_numpy(by_row)


def sequence_sums(
    logits: Any,
    betas: Any,
    mask: Any = None,
    *,
    precision: str = "float32",
    chunk_bytes: int | None = None,
    threads: int | None = None,
    check_finite: bool = True,
) -> SequenceSums:
    """Additive sums over valid query rows of F, U, S, C, concentration and distance moments.

    ``logits`` ``(batch, heads, n_q, n_k)`` torch (CPU or CUDA; numpy is accepted), query ``i``
    and key ``j`` at their indices; ``mask`` bool broadcastable to it, True = key exists (e.g.
    ``(batch, 1, n_q, n_k)`` for causal+padding, ``(batch, 1, 1, n_k)`` for padding only); betas
    1-D positive. Returns ``SequenceSums`` with fields ``(n_betas, batch, heads)`` float64 on the
    logits' device. ``precision`` ``"float32"`` (fast, ~1e-6 relative) or ``"float64"`` (exact to
    rounding).

    On CPU, ``float32`` runs the fused kernel of ``thermolens.thermo._kernel`` (compiled by numba
    on first use and cached on disk), with panels shared among ``threads`` worker threads (default
    ``torch.get_num_threads()``); its cost falls by about a third on octave-aligned temperature
    grids, where most Boltzmann weights are squares of others. ``float64``, and any precision on
    an accelerator, use whole-array kernels on chunks of ``chunk_bytes`` of weights (default
    4 MiB on CPU, 512 MiB on an accelerator); while their CPU workers run, torch's intra-op thread
    count is set to 1 (and restored afterwards), so do not run other torch work in parallel
    threads during the call.

    ``check_finite=False`` skips the pass that looks for NaN and infinite logits, for callers that
    have checked them already (the scan's captures are checked as they are made); -inf then
    cannot mark absent keys, so pass a mask.
    """
    if precision not in ("float32", "float64"):
        raise ValueError(f"precision={precision!r}; use 'float32' (fast) or 'float64' (exact)")
    logits, mask = _check_inputs(logits, mask, check_finite)
    device = logits.device
    b = _as_betas(betas, device)
    dtype = torch.float32 if precision == "float32" else torch.float64
    n_batch, n_heads, n_q, n_k = logits.shape
    on_cpu = device.type == "cpu"
    n_workers = max(1, int(threads if threads is not None else torch.get_num_threads())) if on_cpu else 1
    if on_cpu and dtype == torch.float32:
        by_beta, by_row = _kernel_sums(logits, mask, b, n_workers)
    else:
        if not check_finite and mask is not None:  # unchecked -inf at absent keys: zero them
            logits = logits.masked_fill(~mask, 0.0)
        if chunk_bytes is None:
            chunk_bytes = CPU_CHUNK_BYTES if on_cpu else ACCEL_CHUNK_BYTES
        by_beta, by_row = _torch_sums(logits, mask, b, dtype, n_workers, chunk_bytes)
    out = _fields(by_beta, by_row, b).reshape(len(SUM_FIELDS), b.numel(), n_batch, n_heads)
    return SequenceSums(betas=b, **{k: out[i] for i, k in enumerate(SUM_FIELDS)})
