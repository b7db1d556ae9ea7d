"""Sharpness: the top eigenvalue of the loss Hessian, plain and preconditioned, against the
stability thresholds of gradient descent and Adam (the "edge of stability").

Gradient descent at learning rate ``eta`` on a quadratic diverges along any direction whose
curvature exceeds ``2 / eta``; full-batch training drives the sharpness ``lambda_max(H)`` up to that
value and holds it there (Cohen et al. 2021, arXiv:2103.00065). For Adam written as
``theta <- theta - eta P^{-1} m`` with ``m`` the EMA (``beta1``) of gradients and
``P = (1 - beta1^t) (diag(sqrt(v^)) + eps)``, the preconditioned sharpness ``lambda_max(P^{-1} H)``
equilibrates at ``(2 + 2 beta1) / ((1 - beta1) eta)`` (38/eta for beta1 = 0.9; Cohen et al. 2022,
arXiv:2207.14484).

Hessian-vector products come from double backpropagation (Pearlmutter 1994), never forming ``H``.
``lanczos`` (full reorthogonalisation, the largest Ritz value of the tridiagonal matrix) gives the
largest *algebraic* eigenvalue of the symmetric ``H``; ``power_iteration`` the eigenvalue of largest
magnitude of any operator with a real dominant eigenvalue, which covers ``P^{-1} H`` (similar to the
symmetric ``P^{-1/2} H P^{-1/2}`` for ``P`` positive definite).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

Vectors = list[torch.Tensor]


@dataclass(frozen=True)
class Sharpness:
    """Top eigenvalue ``value``; ``n_iter`` matrix-vector products used; ``converged``: the last
    relative change was below the tolerance; ``method``."""

    value: float
    n_iter: int
    converged: bool
    method: str


def gd_threshold(lr: float) -> float:
    """``2 / lr``: the stability edge of gradient descent (Cohen et al. 2021)."""
    return 2.0 / lr


def adam_threshold(lr: float, beta1: float) -> float:
    """``(2 + 2 beta1) / ((1 - beta1) lr)``: the preconditioned edge of Adam (Cohen et al. 2022)."""
    return (2.0 + 2.0 * beta1) / ((1.0 - beta1) * lr)


def hvp_operator(loss_fn: Callable[[], torch.Tensor], params: Sequence[torch.Tensor]) -> Callable[[Vectors], Vectors]:
    """``v -> H v`` for the Hessian of ``loss_fn()`` with respect to ``params`` (one graph, reused)."""
    params = list(params)
    loss = loss_fn()
    grads = torch.autograd.grad(loss, params, create_graph=True)

    def hvp(vectors: Vectors) -> Vectors:
        out = torch.autograd.grad(grads, params, grad_outputs=vectors, retain_graph=True, allow_unused=True)
        return [torch.zeros_like(p) if o is None else o.detach() for o, p in zip(out, params)]

    return hvp


def _dot(a: Vectors, b: Vectors) -> float:
    return float(sum((x.double() * y.double()).sum() for x, y in zip(a, b)))


def _random_unit(params: Sequence[torch.Tensor], seed: int) -> Vectors:
    gen = torch.Generator().manual_seed(int(seed))
    v = [torch.randn(p.shape, generator=gen, dtype=p.dtype).to(p.device) for p in params]
    norm = _dot(v, v) ** 0.5
    return [x / norm for x in v]


def power_iteration(
    operator: Callable[[Vectors], Vectors], params: Sequence[torch.Tensor], *,
    n_iter: int = 100, tol: float = 1e-4, seed: int = 0,
) -> Sharpness:
    """Dominant eigenvalue of ``operator`` by power iteration (Rayleigh-quotient estimate
    ``<v, A v> / <v, v>`` with ``v`` the normalised iterate)."""
    v = _random_unit(params, seed)
    value, converged, it = 0.0, False, 0
    for it in range(1, n_iter + 1):
        w = operator(v)
        new = _dot(v, w)
        norm = _dot(w, w) ** 0.5
        if norm == 0.0 or not np.isfinite(norm):
            return Sharpness(float(new), it, False, "power")
        v = [x / norm for x in w]
        if it > 1 and abs(new - value) <= tol * max(abs(new), 1e-12):
            value, converged = new, True
            break
        value = new
    return Sharpness(float(value), it, converged, "power")


def lanczos(
    operator: Callable[[Vectors], Vectors], params: Sequence[torch.Tensor], *,
    n_iter: int = 30, tol: float = 1e-5, seed: int = 0,
) -> Sharpness:
    """Largest eigenvalue of a symmetric ``operator`` by Lanczos with full reorthogonalisation."""
    q = _random_unit(params, seed)
    basis: list[Vectors] = []
    alphas: list[float] = []
    betas: list[float] = []
    previous, converged, k = None, False, 0
    for k in range(1, n_iter + 1):
        basis.append(q)
        w = operator(q)
        alpha = _dot(q, w)
        alphas.append(alpha)
        for _ in range(2):  # full reorthogonalisation, twice ("twice is enough", Parlett)
            for b in basis:
                c = _dot(b, w)
                w = [x - c * y for x, y in zip(w, b)]
        beta = _dot(w, w) ** 0.5
        T = np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1)
        top = float(np.linalg.eigvalsh(T)[-1])
        if previous is not None and abs(top - previous) <= tol * max(abs(top), 1e-12):
            converged = True
            break
        previous = top
        if beta < 1e-10 * max(abs(alpha), 1.0):  # invariant subspace found: the Ritz values are exact
            converged = True
            break
        betas.append(beta)
        q = [x / beta for x in w]
    return Sharpness(top, k, converged, "lanczos")


def hessian_sharpness(loss_fn: Callable[[], torch.Tensor], params: Sequence[torch.Tensor], *,
                      n_iter: int = 30, tol: float = 1e-5, seed: int = 0) -> Sharpness:
    """``lambda_max(H)`` of ``loss_fn()`` (Lanczos; ``tol``: relative change that stops it)."""
    params = list(params)
    return lanczos(hvp_operator(loss_fn, params), params, n_iter=n_iter, tol=tol, seed=seed)


def preconditioned_sharpness(
    loss_fn: Callable[[], torch.Tensor], params: Sequence[torch.Tensor],
    apply_inverse: Callable[[Vectors], Vectors], *, n_iter: int = 100, seed: int = 0,
) -> Sharpness:
    """``lambda_max(P^{-1} H)`` by power iteration; ``apply_inverse(v) = P^{-1} v``."""
    params = list(params)
    hvp = hvp_operator(loss_fn, params)
    return power_iteration(lambda v: apply_inverse(hvp(v)), params, n_iter=n_iter, seed=seed)


def adam_inverse_preconditioner(optimizer: torch.optim.Optimizer) -> Callable[[Vectors], Vectors]:
    """``v -> P^{-1} v`` for a ``torch.optim.Adam``/``AdamW`` state (Cohen et al. 2022 convention)."""
    group = optimizer.param_groups[0]
    beta1, beta2 = group["betas"]
    eps = group["eps"]
    params = [p for g in optimizer.param_groups for p in g["params"]]

    def apply(vectors: Vectors) -> Vectors:
        out = []
        for p, v in zip(params, vectors):
            state = optimizer.state.get(p)
            if not state:
                out.append(v.clone())
                continue
            t = float(state["step"])
            vhat = state["exp_avg_sq"] / (1 - beta2 ** t)
            out.append(v / ((1 - beta1 ** t) * (vhat.sqrt() + eps)))
        return out

    return apply


def inverse_preconditioner(optimizer: torch.optim.Optimizer) -> Callable[[Vectors], Vectors] | None:
    """``P^{-1}`` of a ``CriticalOptimizer`` or an Adam-family optimizer; None for others."""
    if hasattr(optimizer, "apply_inverse_preconditioner"):
        return optimizer.apply_inverse_preconditioner
    if isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)):
        return adam_inverse_preconditioner(optimizer)
    return None
