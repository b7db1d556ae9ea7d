"""Measurements on token states through depth: order parameters with their null, effective parameters.

Everything here takes states ``(n_layers + 1, S, n, d)`` (index 0 the embeddings; ``S`` sequences, the
systems of the particle picture; ``n`` tokens, its particles) and returns tidy tables with a bootstrap
interval over sequences. The same functions serve a real model's :class:`~.trace.Trace` and the particle
model's recorded states, so model and theory share one pipeline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from thermolens.meanfield.effective import LogitSums, bootstrap_sums, coupling_sums
from thermolens.meanfield.order import (
    cosine_histogram,
    order_parameters,
    random_directions,
    without_global_mean,
    without_position_mean,
)

__all__ = ["MeasureConfig", "depth_table", "effective_table", "head_table", "histogram_table", "mean_ci"]

QUANTITIES = ("r1", "r2", "mean_cosine", "n_clusters")
COMPONENTS = ("tokens", "null", "no_special", "minus_position", "minus_mean")


@dataclass(frozen=True)
class MeasureConfig:
    """cluster_cosine: the cosine at which average linkage stops merging (cluster count).
    n_boot: bootstrap resamples of sequences. hist_bins: bins of the pairwise-cosine histogram on [-1, 1].
    seed: the null's random directions and the bootstrap."""

    cluster_cosine: float = 0.5
    n_boot: int = 500
    hist_bins: int = 80
    seed: int = 0

    def __post_init__(self) -> None:
        if not -1 < self.cluster_cosine < 1:
            raise ValueError(f"cluster_cosine={self.cluster_cosine} must lie strictly between -1 and 1 (e.g. 0.5)")
        if self.n_boot < 0:
            raise ValueError(f"n_boot={self.n_boot} must be >= 0 (0 switches the bootstrap off)")
        if self.hist_bins < 2:
            raise ValueError(f"hist_bins={self.hist_bins} must be >= 2")


def mean_ci(values: np.ndarray, *, n_boot: int, seed: int) -> tuple[float, float, float]:
    """Mean over sequences of per-sequence ``values`` ``(S,)`` and its bootstrap 95% interval."""
    values = np.asarray(values, dtype=np.float64)
    est, lo, hi = bootstrap_sums(lambda s, c: s / c, (values, np.ones_like(values)), n_boot=n_boot, seed=seed)
    return float(est), float(lo), float(hi)


def _rows(layer: int, component: str, params, config: MeasureConfig) -> list[dict]:
    rows = []
    for quantity in QUANTITIES:
        values = getattr(params, quantity)
        if values is None:
            continue
        est, lo, hi = mean_ci(values, n_boot=config.n_boot, seed=config.seed)
        rows.append({"layer": layer, "component": component, "quantity": quantity, "value": est, "lo": lo, "hi": hi})
    return rows


def component_states(states: np.ndarray, component: str, special: np.ndarray, seed: int) -> np.ndarray | None:
    """One layer's states ``(S, n, d)`` as ``component`` sees them (None when it does not apply)."""
    if component == "tokens":
        return states
    if component == "null":
        return random_directions(states, seed=seed)
    if component == "no_special":
        keep = ~special
        return states[:, keep] if special.any() and keep.sum() >= 2 else None
    if component == "minus_position":  # special tokens at fixed positions are all position: left out
        kept = states[:, ~special] if special.any() else states
        return without_position_mean(kept) if states.shape[0] >= 2 and kept.shape[1] >= 2 else None
    if component == "minus_mean":
        return without_global_mean(states)
    raise ValueError(f"unknown component {component!r}; choose one of {', '.join(COMPONENTS)}")


def depth_table(
    states: np.ndarray,
    config: MeasureConfig,
    *,
    special: np.ndarray | None = None,
    components: tuple[str, ...] = COMPONENTS,
    clusters: bool = True,
) -> pd.DataFrame:
    """Order parameters of every layer and component: columns layer, component, quantity, value, lo, hi.

    ``special``: ``(n,)`` bool, positions that hold a special token in every sequence (``no_special`` drops
    them). Cluster counts are computed for ``tokens`` and ``null`` only (they dominate the cost).
    """
    special = np.zeros(states.shape[2], dtype=bool) if special is None else np.asarray(special, dtype=bool)
    rows: list[dict] = []
    null = None  # directions only: the null's law does not depend on the layer, so one draw serves all
    for layer, layer_states in enumerate(states):
        for component in components:
            if component == "null" and null is not None:
                rows.extend(dict(row, layer=layer) for row in null)
                continue
            x = component_states(layer_states, component, special, config.seed)
            if x is None:
                continue
            params = order_parameters(
                x, clusters=clusters and component in ("tokens", "null"), cluster_cosine=config.cluster_cosine,
                seed=config.seed,
            )
            new = _rows(layer, component, params, config)
            rows.extend(new)
            if component == "null":
                null = new
    return pd.DataFrame(rows)


def head_table(heads: np.ndarray, config: MeasureConfig) -> pd.DataFrame:
    """Order parameters of every head's output ``(n_layers, S, n, H, d_head)``, beside their null (one draw:
    the null's directions do not depend on the head). The heads of a layer are measured as ``H x S`` systems
    at once. Heads whose output is zero for some token (no direction there) are left out.

    Columns: layer (1-based: the block that holds the head), head, quantity, value, lo, hi, null.
    """
    rows = []
    null = order_parameters(random_directions(heads[0, :, :, 0], seed=config.seed), clusters=False)
    n_layers, S, n, H, d_head = heads.shape
    for block, per_layer in enumerate(heads):
        z = np.ascontiguousarray(per_layer.transpose(2, 0, 1, 3))  # (H, S, n, d_head)
        alive = [h for h in range(H) if np.all(np.einsum("snd,snd->sn", z[h], z[h]) > 0)]
        if not alive:
            continue
        params = order_parameters(z[alive].reshape(len(alive) * S, n, d_head), clusters=False)
        for quantity in ("r1", "r2", "mean_cosine"):
            values = getattr(params, quantity).reshape(len(alive), S).T  # (S, heads)
            est, lo, hi = bootstrap_sums(lambda v, c: v / c, (values, np.ones_like(values)), n_boot=config.n_boot,
                                         seed=config.seed)
            rows.extend({"layer": block + 1, "head": h, "quantity": quantity, "value": float(e), "lo": float(a),
                         "hi": float(b), "null": float(getattr(null, quantity).mean())}
                        for h, e, a, b in zip(alive, est, lo, hi))
    return pd.DataFrame(rows)


def histogram_table(states: np.ndarray, config: MeasureConfig) -> pd.DataFrame:
    """Pairwise-cosine distribution of every layer, tokens and null: layer, component, lo, hi, density."""
    edges = np.linspace(-1.0, 1.0, config.hist_bins + 1)
    null = cosine_histogram(random_directions(states[0], seed=config.seed), edges, seed=config.seed)
    rows = []
    for layer, layer_states in enumerate(states):
        for component, counts in (("tokens", cosine_histogram(layer_states, edges, seed=config.seed)), ("null", null)):
            density = counts / max(counts.sum(), 1) / np.diff(edges)
            rows.extend({"layer": layer, "component": component, "lo": a, "hi": b, "density": p}
                        for a, b, p in zip(edges[:-1], edges[1:], density))
    return pd.DataFrame(rows)


def effective_table(states: np.ndarray, logits: tuple[LogitSums, ...] | None, config: MeasureConfig, *,
                    beta_fixed: float | np.ndarray | None = None,
                    after: np.ndarray | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``beta_eff`` (from the logits) and ``K_eff`` (from the updates) of every block, placed on the sphere's
    mean-field diagram; and the per-head ``beta`` table.

    ``beta_fixed`` (one value, or one per block) replaces the logit fit: the particle model, whose ``beta`` is
    known, and a model heated to ``T``, whose heads' softmax sees ``l / T``, so that each block's ``beta`` is its
    ``T = 1`` slope over ``T``. ``after``: the states
    one short step after each of ``states`` (the particle model's probes), replacing the next layer as the
    update's end point; its rows are numbered from 0. Returns
    ``(layers, heads)``: layers has layer (1-based block), beta_eff, beta_lo, beta_hi, logit_r2, K_eff, K_lo,
    K_hi, dtau, n_kept, d, K_sharp, K_ratio, K_ratio_lo, K_ratio_hi, landau (the local prediction at
    beta_eff: continuous / discontinuous / none when beta_eff <= 0), beta_star (of S^(d-1)).
    """
    from thermolens.meanfield.sphere import sphere_landau, sphere_threshold

    d = states.shape[-1]
    beta_star = sphere_threshold(d)
    rows, head_rows = [], []
    ends = states[1:] if after is None else after
    fixed = None if beta_fixed is None else np.broadcast_to(np.asarray(beta_fixed, dtype=np.float64), (len(ends),))
    seed = config.seed
    for block in range(len(ends)):
        if fixed is not None:
            beta, b_lo, b_hi, r2 = float(fixed[block]), float(fixed[block]), float(fixed[block]), 1.0
        else:
            sums = logits[block]
            totals = (sums.sxy, sums.sxx, sums.syy)
            head_beta = sums.sxy.sum(0) / sums.sxx.sum(0)
            head_r2 = LogitSums.r2(*(t.sum(0) for t in totals))
            head_rows.extend({"layer": block + 1, "head": h, "beta": float(b), "logit_r2": float(q)}
                             for h, (b, q) in enumerate(zip(head_beta, head_r2)))
            # the layer's beta: the mean of its heads' slopes (every head sees the same cosines)
            est, lo, hi = bootstrap_sums(lambda xy, xx, yy: (xy / xx).mean(axis=-1), totals,
                                         n_boot=config.n_boot, seed=seed)
            beta, b_lo, b_hi, r2 = float(est), float(lo), float(hi), float(np.mean(head_r2))
        coupling = coupling_sums(states[block], ends[block], beta)
        K, K_lo, K_hi = (float(v) for v in bootstrap_sums(coupling.statistic("K"), coupling.totals,
                                                           n_boot=config.n_boot, seed=seed))
        dtau = float(coupling.statistic("dtau")(*(t.sum(0) for t in coupling.totals)))
        row = {"layer": block + (1 if after is None else 0), "beta_eff": beta, "beta_lo": b_lo, "beta_hi": b_hi,
               "logit_r2": r2, "K_eff": K, "K_lo": K_lo, "K_hi": K_hi, "dtau": dtau, "n_kept": int(coupling.count.sum()),
               "d": d, "beta_star": beta_star}
        if beta > 0 and math.isfinite(beta):
            landau = sphere_landau(d, beta)
            row.update(K_sharp=landau.K_sharp, K_ratio=K / landau.K_sharp, K_ratio_lo=K_lo / landau.K_sharp,
                       K_ratio_hi=K_hi / landau.K_sharp, landau=landau.transition)
        else:
            row.update(K_sharp=math.nan, K_ratio=math.nan, K_ratio_lo=math.nan, K_ratio_hi=math.nan, landau="none")
        rows.append(row)
    return pd.DataFrame(rows), pd.DataFrame(head_rows)


def transition_shape(x: np.ndarray, value: np.ndarray, lo: np.ndarray, hi: np.ndarray, *,
                     jump_fraction: float = 0.5) -> dict:
    """Shape of an order parameter along an ascending control grid ``x``.

    ``flat`` when the whole change is within the bootstrap bands (``|total|`` below the widest band);
    ``jump`` when one grid interval carries more than ``jump_fraction`` of the total change and that step
    exceeds the sum of the two bands' half-widths; else ``continuous``. A verdict is only as fine as the
    grid: a continuous but steep rise between two coarse grid points reads as a jump.
    """
    value, lo, hi = (np.asarray(a, dtype=np.float64) for a in (value, lo, hi))
    half = np.where(np.isfinite(hi - lo), (hi - lo) / 2, 0.0)
    total = float(value.max() - value.min())
    steps = np.diff(value)
    i = int(np.argmax(np.abs(steps)))
    out = {"total_change": total, "largest_step": float(steps[i]), "at": (float(x[i]), float(x[i + 1])),
           "jump_fraction": jump_fraction}
    if total <= 2 * half.max():
        out["shape"] = "flat"
    elif abs(steps[i]) > jump_fraction * total and abs(steps[i]) > half[i] + half[i + 1]:
        out["shape"] = "jump"
    else:
        out["shape"] = "continuous"
    return out
