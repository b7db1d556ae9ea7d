"""Kronecker-factored Fisher blocks (K-FAC, Martens & Grosse 2015, arXiv:1503.05671) for the weight
matrices of any model, found by watching the forward pass.

A *block* is a weight matrix (or a column slice of one) that the forward pass multiplies its input
by: ``y = x @ W[:, c0:c1]`` (``torch.matmul``, the convention of ``HookedTransformer``) or
``y = x @ W.T`` (``torch.nn.functional.linear``, i.e. ``nn.Linear``). For each block, with ``a``
the input rows and ``g`` the gradient of the loss with respect to the output rows (``M`` rows per
batch: batch x positions),

    A = E[a a^T]   (d_in, d_in)        G = E[g' g'^T]  (d_out, d_out),   g' = M g

(``g' = M g`` undoes the ``1/M`` of a loss that averages over its rows, so ``G`` is the per-row
empirical Fisher of the outputs). The Fisher block of ``W`` is approximated by ``A (x) G`` and the
damped natural gradient of the block's gradient ``D = dL/dW`` (``(d_in, d_out)``) is

    P(D) = Q_A [ (Q_A^T D Q_G) / (lambda_A lambda_G^T + damping) ] Q_G^T

with ``A = Q_A diag(lambda_A) Q_A^T`` and ``G = Q_G diag(lambda_G) Q_G^T``: the exact inverse of
``A (x) G + damping I`` in the Kronecker eigenbasis (George et al. 2018, arXiv:1806.03884, use the
same basis). ``A`` and ``G`` are running averages (decay ``stat_decay``) refreshed every
``stats_every`` steps; the eigendecompositions are recomputed every ``inv_every`` steps.

Memory. A full factor of side ``d`` costs ``2 d^2`` numbers (the factor and its eigenvectors);
the factor of a 512-wide side alone is four times a 128 x 512 weight. Sides are therefore made
full smallest first while the total stays within ``budget`` numbers (the optimizer passes twice
its parameter count, which caps its whole state at twice AdamW's); the other sides keep only their
diagonal (then ``Q = I``). A side longer than ``max_dim`` is always diagonal.

The Fisher here is the *empirical* one (gradients of the training loss itself, no sampled labels):
it costs no extra backward pass, and is what the diagonal option and Adam use too (Kunstner et al.
2019, arXiv:1905.12558, discuss where it differs from the true Fisher).

Capture uses a ``torch.overrides.TorchFunctionMode`` active only during the forward passes where
statistics are wanted: it sees every ``matmul``/``linear`` whose weight is a tracked parameter (or a
column slice of one), records ``A`` and hooks the output for ``G``. Nothing stays attached to the
model outside those passes.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

log = logging.getLogger("thermolens.optim")

MATMULS = (torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__)

#: times the damping of a failed eigendecomposition is multiplied by 10 before giving up on the block
MAX_DAMPING_RETRIES = 6


@dataclass(frozen=True)
class BlockKey:
    """One K-FAC block: parameter ``name``, columns ``[c0, c1)`` of an (in, out) weight
    (``transposed=False``, ``y = x @ W``) or rows ``[c0, c1)`` of an (out, in) weight
    (``transposed=True``, ``y = x @ W.T``)."""

    name: str
    c0: int
    c1: int
    transposed: bool

    @property
    def label(self) -> str:
        return f"{self.name}[{self.c0}:{self.c1}]"


def _column_slice(w: torch.Tensor, base: torch.Tensor) -> tuple[int, int] | None:
    """``(c0, c1)`` when ``w`` is ``base[:, c0:c1]`` (a 2-D column view), else None."""
    if w.dim() != 2 or base.dim() != 2 or w.stride() != base.stride() or w.shape[0] != base.shape[0]:
        return None
    c0 = w.storage_offset() - base.storage_offset()
    if not 0 <= c0 < base.shape[1] or c0 + w.shape[1] > base.shape[1]:
        return None
    return c0, c0 + w.shape[1]


class _Capture(TorchFunctionMode):
    """Records ``a^T a`` and ``M g^T g`` of every tracked matmul during one forward/backward."""

    def __init__(self, tracked: dict[int, str], sink: dict[BlockKey, dict[str, torch.Tensor]]) -> None:
        super().__init__()
        self.tracked, self.sink = tracked, sink

    def _resolve(self, w) -> tuple[str, int, int] | None:
        if not isinstance(w, torch.Tensor):
            return None
        if id(w) in self.tracked:
            return self.tracked[id(w)], 0, w.shape[-1]
        base = w._base
        if base is not None and id(base) in self.tracked:
            cols = _column_slice(w, base)
            if cols is not None:
                return (self.tracked[id(base)], *cols)
        return None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func in MATMULS and len(args) == 2:
            hit, transposed = self._resolve(args[1]), False
        elif func is F.linear:
            w = args[1] if len(args) > 1 else kwargs.get("weight")
            hit = (self.tracked[id(w)], 0, w.shape[0]) if isinstance(w, torch.Tensor) and id(w) in self.tracked else None
            transposed = True
        else:
            return out
        if hit is None or not isinstance(out, torch.Tensor) or not out.requires_grad:
            return out
        key = BlockKey(hit[0], hit[1], hit[2], transposed)
        a = args[0].detach()
        a = a.reshape(-1, a.shape[-1]).to(torch.float32)  # (rows, d_in)
        stats = self.sink.setdefault(key, {})
        aa = a.T @ a / a.shape[0]
        stats["A"] = stats["A"] + aa if "A" in stats else aa

        def grad_hook(g: torch.Tensor) -> None:
            g = g.detach().reshape(-1, g.shape[-1]).to(torch.float32)  # (rows, d_out)
            gg = g.T @ g * g.shape[0]
            stats["G"] = stats["G"] + gg if "G" in stats else gg

        out.register_hook(grad_hook)
        return out


# --------------------------------------------------------------------------------------------------
# factors and their damped inverse


def _update_factor(old: torch.Tensor | None, new: torch.Tensor, decay: float, keep_full: bool) -> torch.Tensor:
    new = new if keep_full else torch.diagonal(new).clone()
    return new if old is None else decay * old + (1 - decay) * new


def eigen(factor: torch.Tensor, damping: float, label: str, events: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (clamped >= 0) and eigenvectors of a symmetric factor, or ``(diag, None)``
    for a diagonal one. A failed or non-finite decomposition is retried with ``damping * 10^k``
    added to the diagonal (logged in ``events``); after ``MAX_DAMPING_RETRIES`` the factor is
    replaced by its damped identity, so the update falls back to a scaled gradient, never NaN."""
    if factor.dim() == 1:
        vals = factor.clamp_min(0.0)
        if not torch.all(torch.isfinite(vals)):
            events.append(f"{label}: non-finite diagonal factor; replaced by the identity")
            vals = torch.ones_like(vals)
        return vals, None
    f64 = factor.double()
    f64 = 0.5 * (f64 + f64.T)
    jitter = 0.0
    for attempt in range(MAX_DAMPING_RETRIES + 1):
        try:
            if not torch.all(torch.isfinite(f64)):
                raise torch.linalg.LinAlgError("non-finite factor")
            eye = torch.eye(f64.shape[0], dtype=f64.dtype, device=f64.device)
            vals, vecs = torch.linalg.eigh(f64 + jitter * eye)
            if torch.all(torch.isfinite(vals)) and torch.all(torch.isfinite(vecs)):
                if attempt:
                    events.append(f"{label}: eigendecomposition succeeded with extra damping {jitter:.3g}")
                    log.warning("K-FAC %s: inverse needed extra damping %.3g", label, jitter)
                return vals.clamp_min(0.0).to(factor.dtype), vecs.to(factor.dtype)
        except (torch.linalg.LinAlgError, RuntimeError):
            pass
        jitter = damping * 10.0 ** (attempt + 1)
    events.append(f"{label}: eigendecomposition failed with damping up to {jitter:.3g}; identity used")
    log.warning("K-FAC %s: inverse failed; falling back to the identity", label)
    n = factor.shape[0]
    return torch.ones(n, dtype=factor.dtype, device=factor.device), torch.eye(n, dtype=factor.dtype, device=factor.device)


def precondition(
    grad: torch.Tensor,  # (d_in, d_out) block gradient in the (in, out) orientation
    vals_a: torch.Tensor, vecs_a: torch.Tensor | None,
    vals_g: torch.Tensor, vecs_g: torch.Tensor | None,
    damping: float,
) -> torch.Tensor:
    """``(A (x) G + damping I)^{-1}`` applied to ``grad`` in the Kronecker eigenbasis."""
    rotated = grad
    if vecs_a is not None:
        rotated = vecs_a.T @ rotated
    if vecs_g is not None:
        rotated = rotated @ vecs_g
    rotated = rotated / (vals_a[:, None] * vals_g[None, :] + damping)
    if vecs_a is not None:
        rotated = vecs_a @ rotated
    if vecs_g is not None:
        rotated = rotated @ vecs_g.T
    return rotated


class KFAC:
    """K-FAC bookkeeping for the weight matrices of ``model`` (see the module docstring).

    ``capture()`` returns the mode to enter around a forward pass whose statistics are wanted;
    ``update_factors()`` folds the captured batch into the running factors; ``update_inverses()``
    recomputes the eigendecompositions; ``apply_block(key, grad)`` preconditions one block.
    Fallbacks (extra damping, identity) are appended to ``events``.
    """

    def __init__(self, named_params: dict[str, torch.nn.Parameter], *, damping: float, stat_decay: float,
                 max_dim: int, events: list[str], budget: float = math.inf) -> None:
        self.params = named_params
        self.damping, self.stat_decay, self.max_dim, self.budget = damping, stat_decay, max_dim, budget
        self.factors: dict[BlockKey, dict[str, torch.Tensor]] = {}  # "A", "G" running averages
        self.inverses: dict[BlockKey, tuple] = {}  # (vals_a, vecs_a, vals_g, vecs_g)
        self.events = events
        self._pending: dict[BlockKey, dict[str, torch.Tensor]] = {}

    def capture(self) -> _Capture:
        self._pending = {}
        tracked = {id(p): name for name, p in self.params.items()}
        return _Capture(tracked, self._pending)

    def _plan(self, fresh: list[tuple[BlockKey, str, int]]) -> set[tuple[BlockKey, str]]:
        """Which new sides get full factors: smallest first, within what the budget has left.
        A side costs ``2 d`` numbers diagonal (factor and eigenvalues), ``2 d^2`` full."""
        used = sum(2 * t.numel() if t.dim() == 2 else 2 * t.shape[0] for slot in self.factors.values()
                   for t in slot.values())
        used += sum(2 * d for _, _, d in fresh)
        full = set()
        for key, side, d in sorted(fresh, key=lambda item: item[2]):
            if d <= self.max_dim and used + 2 * d * d - 2 * d <= self.budget:
                full.add((key, side))
                used += 2 * d * d - 2 * d
        return full

    def update_factors(self) -> None:
        ready = {k: v for k, v in self._pending.items() if "A" in v and "G" in v}  # else: not in the loss
        fresh = [(k, side, ready[k][side].shape[0]) for k in ready if k not in self.factors for side in ("A", "G")]
        full = self._plan(fresh)
        for key, stats in ready.items():
            if not all(bool(torch.isfinite(stats[side].sum())) for side in ("A", "G")):
                self.events.append(f"{key.label}: non-finite statistics; this batch left out of the factors")
                continue
            slot = self.factors.setdefault(key, {})
            for side in ("A", "G"):
                keep_full = slot[side].dim() == 2 if side in slot else (key, side) in full
                slot[side] = _update_factor(slot.get(side), stats[side], self.stat_decay, keep_full)
        self._pending = {}

    def update_inverses(self) -> None:
        for key, slot in self.factors.items():
            vals_a, vecs_a = eigen(slot["A"], self.damping, f"{key.label} A", self.events)
            vals_g, vecs_g = eigen(slot["G"], self.damping, f"{key.label} G", self.events)
            self.inverses[key] = (vals_a, vecs_a, vals_g, vecs_g)

    def blocks_of(self, name: str) -> list[BlockKey]:
        return [key for key in self.inverses if key.name == name]

    def apply_block(self, key: BlockKey, grad: torch.Tensor) -> torch.Tensor:
        """The damped natural gradient of one block; ``grad`` in the parameter's own orientation
        (``(d_in, c1 - c0)`` columns, or ``(c1 - c0, d_in)`` rows of a transposed weight)."""
        vals_a, vecs_a, vals_g, vecs_g = self.inverses[key]
        if key.transposed:
            return precondition(grad.T, vals_a, vecs_a, vals_g, vecs_g, self.damping).T
        return precondition(grad, vals_a, vecs_a, vals_g, vecs_g, self.damping)

    def spectra(self) -> dict[str, torch.Tensor]:
        """Eigenvalues of every factor (``"<block> A"``, ``"<block> G"``), descending."""
        out = {}
        for key, (vals_a, _, vals_g, _) in self.inverses.items():
            out[f"{key.label} A"] = torch.sort(vals_a, descending=True).values
            out[f"{key.label} G"] = torch.sort(vals_g, descending=True).values
        return out

    # ---- persistence -----------------------------------------------------------------------------

    def state(self) -> dict:
        """Factors and the eigendecompositions in use (the latter may be older than the factors)."""
        return {
            "factors": {_encode(k): dict(v) for k, v in self.factors.items()},
            "inverses": {_encode(k): {n: t for n, t in zip(("vals_a", "vecs_a", "vals_g", "vecs_g"), v) if t is not None}
                         for k, v in self.inverses.items()},
        }

    def load(self, state: dict) -> None:
        self.factors = {_decode(k): dict(v) for k, v in state["factors"].items()}
        self.inverses = {_decode(k): tuple(v.get(n) for n in ("vals_a", "vecs_a", "vals_g", "vecs_g"))
                         for k, v in state["inverses"].items()}

    def n_state_elements(self) -> int:
        """Numbers held: running factors plus eigenvalues and eigenvectors."""
        n = sum(t.numel() for slot in self.factors.values() for t in slot.values())
        n += sum(t.numel() for inv in self.inverses.values() for t in inv if t is not None)
        return n


def _encode(key: BlockKey) -> str:
    return f"{key.name}|{key.c0}|{key.c1}|{int(key.transposed)}"


def _decode(text: str) -> BlockKey:
    name, c0, c1, transposed = text.rsplit("|", 3)
    return BlockKey(name, int(c0), int(c1), bool(int(transposed)))


def kfac_candidates(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """Every 2-D trainable parameter: those the forward multiplies by become K-FAC blocks."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad and p.dim() == 2}


def finite_or_zero(update: torch.Tensor, label: str, events: list[str]) -> torch.Tensor:
    """The update, or zeros (logged) when any entry is not finite: weights never become NaN.
    One reduction decides: a NaN or an infinity anywhere makes the sum non-finite."""
    if bool(torch.isfinite(update.sum())):
        return update
    events.append(f"{label}: non-finite update skipped")
    log.warning("update of %s was not finite; skipped", label)
    return torch.zeros_like(update)


def factor_spectra(model: torch.nn.Module, loss_fn, *, max_dim: int = 1024) -> dict[str, torch.Tensor]:
    """Eigenvalues of the K-FAC factors ``A`` and ``G`` of every block of ``model`` at its current
    weights, from one forward/backward of ``loss_fn()`` (a diagnostic; the model's gradients are
    left as that backward set them)."""
    kfac = KFAC(kfac_candidates(model), damping=1.0, stat_decay=0.0, max_dim=max_dim, events=[])
    with kfac.capture():
        loss = loss_fn()
    loss.backward()
    kfac.update_factors()
    kfac.update_inverses()
    return kfac.spectra()
