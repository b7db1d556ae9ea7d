"""Per-head attention temperature as training state: measured, scheduled, or steered to criticality.

A head's operating temperature ``T`` (the ``head_temperature`` buffer of ``HookedTransformer``,
``(layer, head)``) divides its logits inside the softmax (DESIGN.md §3). Its critical temperature
``T*`` is the peak of the specific heat ``C(T) = beta^2 Var_p(E)`` of its rows (``thermo``), measured
on the model's own raw logits ``l = q.k / sqrt(d_head)``: running the head at ``T = T*`` puts its
attention at the peak of its fluctuations.

Controls (``TemperatureConfig.mode``):

``scheduled``       anneal every head geometrically from its initial ``T_0`` to a target over
                    ``anneal_steps``: ``T(s) = T_0^(1-u) target^u``, ``u = min(s / anneal_steps, 1)``.
                    The target is ``target`` (one number), else the layer law below, else each
                    head's ``T*`` measured at the first control step.
``track-critical``  every ``every`` steps measure each head's ``T*`` on the latest training inputs
                    and move ``T`` a fraction ``rate`` of the way in ``log T``:
                    ``T <- T (T*/T)^rate`` (a relaxation that follows a moving ``T*``).

The seed paper's layer law (Aranda Barois 2024, §3.2): ``T_c(k) = T_0 (d / d_0)^(-alpha_k)`` for
layer ``k`` of a model of width ``d``; its exponents are not given in the paper, so they are the
user's (``CriticalLaw``) or read from a scaling-fit JSON (``load_law``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from thermolens.models.hooked import HookedTransformer
from thermolens.models.names import attn_logits, attn_mask
from thermolens.thermo import critical_temperature, heat_capacity

MODES = ("scheduled", "track-critical")


def default_grid() -> tuple[float, ...]:
    """41 temperatures from 0.02 to 50, log-spaced (about 5 points per e-fold)."""
    return tuple(float(t) for t in np.geomspace(0.02, 50.0, 41))


def require_attention(model: torch.nn.Module) -> HookedTransformer:
    """The model, if its attention heads can be found; ValueError saying what is looked for."""
    if isinstance(model, HookedTransformer) and hasattr(model, "head_temperature"):
        return model
    raise ValueError(
        f"found no attention heads in {type(model).__name__}: temperature control and critical init act on "
        "thermolens.models.hooked.HookedTransformer (blocks with W_QKV and a head_temperature buffer); "
        "use temperature_control=None (preconditioning only) or build the model as a HookedTransformer"
    )


# --------------------------------------------------------------------------------------------------
# the layer law


@dataclass(frozen=True)
class CriticalLaw:
    """``T_c(k) = T0 (d / d0)^(-alpha[k])``; ``alpha`` one exponent per layer (or one for all)."""

    T0: float
    d0: float
    alpha: tuple[float, ...]

    def __post_init__(self) -> None:
        if not (math.isfinite(self.T0) and self.T0 > 0):
            raise ValueError(f"T0={self.T0} must be a positive temperature (the critical T at width d0)")
        if not (math.isfinite(self.d0) and self.d0 > 0):
            raise ValueError(f"d0={self.d0} must be a positive reference width")
        if not self.alpha or not all(math.isfinite(a) for a in self.alpha):
            raise ValueError("alpha must hold at least one finite exponent (one per layer, or one for all)")

    def temperatures(self, n_layers: int, d: int) -> np.ndarray:
        """``(n_layers,)`` critical temperatures at width ``d``."""
        alpha = np.asarray(self.alpha, dtype=np.float64)
        if alpha.size == 1:
            alpha = np.full(n_layers, alpha[0])
        if alpha.size != n_layers:
            raise ValueError(f"the law has {alpha.size} exponents but the model has {n_layers} layers; "
                             "give one exponent per layer or a single one")
        return self.T0 * (d / self.d0) ** (-alpha)


def load_law(path: str | Path) -> CriticalLaw:
    """Read ``{"T0": .., "d0": .., "alpha": [..]}`` (``alpha`` a number or one per layer) from JSON."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"scaling-fit file {path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not JSON ({exc.msg}); write {{\"T0\": .., \"d0\": .., \"alpha\": [..]}}") from None
    try:
        alpha = data["alpha"]
        return CriticalLaw(float(data["T0"]), float(data["d0"]),
                           tuple(float(a) for a in (alpha if isinstance(alpha, list) else [alpha])))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path} lacks {exc}; a scaling fit needs keys T0, d0 and alpha") from None


# --------------------------------------------------------------------------------------------------
# measuring T* on the fly


@dataclass(frozen=True)
class HeadCriticality:
    """``T_star``, ``C_max``, ``at_edge``: ``(n_layers, n_heads)`` arrays from one measurement."""

    T_star: np.ndarray
    C_max: np.ndarray
    at_edge: np.ndarray


def measure_critical_temperatures(
    model: HookedTransformer, tokens: torch.Tensor, temperatures=None, *, max_rows: int = 512
) -> HeadCriticality:
    """``T*`` of every head: the peak of ``C(T)`` averaged over every query row with at least two
    visible keys of the first sequences of ``tokens`` ``(batch, pos)``, as many as give at most
    ``max_rows`` such rows per head (at least one sequence).

    The logits are those of the model at its current operating temperatures (the earlier layers'
    temperatures shape the later layers' inputs); each head's ``C(T)`` reweights its own raw logits
    by ``beta = 1/T`` (``thermo.heat_capacity``, exact).
    """
    model = require_attention(model)
    grid = np.asarray(default_grid() if temperatures is None else temperatures, dtype=np.float64)
    n_rows = int((torch.arange(tokens.shape[1]) >= (1 if model.cfg.causal else 0)).sum()) or 1
    tokens = tokens[: max(1, max_rows // n_rows)]
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, stop_after=attn_logits(model.cfg.n_layers - 1))
    curves = []
    for layer in range(model.cfg.n_layers):
        logits = cache[attn_logits(layer)]  # (batch, head, q, k)
        mask = cache[attn_mask(layer)]  # (q, k)
        rows = mask.sum(-1) >= 2  # (q,) rows whose energy fluctuates
        C = heat_capacity(logits[:, :, rows], 1.0 / grid, mask[rows])  # (n_T, batch, head, q')
        curves.append(C.mean(dim=(1, 3)).T.cpu().numpy())  # (head, n_T)
    point = critical_temperature(grid, np.stack(curves))  # fields (layer, head)
    return HeadCriticality(np.asarray(point.T_star, float), np.asarray(point.C_max, float),
                           np.asarray(point.at_edge, bool))


# --------------------------------------------------------------------------------------------------
# control


@dataclass(frozen=True)
class TemperatureConfig:
    """How the optimizer moves the heads' temperatures (see the module docstring)."""

    mode: str = "track-critical"
    every: int = 50  # steps between measurements / updates
    rate: float = 0.5  # track-critical: fraction of log(T*/T) closed per update
    target: float | None = None  # scheduled: one target for every head
    law: CriticalLaw | dict | str | None = None  # scheduled: per-layer target from the layer law
    # (a CriticalLaw, a dict {"T0", "d0", "alpha"}, or the path of a scaling-fit JSON)
    anneal_steps: int = 1000  # scheduled
    temperatures: tuple[float, ...] = field(default_factory=default_grid)  # grid on which C(T) is read
    max_rows: int = 512  # query rows per head of the latest batch used per measurement
    bounds: tuple[float, float] = (0.02, 50.0)  # T is kept inside

    def __post_init__(self) -> None:
        if isinstance(self.law, dict):
            try:
                law = CriticalLaw(float(self.law["T0"]), float(self.law["d0"]),
                                  tuple(float(a) for a in np.atleast_1d(self.law["alpha"])))
            except KeyError as exc:
                raise ValueError(f"law lacks {exc}; give T0, d0 and alpha") from None
            object.__setattr__(self, "law", law)
        elif isinstance(self.law, (str, Path)):
            object.__setattr__(self, "law", load_law(self.law))
        if self.mode not in MODES:
            raise ValueError(f"temperature control {self.mode!r} is unknown; choose one of {', '.join(MODES)}")
        if self.every < 1 or self.anneal_steps < 1 or self.max_rows < 1:
            raise ValueError("every, anneal_steps and max_rows must be >= 1")
        if not 0 < self.rate <= 1:
            raise ValueError(f"rate={self.rate} must lie in (0, 1] (1 jumps straight to T*)")
        if self.target is not None and not (math.isfinite(self.target) and self.target > 0):
            raise ValueError(f"temperature target {self.target} must be positive and finite (e.g. 1.0)")
        lo, hi = self.bounds
        if not 0 < lo < hi:
            raise ValueError(f"bounds={self.bounds} must be two positive temperatures, low < high")
        if len(self.temperatures) < 3 or any(t <= 0 for t in self.temperatures):
            raise ValueError("the C(T) grid needs at least 3 positive temperatures")


class TemperatureController:
    """Moves ``model.head_temperature`` according to a ``TemperatureConfig``; keeps a log of every
    update (``history``: step, layer, head, T, T_star) for diagnostics."""

    def __init__(self, model: torch.nn.Module, config: TemperatureConfig) -> None:
        self.model = require_attention(model)
        self.config = config
        self.initial = model.head_temperature.detach().clone()
        self.target: torch.Tensor | None = None
        self.history: list[dict[str, Any]] = []
        if config.mode == "scheduled" and config.target is None and config.law is not None:
            law = config.law.temperatures(model.cfg.n_layers, model.cfg.d_model)
            self.target = torch.tensor(law, dtype=torch.float32)[:, None].expand_as(self.initial).clone()
        elif config.mode == "scheduled" and config.target is not None:
            self.target = torch.full_like(self.initial, float(config.target))

    def _set(self, value: torch.Tensor) -> None:
        lo, hi = self.config.bounds
        with torch.no_grad():
            self.model.head_temperature.copy_(value.clamp(lo, hi).to(self.model.head_temperature))

    def _log(self, step: int, T_star: np.ndarray | None) -> None:
        T = self.model.head_temperature.detach().cpu().numpy()
        for layer in range(T.shape[0]):
            for head in range(T.shape[1]):
                self.history.append({"step": step, "layer": layer, "head": head, "T": float(T[layer, head]),
                                     "T_star": float(T_star[layer, head]) if T_star is not None else math.nan})

    def step(self, step: int, tokens: torch.Tensor | None) -> None:
        """Called by the optimizer after its update ``step`` (1-based) with the latest inputs."""
        cfg = self.config
        if step % cfg.every != 0 and step != 1:
            return
        needs_measure = cfg.mode == "track-critical" or self.target is None
        if needs_measure and tokens is None:
            return
        T_star = None
        if needs_measure:
            crit = measure_critical_temperatures(self.model, tokens, cfg.temperatures, max_rows=cfg.max_rows)
            T_star = crit.T_star
        current = self.model.head_temperature.detach().cpu()
        if cfg.mode == "track-critical":
            star = torch.as_tensor(T_star, dtype=torch.float32)
            ok = torch.isfinite(star)
            new = torch.where(ok, current * (torch.where(ok, star, current) / current) ** cfg.rate, current)
        else:
            if self.target is None:
                self.target = torch.as_tensor(T_star, dtype=torch.float32)
            u = min(step / cfg.anneal_steps, 1.0)
            new = self.initial.cpu() ** (1 - u) * self.target ** u
        self._set(new)
        self._log(step, T_star)

    def state(self) -> dict[str, Any]:
        return {"initial": self.initial, "target": self.target, "history": list(self.history)}

    def load(self, state: dict[str, Any]) -> None:
        self.initial = state["initial"].to(self.initial)
        self.target = state["target"]
        self.history = list(state["history"])
