"""``thermolens dynamics`` on a model: token clustering through depth and the model on the mean-field diagram.

1. Order parameters through depth (``measure.depth_table``): ``r_1``, ``r_2``, the mean pairwise cosine and
   the cluster count of the token states of each sequence, after every layer (embeddings first), beside the
   null (same norms, random directions) and with the special-token, position and corpus-mean components
   removed; per head's output likewise; the pairwise-cosine distribution.
2. Temperature sweep: the pass re-run with every head at ``T`` (inside the forward pass), the last layer's
   order parameters against ``beta = 1/T`` with bootstrap bands and the shape of the curve. A forward pass
   keeps no state from one temperature to the next, so heating and cooling sweeps are the same passes:
   a transformer cannot show hysteresis in ``T`` (the particle model can; ``simulate.py``).
3. Effective parameters per layer (``measure.effective_table``): ``beta_eff`` from the logits, ``K_eff`` from
   the updates, with bootstrap intervals, and ``K_eff / K_#(beta_eff, d)`` with the Landau prediction on
   S^(d-1) (continuous below ``beta_*(d)``, discontinuous above). In the sweep ``beta_eff`` scales as ``1/T``
   and ``K_eff`` is measured again at every ``T``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from thermolens.experiments.dynamics.measure import (
    MeasureConfig,
    depth_table,
    effective_table,
    head_table,
    histogram_table,
    transition_shape,
)
from thermolens.experiments.dynamics.trace import trace

__all__ = ["DynamicsConfig", "DynamicsResult", "run_dynamics", "sequences"]

SWEEP_QUANTITIES = ("r1", "mean_cosine", "n_clusters")


@dataclass(frozen=True)
class DynamicsConfig:
    """seq_len: tokens per sequence (special tokens included); n_sequences: sequences (systems) to read;
    temperatures: attention temperatures of the sweep (None: T = 1 only); batch_size: sequences per pass;
    measure: order-parameter and bootstrap settings."""

    seq_len: int = 128
    n_sequences: int = 40
    temperatures: tuple[float, ...] | None = None
    batch_size: int = 8
    measure: MeasureConfig = field(default_factory=MeasureConfig)

    def __post_init__(self) -> None:
        if self.seq_len < 3:
            raise ValueError(f"seq_len={self.seq_len} must be >= 3")
        if self.n_sequences < 2:
            raise ValueError(f"n_sequences={self.n_sequences} must be >= 2 (the bootstrap resamples sequences)")
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size} must be >= 1")
        if self.temperatures is not None:
            temps = np.asarray(self.temperatures, dtype=np.float64)
            if temps.size < 2 or not np.all(np.isfinite(temps)) or np.any(temps <= 0):
                raise ValueError("temperatures must be at least two positive finite numbers, e.g. 0.25:4:24")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DynamicsResult:
    """Tables of one run (see the module docstring); ``summary()`` gives the headline numbers."""

    name: str
    n_sequences: int
    n_tokens: int
    d: int
    n_layers: int
    n_heads: int
    special_positions: tuple[int, ...]
    depth: pd.DataFrame
    heads: pd.DataFrame
    histogram: pd.DataFrame
    effective: pd.DataFrame
    head_beta: pd.DataFrame
    sweep: pd.DataFrame | None
    sweep_effective: pd.DataFrame | None
    shape: dict | None
    timings: dict[str, float]

    TABLES = ("depth", "heads", "histogram", "effective", "head_beta", "sweep", "sweep_effective")

    def curve(self, quantity: str = "mean_cosine", component: str = "tokens") -> np.ndarray:
        rows = self.depth[(self.depth["quantity"] == quantity) & (self.depth["component"] == component)]
        return rows.sort_values("layer")["value"].to_numpy()

    def summary(self) -> dict[str, Any]:
        eff = self.effective
        out: dict[str, Any] = {
            "model": self.name, "n_sequences": self.n_sequences, "n_tokens": self.n_tokens, "d": self.d,
            "mean_cosine": self.curve().tolist(),
            "null": {"mean_cosine": self.curve(component="null").tolist(), "r1": self.curve("r1", "null").tolist()},
            "r1": self.curve("r1").tolist(), "r2": self.curve("r2").tolist(),
            "n_clusters": self.curve("n_clusters").tolist(),
            "components": {c: self.curve(component=c).tolist()
                           for c in ("no_special", "minus_position", "minus_mean")
                           if (self.depth["component"] == c).any()},
            "special_positions": list(self.special_positions),
            "beta_eff": eff["beta_eff"].tolist(),
            "beta_eff_ci": eff[["beta_lo", "beta_hi"]].to_numpy().tolist(),
            "K_eff": eff["K_eff"].tolist(),
            "K_ratio": eff["K_ratio"].tolist(),
            "landau": eff["landau"].tolist(),
            "beta_star_d": float(eff["beta_star"].iloc[0]) if len(eff) else None,
        }
        if self.shape is not None:
            out["sweep"] = {"shape": self.shape}
        return out

    def save(self, run_dir: Path) -> None:
        from thermolens import io

        for name in self.TABLES:
            table = getattr(self, name)
            if table is not None and len(table):
                io.write_table(Path(run_dir) / f"{name}.parquet", table)


def sequences(loaded: Any, texts: Sequence[str] | None, config: DynamicsConfig) -> tuple[Any, np.ndarray]:
    """Full-length token sequences ``(S, seq_len)`` from the corpus, and the positions of special tokens.

    Only sequences without padding are kept (the particle picture needs ``n`` equal); a corpus shorter than
    one sequence is refused.
    """
    from thermolens.data import corpus

    if loaded.tokenizer is None:
        raise ValueError(f"model {loaded.name!r} has no tokenizer; put its tokenizer files beside the weights")
    texts = [corpus.builtin_text()] if texts is None else list(texts)
    batches = corpus.tokenize_corpus(loaded.tokenizer, texts, seq_len=config.seq_len,
                                     max_tokens=config.seq_len * config.n_sequences,
                                     model_max_length=loaded.max_positions)
    full = batches.attention_mask.bool().all(dim=1)
    if not bool(full.any()):
        raise ValueError(
            f"the corpus holds {batches.n_tokens} tokens, shorter than one sequence of {config.seq_len}; "
            "pass more text or lower --seq-len"
        )
    tokens = batches.input_ids[full]
    special_ids = np.asarray(sorted(set(getattr(loaded.tokenizer, "all_special_ids", []) or [])))
    special = np.isin(tokens.numpy(), special_ids).all(axis=0)
    return tokens, special


def check_heatable(model: Any) -> None:
    """Refuse a model whose attention the lens cannot heat, naming it."""
    from thermolens.experiments.dynamics.trace import is_hooked
    from thermolens.models.loading import LoadedModel, check_supported

    if is_hooked(model):
        return
    if not isinstance(model, LoadedModel):
        raise ValueError(
            f"{type(model).__name__} is not a model the lens can heat; give a Hugging Face model (LoadedModel) "
            "or a thermolens HookedTransformer"
        )
    check_supported(model.model)


def _sweep(model: Any, tokens: Any, config: DynamicsConfig, beta_t1: pd.DataFrame,
           progress: Callable | None) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Last-layer order parameters and per-layer K_eff at every temperature (heating order: T descending
    means beta ascending; the passes do not depend on the order)."""
    from thermolens.experiments.dynamics.measure import mean_ci
    from thermolens.meanfield.order import order_parameters

    m = config.measure
    temps = sorted(config.temperatures, reverse=True)  # beta ascending
    rows, eff_rows = [], []
    for T in (progress(temps) if progress else temps):
        tr = trace(model, tokens, T=T, heads=False, logits=False, batch_size=config.batch_size)
        last = order_parameters(tr.states[-1], cluster_cosine=m.cluster_cosine, seed=m.seed)
        for quantity in SWEEP_QUANTITIES:
            est, lo, hi = mean_ci(getattr(last, quantity), n_boot=m.n_boot, seed=m.seed)
            rows.append({"T": T, "beta": 1.0 / T, "quantity": quantity, "value": est, "lo": lo, "hi": hi})
        eff, _ = effective_table(tr.states, None, m, beta_fixed=beta_t1["beta_eff"].to_numpy() / T)
        eff_rows.append(eff.assign(T=T))
    sweep, sweep_eff = pd.DataFrame(rows), pd.concat(eff_rows, ignore_index=True)
    r1 = sweep[sweep["quantity"] == "r1"].sort_values("beta")
    shape = transition_shape(r1["beta"].to_numpy(), r1["value"].to_numpy(), r1["lo"].to_numpy(), r1["hi"].to_numpy())
    shape["hysteresis"] = "not possible: a forward pass keeps no state between temperatures"
    shape.update(mean_field_prediction(sweep_eff, shape["shape"]))
    return sweep, sweep_eff, shape


def mean_field_prediction(sweep_eff: pd.DataFrame, measured: str) -> dict[str, Any]:
    """Where mean-field theory puts a transition along the sweep, and whether the measured shape agrees.

    For every layer, ``K_eff / K_#`` along the sweep (``beta_eff`` rises as ``1/T``) is followed for crossings
    of 1 (linear interpolation in ``log T``); at a crossing the Landau prediction at that ``beta_eff`` says
    continuous (below ``beta_*(d)``) or discontinuous. The theory predicts a jump when some layer crosses at
    ``beta_eff > beta_*(d)``, continuous growth when crossings exist and all are below it, and no transition
    in the range otherwise. ``agrees`` compares that with the measured shape (jump vs continuous or flat).
    """
    crossings = []
    for layer, rows in sweep_eff.groupby("layer"):
        rows = rows[np.isfinite(rows["K_ratio"])].sort_values("T", ascending=False)
        excess = rows["K_ratio"].to_numpy() - 1.0
        for i in np.flatnonzero(np.sign(excess[:-1]) * np.sign(excess[1:]) < 0):
            w = excess[i] / (excess[i] - excess[i + 1])
            log_t = (1 - w) * np.log(rows["T"].iloc[i]) + w * np.log(rows["T"].iloc[i + 1])
            beta = (1 - w) * rows["beta_eff"].iloc[i] + w * rows["beta_eff"].iloc[i + 1]
            crossings.append({"layer": int(layer), "T": float(np.exp(log_t)), "beta_eff": float(beta),
                              "direction": "into clustered" if excess[i + 1] > 0 else "out of clustered",
                              "order": "discontinuous" if beta > rows["beta_star"].iloc[0] else "continuous"})
    if not crossings:
        predicted = "no transition in range"
    else:
        predicted = "jump" if any(c["order"] == "discontinuous" for c in crossings) else "continuous"
    agrees = (predicted == "jump") == (measured == "jump")
    return {"mean_field": predicted, "crossings": crossings, "agrees": bool(agrees)}


def run_dynamics(
    model: Any,
    tokens: Any,
    config: DynamicsConfig,
    *,
    name: str,
    special: np.ndarray | None = None,
    progress: Callable | None = None,
) -> DynamicsResult:
    """The whole measurement on ``model`` (a ``LoadedModel`` or ``HookedTransformer``) over ``tokens`` (S, n)."""
    check_heatable(model)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    tr = trace(model, tokens, T=1.0, batch_size=config.batch_size)
    timings["trace_s"] = time.perf_counter() - start
    m = config.measure
    start = time.perf_counter()
    depth = depth_table(tr.states, m, special=special)
    heads = head_table(tr.heads, m)
    histogram = histogram_table(tr.states, m)
    effective, head_beta = effective_table(tr.states, tr.logits, m)
    timings["measure_s"] = time.perf_counter() - start
    sweep = sweep_eff = shape = None
    if config.temperatures is not None:
        start = time.perf_counter()
        sweep, sweep_eff, shape = _sweep(model, tokens, config, effective, progress)
        timings["sweep_s"] = time.perf_counter() - start
    n_layers, n_heads = tr.n_layers, tr.heads.shape[3]
    special = np.zeros(tr.states.shape[2], bool) if special is None else special
    return DynamicsResult(
        name=name, n_sequences=int(tr.states.shape[1]), n_tokens=int(tr.states.shape[2]), d=int(tr.states.shape[3]),
        n_layers=n_layers, n_heads=n_heads, special_positions=tuple(int(i) for i in np.flatnonzero(special)),
        depth=depth, heads=heads, histogram=histogram, effective=effective, head_beta=head_beta,
        sweep=sweep, sweep_effective=sweep_eff, shape=shape, timings=timings,
    )
