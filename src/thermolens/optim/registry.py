"""Optimizers by name, built the same way for every task of the comparison harness.

Every optimizer gets the task's ``lr``, ``weight_decay`` and ``betas`` (no per-optimizer tuning):

``adamw``        ``torch.optim.AdamW``
``critical``     ``CriticalOptimizer``: K-FAC preconditioning, grafted to Adam, ``track-critical``
                 temperature control (the issue's headline configuration)
``kfac``         the same without temperature control (ablation)
``diag-fisher``  ``CriticalOptimizer`` with the diagonal empirical Fisher, no temperature control
``soap``         SOAP (Vyas et al. 2024, arXiv:2409.11321) from the ``pytorch-optimizer`` package
                 (``pip install thermolens[soap]``)

``kwargs`` are passed on to the optimizer's constructor (e.g. ``damping``, ``inv_every``).
"""

from __future__ import annotations

import torch

from thermolens.optim.critical import CriticalOptimizer

OPTIMIZERS = ("adamw", "critical", "kfac", "diag-fisher", "soap")


def make_optimizer(name: str, model: torch.nn.Module, *, lr: float, weight_decay: float,
                   betas: tuple[float, float] = (0.9, 0.98), kwargs: dict | None = None) -> torch.optim.Optimizer:
    """Build optimizer ``name`` (one of ``OPTIMIZERS``) over ``model``'s trainable parameters."""
    kwargs = dict(kwargs or {})
    params = [p for p in model.parameters() if p.requires_grad]
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=betas, **kwargs)
    if name in ("critical", "kfac", "diag-fisher"):
        base = {"critical": dict(preconditioner="kfac", temperature_control="track-critical"),
                "kfac": dict(preconditioner="kfac"), "diag-fisher": dict(preconditioner="diag")}[name]
        return CriticalOptimizer(model, lr=lr, weight_decay=weight_decay, betas=betas, **{**base, **kwargs})
    if name == "soap":
        try:
            from pytorch_optimizer import SOAP
        except ImportError:
            raise ValueError("optimizer 'soap' needs the pytorch-optimizer package: pip install thermolens[soap]") from None
        return SOAP(params, lr=lr, weight_decay=weight_decay, betas=betas, **kwargs)
    raise ValueError(f"optimizer {name!r} is unknown; choose from {', '.join(OPTIMIZERS)}")
