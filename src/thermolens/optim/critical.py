"""``CriticalOptimizer``: the seed paper's criticality-aware optimizer (Aranda Barois 2024, §3.2, §5)
in a form that runs: Kronecker-factored Fisher preconditioning plus per-head temperature control.

Update of step ``t`` for a parameter with gradient ``g`` (decoupled weight decay as in AdamW,
Loshchilov & Hutter 2019, arXiv:1711.05101):

    m <- beta1 m + (1 - beta1) g            v <- beta2 v + (1 - beta2) g^2
    m^ = m / (1 - beta1^t)                  v^ = v / (1 - beta2^t)
    adam = m^ / (sqrt(v^) + eps)
    d = P(m^)                               the preconditioned direction (below)
    d <- d * ||adam|| / ||d||               grafting (graft="adam"; per K-FAC block / per tensor)
    theta <- theta (1 - lr wd) - lr d

``preconditioner``:

``kfac``   weight matrices the forward multiplies by get ``P = (A (x) G + damping I)^{-1}``
           (``thermolens.optim.kfac``; factors every ``stats_every`` steps, eigendecompositions every
           ``inv_every``; full factors within ``memory_factor`` x the parameter count, so the whole
           state stays within ``(2 + memory_factor) / 2`` x AdamW's); every other tensor (biases,
           embeddings, LayerNorm) takes the Adam direction.
``diag``   diagonal empirical Fisher: ``P = 1 / (v^ + damping)``.
``none``   ``P = I`` (momentum SGD direction).

Grafting (Agarwal et al. 2020, arXiv:2002.11803) takes the direction from the preconditioner and the
step length from Adam, layer by layer: Adam's learning rate then transfers, and the comparison with
AdamW at the same ``lr`` isolates the direction. ``graft="none"`` applies ``lr P(m^)`` as it is.

``temperature_control`` (``None``, ``"scheduled"``, ``"track-critical"`` or a ``TemperatureConfig``)
moves every head's operating temperature after each step (``thermolens.optim.temperature``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from thermolens.models.hooked import HookedTransformer
from thermolens.models.names import embed
from thermolens.optim.kfac import KFAC, finite_or_zero, kfac_candidates
from thermolens.optim.temperature import TemperatureConfig, TemperatureController

PRECONDITIONERS = ("kfac", "diag", "none")
GRAFTS = ("adam", "none")


def _keep(x: torch.Tensor) -> None:
    return None


class CriticalOptimizer(torch.optim.Optimizer):
    """K-FAC / diagonal-Fisher preconditioned optimizer with per-head temperature control.

    ``model``: the ``nn.Module`` to train (its forward is watched to find the K-FAC blocks; its
    trainable parameters form one param group, so LR schedulers and ``state_dict`` work as for any
    ``torch.optim.Optimizer``). See the module docstring for the update.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        lr: float = 1e-3,
        *,
        preconditioner: str = "kfac",
        temperature_control: str | TemperatureConfig | None = None,
        betas: tuple[float, float] = (0.9, 0.98),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        damping: float = 1e-3,
        stat_decay: float = 0.95,
        stats_every: int = 10,
        inv_every: int = 50,
        max_dim: int = 1024,
        memory_factor: float = 2.0,
        graft: str = "adam",
        temperature_kwargs: dict | None = None,
    ) -> None:
        if not lr > 0:
            raise ValueError(f"lr={lr} must be positive (e.g. 1e-3)")
        if preconditioner not in PRECONDITIONERS:
            raise ValueError(f"preconditioner {preconditioner!r} is unknown; choose one of {', '.join(PRECONDITIONERS)}")
        if graft not in GRAFTS:
            raise ValueError(f"graft {graft!r} is unknown; choose one of {', '.join(GRAFTS)}")
        if not (math.isfinite(damping) and damping > 0):
            raise ValueError(f"damping={damping} must be > 0: it keeps the Fisher inverse finite (e.g. 1e-3)")
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"betas={betas} must be two numbers in [0, 1), e.g. (0.9, 0.98)")
        if not 0 <= stat_decay < 1:
            raise ValueError(f"stat_decay={stat_decay} must lie in [0, 1)")
        if stats_every < 1 or inv_every < 1 or max_dim < 1:
            raise ValueError("stats_every, inv_every and max_dim must be >= 1")
        if not memory_factor >= 0:
            raise ValueError(f"memory_factor={memory_factor} must be >= 0 (K-FAC numbers per parameter, e.g. 2)")
        if weight_decay < 0 or eps <= 0:
            raise ValueError("weight_decay must be >= 0 and eps > 0")
        if isinstance(temperature_control, str):
            temperature_control = TemperatureConfig(mode=temperature_control, **(temperature_kwargs or {}))
        elif temperature_kwargs:
            raise ValueError("temperature_kwargs need temperature_control='scheduled' or 'track-critical'")
        named = {name: p for name, p in model.named_parameters() if p.requires_grad}
        if not named:
            raise ValueError(f"{type(model).__name__} has no trainable parameters")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)
        super().__init__(list(named.values()), defaults)
        self.model = model
        self.preconditioner, self.graft, self.damping = preconditioner, graft, damping
        self.stats_every, self.inv_every = stats_every, inv_every
        self._names = {id(p): name for name, p in named.items()}
        self.events: list[str] = []  # fallbacks taken (extra damping, skipped non-finite updates)
        n_params = sum(p.numel() for p in named.values())
        self.kfac = (KFAC(kfac_candidates(model), damping=damping, stat_decay=stat_decay, max_dim=max_dim,
                          events=self.events, budget=memory_factor * n_params) if preconditioner == "kfac" else None)
        self.controller = TemperatureController(model, temperature_control) if temperature_control else None
        self.n_steps = 0
        self.graft_scale: dict[str, float] = {}
        self._armed = self.kfac is not None
        self._mode = None
        self._tokens: torch.Tensor | None = None
        self._handles = [
            model.register_forward_pre_hook(self._before_forward, with_kwargs=True),
            model.register_forward_hook(self._after_forward, always_call=True),
        ]

    # ---- watching the forward pass ---------------------------------------------------------------

    def _before_forward(self, module, args, kwargs):
        if not (module.training and torch.is_grad_enabled()):
            return None
        if self.controller is not None and args and isinstance(args[0], torch.Tensor):
            self._tokens = args[0].detach()
        if not self._armed or self._mode is not None:
            return None
        self._armed = False
        if isinstance(module, HookedTransformer):
            # a hook on the embedding keeps per-example activations in the first layer (the model
            # otherwise projects a (token, position) table, whose rows are not examples)
            hooks = dict(kwargs.get("hooks") or {})
            hooks.setdefault(embed(), _keep)
            kwargs = {**kwargs, "hooks": hooks}
        self._mode = self.kfac.capture()
        self._mode.__enter__()
        return args, kwargs

    def _after_forward(self, module, args, output):
        if self._mode is not None:
            mode, self._mode = self._mode, None
            mode.__exit__(None, None, None)
        return None

    def close(self) -> None:
        """Detach the forward hooks from the model (the optimizer cannot capture statistics after)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    # ---- the update ------------------------------------------------------------------------------

    def _direction(self, name: str, mhat: torch.Tensor, vhat: torch.Tensor, adam: torch.Tensor) -> torch.Tensor:
        graft = self.graft == "adam"
        if self.kfac is not None:
            blocks = self.kfac.blocks_of(name)
            if not blocks:
                return adam
            out = adam.clone()
            for key in blocks:
                view = (lambda t: t[key.c0:key.c1]) if key.transposed else (lambda t: t[:, key.c0:key.c1])
                pre = self.kfac.apply_block(key, view(mhat))
                scale = float(view(adam).norm() / pre.norm().clamp_min(1e-30)) if graft else 1.0
                self.graft_scale[key.label] = scale
                view(out).copy_(pre * scale)
            return out
        if self.preconditioner == "diag":
            pre = mhat / (vhat + self.damping)
        else:
            pre = mhat
        scale = float(adam.norm() / pre.norm().clamp_min(1e-30)) if graft else 1.0
        self.graft_scale[name] = scale
        return pre * scale

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.n_steps += 1
        if self.kfac is not None:
            self.kfac.update_factors()
            if self.kfac.factors and (not self.kfac.inverses or self.n_steps % self.inv_every == 0
                                      or len(self.kfac.inverses) < len(self.kfac.factors)):
                self.kfac.update_inverses()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                name = self._names[id(p)]
                if not bool(torch.isfinite(p.grad.sum())):  # the moments would keep the NaN forever
                    self.events.append(f"{name}: non-finite gradient; step skipped for this tensor")
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                g = p.grad
                state["exp_avg"].mul_(beta1).add_(g, alpha=1 - beta1)
                state["exp_avg_sq"].mul_(beta2).addcmul_(g, g, value=1 - beta2)
                mhat = state["exp_avg"] / (1 - beta1 ** t)
                vhat = state["exp_avg_sq"] / (1 - beta2 ** t)
                adam = mhat / (vhat.sqrt() + eps)
                d = finite_or_zero(self._direction(name, mhat, vhat, adam), name, self.events)
                if wd:
                    p.mul_(1 - lr * wd)
                p.add_(d, alpha=-lr)
        if self.controller is not None:
            self.controller.step(self.n_steps, self._tokens)
        if self.kfac is not None and self.n_steps % self.stats_every == 0:
            self._armed = True
        return loss

    # ---- the effective preconditioner, for sharpness diagnostics ---------------------------------

    def apply_inverse_preconditioner(self, vectors: list[torch.Tensor]) -> list[torch.Tensor]:
        """``P^{-1} v`` for ``v`` shaped like the parameters (in ``param_groups`` order), where the
        last update was ``-lr P^{-1} m`` with ``m`` the EMA of gradients (Cohen et al. 2022,
        arXiv:2207.14484, convention: P includes the bias correction ``1 - beta1^t`` and the
        grafting scales of the last step are held fixed)."""
        out = []
        params = [p for g in self.param_groups for p in g["params"]]
        for p, v in zip(params, vectors, strict=True):
            state = self.state.get(p)
            if not state:
                out.append(v.clone())
                continue
            beta1, beta2 = self.param_groups[0]["betas"]
            t = state["step"]
            vhat = state["exp_avg_sq"] / (1 - beta2 ** t)
            adam_p = 1.0 / (vhat.sqrt() + self.param_groups[0]["eps"])
            name = self._names[id(p)]
            res = v * adam_p
            if self.kfac is not None:
                for key in self.kfac.blocks_of(name):
                    view = (lambda t_: t_[key.c0:key.c1]) if key.transposed else (lambda t_: t_[:, key.c0:key.c1])
                    view(res).copy_(self.kfac.apply_block(key, view(v)) * self.graft_scale.get(key.label, 1.0))
            elif self.preconditioner == "diag":
                res = v / (vhat + self.damping) * self.graft_scale.get(name, 1.0)
            elif self.preconditioner == "none":
                res = v * self.graft_scale.get(name, 1.0)
            out.append(res / (1 - beta1 ** t))
        return out

    # ---- persistence -----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["critical"] = {
            "n_steps": self.n_steps,
            "armed": self._armed,
            "graft_scale": dict(self.graft_scale),
            "events": list(self.events),
            "kfac": self.kfac.state() if self.kfac is not None else None,
            "temperature": self.controller.state() if self.controller is not None else None,
        }
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        extra = state_dict.pop("critical", None)
        super().load_state_dict(state_dict)
        if extra is None:
            return
        self.n_steps = int(extra["n_steps"])
        self._armed = bool(extra["armed"])
        self.graft_scale = dict(extra["graft_scale"])
        self.events[:] = extra["events"]
        if self.kfac is not None and extra["kfac"] is not None:
            self.kfac.load(extra["kfac"])
        if self.controller is not None and extra["temperature"] is not None:
            self.controller.load(extra["temperature"])

    def state_elements(self) -> int:
        """Numbers held as optimizer state (moments, K-FAC factors and eigenbases)."""
        n = sum(t.numel() for s in self.state.values() for t in s.values() if isinstance(t, torch.Tensor))
        return n + (self.kfac.n_state_elements() if self.kfac is not None else 0)
