"""From activations to cascades: unit events, the (token x layer) count lattice, two cascade definitions,
branching between layers, the two null models, and a synthetic branching network to validate it all.

Events (Villegas et al. 2019, arXiv:1902.10465, on why the threshold must be reported, not hidden). Unit
``i`` of layer ``l`` is *active* at a token when its activation deviates from the unit's own baseline by
more than a width::

    zscore    |x - mean_i| > h * sd_i            (mean, sd over a reference batch; h = the threshold)
    quantile  |x - median_i| > Q_q(|x - median_i|)  (the q-quantile of the unit's own deviations; q = threshold;
              torch's median: the lower middle value for an even count)

A deviation either way counts (residual-stream and attention coordinates are signed). Units that are
constant on the reference batch never fire. The count ``c[s, t, l]`` of active units at token ``t`` of
sequence ``s`` in layer ``l`` is the lattice every later step reads; several thresholds are counted in
the same pass over the activations (threshold robustness).

Cascades (sizes are numbers of unit events, i.e. sums of ``c`` over the cascade's sites):

``layer-time``  depth as time (the seed's "layer-wise activations as a branching process", Aranda Barois
                2024): per token, a cascade is a maximal run of consecutive layers with ``c > 0``; its
                duration is the number of layers. Runs that reach the last layer are censored (they might
                continue in a deeper network).
``token-layer`` connected clusters of sites with ``c > 0`` on each sequence's (token x layer) lattice,
                4-neighbour connectivity; duration = number of tokens spanned (tokens as time). Clusters
                touching the first or last real token of a sequence are censored.

Branching between layers: descendants per ancestor, ``sigma_l = < c[., ., l+1] / c[., ., l] >`` over the
tokens with ``c[., ., l] > 0`` (Beggs & Plenz 2003's ratio, with layers as generations). For a branching
process with mean offspring ``m``, ``E[c_{l+1} / c_l | c_l] = m`` exactly, so ``sigma`` is unbiased.

Nulls: ``shuffle_layers`` permutes the layer order of every token's counts independently (per-site
marginals and per-token totals kept, depth order destroyed; identical to shuffling the activations'
layer order, since events are per layer). ``rate_matched_counts`` fires every unit independently at its
own measured rate (per layer): the count of a site is then Poisson-binomial, sampled exactly from its
distribution.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from thermolens import stats

__all__ = ["BASELINES", "LATTICES", "Baseline", "fit_baseline", "layer_counts", "CountLattice",
           "LatticeBuilder", "Cascades", "cluster_labels", "cascades", "descendants_per_ancestor",
           "shuffle_layers", "rate_matched_counts", "susceptibility", "synthetic_branching_network"]

BASELINES = ("zscore", "quantile")
LATTICES = ("layer-time", "token-layer")


# --------------------------------------------------------------------------------------------------
# events


@dataclass(frozen=True)
class Baseline:
    """Per layer, every unit's centre ``(n_units,)`` and its widths ``(n_thresholds, n_units)``: unit ``i``
    fires at threshold ``k`` when ``|x_i - centre_i| > width[k, i]``. ``thresholds[0]`` is the main one."""

    method: str
    thresholds: tuple[float, ...]
    centre: dict[int, torch.Tensor]
    width: dict[int, torch.Tensor]
    reference_range: dict[int, tuple[float, float]]  # 90th and 99.9th percentiles of |z| (or |x - median|)

    @property
    def layers(self) -> tuple[int, ...]:
        return tuple(sorted(self.centre))


def _check_thresholds(thresholds: tuple[float, ...], method: str) -> None:
    if method not in BASELINES:
        raise ValueError(f"baseline {method!r} is unknown; choose one of {', '.join(BASELINES)}")
    if not thresholds:
        raise ValueError("give at least one threshold")
    t = np.asarray(thresholds, dtype=float)
    if not np.all(np.isfinite(t)):
        raise ValueError(f"thresholds {thresholds} must be finite")
    if method == "zscore" and np.any(t <= 0):
        raise ValueError(f"z-score thresholds must be > 0 (got {thresholds}); e.g. --threshold 3")
    if method == "quantile" and np.any((t <= 0) | (t >= 1)):
        raise ValueError(f"quantile thresholds must lie in (0, 1) (got {thresholds}); e.g. --threshold 0.99")


def _quantiles(x: torch.Tensor, qs: tuple[float, ...]) -> torch.Tensor:
    """Per-column quantiles ``(len(qs), n_cols)`` of ``x`` ``(n_rows, n_cols)``, linear interpolation (numpy's
    default); by one sort, so without ``torch.quantile``'s limit on the input size."""
    ordered = x.sort(dim=0).values
    pos = torch.tensor(qs, dtype=torch.float64) * (x.shape[0] - 1)
    lo = pos.floor().long()
    hi = torch.clamp(lo + 1, max=x.shape[0] - 1)
    frac = (pos - lo).to(x.dtype).to(x.device)[:, None]
    return ordered[lo.to(x.device)] * (1 - frac) + ordered[hi.to(x.device)] * frac


def fit_baseline(reference: dict[int, torch.Tensor], thresholds: tuple[float, ...], method: str = "zscore") -> Baseline:
    """Each unit's baseline from reference activations ``reference[layer]`` of shape (n_rows, n_units)."""
    _check_thresholds(tuple(thresholds), method)
    centre, width, spread = {}, {}, {}
    for layer, x in reference.items():
        if x.ndim != 2 or x.shape[0] < 2:
            raise ValueError(
                f"the reference activations of layer {layer} have shape {tuple(x.shape)}; need (rows >= 2, units)"
            )
        x64 = x.double()
        if method == "zscore":
            c = x64.mean(0)
            sd = x64.std(0)
            dead = ~(sd > 0)
            w = torch.stack([th * sd for th in thresholds])
            scale = torch.where(dead, torch.ones_like(sd), sd)
            dev = (x64 - c).abs() / scale
        else:
            c = x64.median(0).values
            dev = (x64 - c).abs()
            w = _quantiles(dev, thresholds)
            dead = ~(dev.amax(0) > 0)
        w[:, dead] = torch.inf
        centre[layer] = c.to(x.dtype)
        width[layer] = w.to(x.dtype)
        sample = dev.ravel()[:: max(1, dev.numel() // 1_000_000)].float().cpu().numpy()  # for messages only
        lo, hi = np.quantile(sample[np.isfinite(sample)], [0.9, 0.999])
        spread[layer] = (float(lo), float(hi))
    return Baseline(method, tuple(float(t) for t in thresholds), centre, width, spread)


def layer_counts(x: torch.Tensor, baseline: Baseline, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Active units per row at every threshold, ``(n_thresholds, n_rows)`` int32, and per-unit event counts at
    the main threshold, ``(n_units,)`` int64. ``x``: ``(n_rows, n_units)`` activations of ``layer``."""
    dev = (x - baseline.centre[layer]).abs_()  # (rows, units)
    width = baseline.width[layer]
    counts = torch.stack([(dev > width[k]).sum(-1, dtype=torch.int32) for k in range(width.shape[0])])
    unit_events = (dev > width[0]).sum(0)
    return counts, unit_events


@dataclass(frozen=True)
class CountLattice:
    """Active-unit counts ``(n_thresholds, n_seq, n_pos, n_layers)`` int32 on real tokens (0 elsewhere), the
    mask of real tokens ``valid`` ``(n_seq, n_pos)``, and per-unit event rates at the main threshold
    ``unit_rates`` ``(n_layers, n_units)`` (events per real token)."""

    counts: np.ndarray
    valid: np.ndarray
    thresholds: tuple[float, ...]
    unit_rates: np.ndarray

    @property
    def main(self) -> np.ndarray:
        return self.counts[0]

    @property
    def n_units(self) -> int:
        return int(self.unit_rates.shape[1])

    @property
    def n_layers(self) -> int:
        return int(self.counts.shape[-1])


class LatticeBuilder:
    """Accumulates ``layer_counts`` of activation rows into a ``CountLattice`` (the one place rows meet sites).

    ``add(layer, seq, pos, x)``: ``x`` ``(n, n_units)`` are the activations of ``layer`` at the sites
    ``(seq[j], pos[j])``; sites never added count 0 (quiet)."""

    def __init__(self, baseline: Baseline, n_seq: int, n_pos: int, n_layers: int) -> None:
        self.baseline = baseline
        self.counts = np.zeros((len(baseline.thresholds), n_seq, n_pos, n_layers), dtype=np.int32)
        self.unit_events: dict[int, np.ndarray] = {}

    def add(self, layer: int, seq: np.ndarray, pos: np.ndarray, x: torch.Tensor) -> None:
        c, unit_events = layer_counts(x, self.baseline, layer)
        self.counts[:, seq, pos, layer] = c.cpu().numpy()
        self.unit_events[layer] = self.unit_events.get(layer, 0) + unit_events.cpu().numpy()

    def build(self, valid: np.ndarray) -> CountLattice:
        n_real = max(int(valid.sum()), 1)
        n_units = next(iter(self.baseline.width.values())).shape[-1]
        rates = np.stack([self.unit_events.get(layer, np.zeros(n_units)).astype(np.float64) / n_real
                          for layer in range(self.counts.shape[-1])])
        return CountLattice(counts=self.counts, valid=valid, thresholds=self.baseline.thresholds, unit_rates=rates)


# --------------------------------------------------------------------------------------------------
# cascades


@dataclass(frozen=True)
class Cascades:
    """Complete cascades (censored ones left out) of one lattice definition: sizes (unit events), durations
    (layers or tokens), and how many were censored."""

    lattice: str
    sizes: np.ndarray
    durations: np.ndarray
    n_censored: int

    @property
    def n(self) -> int:
        return int(self.sizes.size)

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame({"size": self.sizes, "duration": self.durations})


def _layer_time(counts: np.ndarray, valid: np.ndarray) -> Cascades:
    cols = counts[valid].astype(np.float64)  # (n_tokens, n_layers)
    n_layers = cols.shape[1]
    # One quiet bin before and after every token's layer stack, so runs never join across tokens.
    padded = np.zeros((cols.shape[0], n_layers + 2))
    padded[:, 1:-1] = cols
    av = stats.avalanches_from_counts(padded.ravel(), threshold=0.0)
    layer_of_end = (av.starts + av.durations - 1) % (n_layers + 2)  # padded index of the run's last layer
    censored = layer_of_end == n_layers
    return Cascades("layer-time", av.sizes[~censored], av.durations[~censored], int(censored.sum()))


def cluster_labels(counts: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, int]:
    """Labels 1..n of the ``token-layer`` clusters (0 = quiet site), ``(n_seq, n_pos, n_layers)``, and n."""
    from scipy import ndimage

    active = (counts > 0) & valid[:, :, None]  # (seq, pos, layer)
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = [[0, 1, 0], [1, 1, 1], [0, 1, 0]]  # 4-neighbours in (pos, layer), never across sequences
    return ndimage.label(active, structure=structure)


def _token_layer(counts: np.ndarray, valid: np.ndarray) -> Cascades:
    labels, n = cluster_labels(counts, valid)
    if n == 0:
        return Cascades("token-layer", np.zeros(0), np.zeros(0, dtype=np.int64), 0)
    flat = labels.ravel()
    on = flat > 0
    idx = flat[on] - 1
    sizes = np.bincount(idx, weights=counts.ravel()[on].astype(np.float64), minlength=n)
    pos = np.broadcast_to(np.arange(counts.shape[1])[None, :, None], counts.shape).ravel()[on]
    first = np.full(n, np.iinfo(np.int64).max)
    last = np.full(n, -1)
    np.minimum.at(first, idx, pos)
    np.maximum.at(last, idx, pos)
    seq = np.broadcast_to(np.arange(counts.shape[0])[:, None, None], counts.shape).ravel()[on]
    seq_of = np.zeros(n, dtype=np.int64)
    seq_of[idx] = seq
    last_real = valid.sum(axis=1) - 1  # sequences are right-padded
    censored = (first == 0) | (last == last_real[seq_of])
    durations = last - first + 1
    return Cascades("token-layer", sizes[~censored], durations[~censored], int(censored.sum()))


def cascades(counts: np.ndarray, valid: np.ndarray, lattice: str) -> Cascades:
    """Cascades of ``counts`` ``(n_seq, n_pos, n_layers)`` on real tokens ``valid`` ``(n_seq, n_pos)``."""
    if lattice == "layer-time":
        return _layer_time(counts, valid)
    if lattice == "token-layer":
        return _token_layer(counts, valid)
    raise ValueError(f"unknown lattice {lattice!r}; choose one of {', '.join(LATTICES)}")


# --------------------------------------------------------------------------------------------------
# branching between layers, susceptibility


def descendants_per_ancestor(counts: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    """``(sigma_l, stderr_l)`` for l = 0..n_layers-2 and the pooled ``(sigma, stderr)`` over all layer pairs.

    ``sigma_l`` = mean of ``c_{l+1} / c_l`` over real tokens with ``c_l > 0`` (NaN where none)."""
    cols = counts[valid].astype(np.float64)  # (n_tokens, n_layers)
    ratios_all = []
    sigma, se = [], []
    for layer in range(cols.shape[1] - 1):
        ancestors = cols[:, layer]
        ok = ancestors > 0
        r = cols[ok, layer + 1] / ancestors[ok]
        ratios_all.append(r)
        sigma.append(r.mean() if r.size else np.nan)
        se.append(r.std(ddof=1) / np.sqrt(r.size) if r.size > 1 else np.nan)
    pooled = np.concatenate(ratios_all) if ratios_all else np.zeros(0)
    p_sigma = float(pooled.mean()) if pooled.size else float("nan")
    p_se = float(pooled.std(ddof=1) / np.sqrt(pooled.size)) if pooled.size > 1 else float("nan")
    return np.asarray(sigma), np.asarray(se), p_sigma, p_se


def susceptibility(counts: np.ndarray, valid: np.ndarray, n_units: int) -> float:
    """``chi = N Var(rho)``, rho = c / N the active fraction of a site, over every real (token, layer) site
    (the activity susceptibility of absorbing-state models, e.g. Moretti & Munoz 2013, arXiv:1308.6661)."""
    rho = counts[valid].astype(np.float64).ravel() / n_units
    return float(n_units * rho.var())


# --------------------------------------------------------------------------------------------------
# null models


def shuffle_layers(counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``counts`` ``(n_seq, n_pos, n_layers)`` with the layer order of every token permuted independently."""
    order = np.argsort(rng.random(counts.shape), axis=-1)
    return np.take_along_axis(counts, order, axis=-1)


def _poisson_binomial_pmf(p: np.ndarray) -> np.ndarray:
    """pmf of a sum of independent Bernoulli(p_i), by convolving one unit at a time (exact)."""
    pmf = np.zeros(p.size + 1)
    pmf[0] = 1.0
    for k, q in enumerate(p[p > 0], start=1):
        pmf[1 : k + 1] = pmf[1 : k + 1] * (1 - q) + pmf[:k] * q
        pmf[0] *= 1 - q
    return pmf


def rate_matched_counts(unit_rates: np.ndarray, valid: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Counts of units firing independently, each at its own rate ``unit_rates[l, i]``: ``(n_seq, n_pos, n_layers)``."""
    n_layers = unit_rates.shape[0]
    out = np.zeros(valid.shape + (n_layers,), dtype=np.int32)
    n_real = int(valid.sum())
    for layer in range(n_layers):
        cdf = np.cumsum(_poisson_binomial_pmf(np.clip(unit_rates[layer], 0.0, 1.0)))
        draws = np.searchsorted(cdf, rng.random(n_real) * cdf[-1], side="right")
        out[..., layer][valid] = np.minimum(draws, unit_rates.shape[1])
    return out


# --------------------------------------------------------------------------------------------------
# a synthetic network of known branching ratio


def synthetic_branching_network(
    m: float, *, n_trials: int, n_layers: int, n_units: int, seed: int = 0, noise: float = 0.1,
    chunk: int = 4096,
) -> Iterator[tuple[int, np.ndarray, torch.Tensor]]:
    """Activations of a layered network whose events form a Galton-Watson process with Poisson(m) offspring.

    Every trial (one "token") starts with one active unit in layer 0; each active unit of layer ``l``
    activates Poisson(m) uniformly chosen units of layer ``l + 1`` (a unit hit twice fires once: with
    activity far below ``n_units`` this is rare). Active units read ``1 + u``, quiet ones ``u``, with
    ``u ~ Uniform(-noise, noise)``. Yields ``(layer, trial_index, activations (n, n_units) float32)`` in
    layer order for the trials alive at that layer, in chunks of at most ``chunk`` rows; trials
    not listed are quiet at that layer (pure noise, below any threshold a z-score baseline puts above
    ``noise``), which is what lets deep networks be simulated in time proportional to their activity.
    """
    if not 0 < m <= 2:
        raise ValueError(f"m={m} must lie in (0, 2]")
    if min(n_trials, n_layers, n_units) < 1:
        raise ValueError("n_trials, n_layers and n_units must be positive")
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(int(seed))
    # The active set of a layer as (trial, unit) pairs sorted by trial; `trials` are the live ones.
    pair_trial = np.arange(n_trials)
    pair_unit = rng.integers(0, n_units, n_trials)
    for layer in range(n_layers):
        trials, first = np.unique(pair_trial, return_index=True)
        if trials.size == 0:
            return
        row_of_pair = np.searchsorted(trials, pair_trial)
        for start in range(0, trials.size, chunk):
            stop = min(start + chunk, trials.size)
            x = (torch.rand(stop - start, n_units, generator=gen) * 2 - 1) * noise
            sel = (row_of_pair >= start) & (row_of_pair < stop)
            x[torch.from_numpy(row_of_pair[sel] - start), torch.from_numpy(pair_unit[sel])] += 1.0
            yield layer, trials[start:stop], x
        n_active = np.diff(np.r_[first, pair_trial.size])
        n_children = rng.poisson(m * n_active)
        child_trial = np.repeat(trials, n_children)
        child_unit = rng.integers(0, n_units, child_trial.size)
        key = np.unique(child_trial * np.int64(n_units) + child_unit)  # a unit hit twice fires once
        pair_trial, pair_unit = key // n_units, key % n_units
