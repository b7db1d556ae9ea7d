"""The main job: thermodynamics of every attention head of a model (``thermolens scan``).

For each head the attention rows over a corpus are read as canonical ensembles (``thermolens.thermo``)
and followed across a grid of temperatures. Two modes:

``quenched``
    the pre-softmax logits are captured once (one forward pass per batch) and every temperature is
    evaluated from them in closed form — the fast path;
``propagated``
    the temperature is applied inside the forward pass (all heads, or the chosen ones), so downstream
    layers feel it; this is the seed paper's ``collect_attention_patterns(model, dataset, T)``
    (Aranda Barois 2024, §3.1). Each heated head is measured at its own operating temperature, and the
    model's loss is recorded at every T where the model has a head to score.

Per head the result reports the critical temperature ``T*`` (the refined maximum of the specific heat
``C(T)``) with a bootstrap confidence interval over input sequences, next to ``T*`` of two null ensembles
matched to the head (DESIGN.md §3, "Null model"): Gaussian logits of the same key structure and logit
spread, and the head's own row-centred logits re-dealt across rows.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from thermolens import io

Mode = Literal["quenched", "propagated"]
ProgressFn = Callable[[int, int], None]

#: 64 temperatures, 7 per octave, from 0.05 to 25.6 (= 0.05:25.6:64): octave-aligned, so the fused
#: ensemble kernel takes most Boltzmann weights as squares of others (``thermo.sequence_sums``).
DEFAULT_TEMPERATURES = tuple(float(t) for t in np.geomspace(0.05, 25.6, 64))


@dataclass(frozen=True)
class ScanConfig:
    """Everything a scan depends on besides the model and the text.

    temperatures: ascending grid of T (T = 1 is the model's own operating point).
    mode: ``"quenched"`` (logits captured once) or ``"propagated"`` (T applied inside the forward pass).
    seq_len / max_tokens / batch_size: how the corpus is cut and fed; max_tokens counts real tokens.
    layers / heads: restrict the scan (None = all); in propagated mode they also choose the heated heads.
    n_boot: bootstrap resamples of sequences for the CI of T*; ci: its coverage.
    null_sequences: sequences on which the null ensembles are drawn (their T* depends only on the
        number of keys and the logit spread, so a few sequences determine it well).
    bootstrap_blocks: the bootstrap's resampling units. Up to this many sequences each is its own unit;
        beyond, contiguous runs of sequences are summed into this many blocks (``thermo.SequenceBlocks``),
        so the scan's memory stays flat in corpus length. Point estimates do not depend on it.
    """

    temperatures: tuple[float, ...] = DEFAULT_TEMPERATURES
    mode: Mode = "quenched"
    seq_len: int = 128
    max_tokens: int = 16384
    batch_size: int = 16
    layers: tuple[int, ...] | None = None
    heads: tuple[int, ...] | None = None
    n_boot: int = 200
    ci: float = 0.95
    null_sequences: int = 4
    bootstrap_blocks: int = 512
    seed: int = 0

    def __post_init__(self) -> None:
        temps = np.asarray(self.temperatures, dtype=float)
        if temps.size == 0:
            raise ValueError("the temperature grid is empty; give at least one temperature, e.g. 0.05:25.6:64")
        if not np.all(np.isfinite(temps)) or np.any(temps <= 0):
            raise ValueError("temperatures must be finite and positive; e.g. --temperatures 0.05:25.6:64")
        if temps.size > 1 and np.any(np.diff(temps) <= 0):
            raise ValueError("the temperature grid must be strictly ascending")
        if self.mode not in ("quenched", "propagated"):
            raise ValueError(f"mode must be 'quenched' or 'propagated', not {self.mode!r}")
        if self.max_tokens <= 0:
            raise ValueError(f"max_tokens must be positive (got {self.max_tokens}); e.g. --max-tokens 16384")
        if self.seq_len < 2:
            raise ValueError(f"seq_len must be at least 2 (got {self.seq_len})")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1 (got {self.batch_size})")
        if self.n_boot < 0:
            raise ValueError(f"n_boot must be >= 0 (got {self.n_boot})")
        if not 0 < self.ci < 1:
            raise ValueError(f"ci must lie in (0, 1) (got {self.ci})")
        if self.null_sequences < 1:
            raise ValueError(f"null_sequences must be at least 1 (got {self.null_sequences})")
        if self.bootstrap_blocks < 2:
            raise ValueError(f"bootstrap_blocks must be at least 2 (got {self.bootstrap_blocks})")

    def to_dict(self) -> dict[str, Any]:
        return io.to_jsonable(self)


@dataclass(frozen=True)
class ScanResult:
    """Outcome of a scan.

    heads: one row per (layer, head): ``T_star`` with ``T_star_lo/hi`` (bootstrap CI over sequences),
        ``C_max``, ``at_edge`` (maximum on the grid's edge: T* is then only a bound), ``n_keys`` (mean
        valid keys per row), ``logit_std``, the null ensembles' ``T_star_null_gauss``/``_shuffled`` and
        ``C_max_null_*``, ``differs_from_null`` (the CI excludes both null T*), ``T_star_kim``
        (= T* sqrt(d_head), Kim's convention), ``null_separation`` (distance of ln T* to the nearer null in
        bootstrap standard errors), the peak temperature of chi and xi at T*.
    curves: (layer, head, T) -> F, U, S, C, xi, chi, and C of both nulls, all row-averaged.
    losses: (T, loss) in propagated mode when the model has a head to score, else None.
    """

    config: ScanConfig
    model_name: str
    n_tokens: int
    n_sequences: int
    d_head: int
    heads: pd.DataFrame
    curves: pd.DataFrame
    losses: pd.DataFrame | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Headline numbers (what ``--json`` prints)."""
        heads = self.heads
        finite = heads["T_star"].notna()
        out: dict[str, Any] = {
            "model": self.model_name,
            "mode": self.config.mode,
            "n_tokens": self.n_tokens,
            "n_heads": int(len(heads)),
            "T_star_median": float(heads.loc[finite, "T_star"].median()) if finite.any() else None,
            "T_star_null_gauss_median": float(heads["T_star_null_gauss"].median()),
            "n_differs_from_null": int(heads["differs_from_null"].sum()),
            "n_at_edge": int(heads["at_edge"].sum()),
            "heads": heads[["layer", "head", "T_star", "T_star_lo", "T_star_hi", "C_max", "T_star_null_gauss",
                            "T_star_null_shuffled", "differs_from_null"]].to_dict(orient="records"),
            "timings_s": self.timings,
        }
        if self.losses is not None:
            best = self.losses.loc[self.losses["loss"].idxmin()]
            out["loss"] = self.losses.to_dict(orient="records")
            out["T_best_loss"] = float(best["T"])
        return out

    def save(self, path: str | Path) -> Path:
        """Write ``heads.parquet``, ``curves.parquet`` (and ``losses.parquet``) and ``scan.json``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        io.write_table(path / "heads.parquet", self.heads)
        io.write_table(path / "curves.parquet", self.curves)
        if self.losses is not None:
            io.write_table(path / "losses.parquet", self.losses)
        io.write_json(
            path / "scan.json",
            {"config": self.config.to_dict(), "model_name": self.model_name, "n_tokens": self.n_tokens,
             "n_sequences": self.n_sequences, "d_head": self.d_head, "timings": self.timings},
        )
        return path

    @classmethod
    def load(cls, path: str | Path) -> ScanResult:
        path = Path(path)
        if not (path / "scan.json").is_file():
            raise ValueError(f"{path} is not a scan result directory (no scan.json)")
        meta = json.loads((path / "scan.json").read_text())
        cfg = meta["config"]
        for key in ("temperatures", "layers", "heads"):
            if cfg.get(key) is not None:
                cfg[key] = tuple(cfg[key])
        losses = path / "losses.parquet"
        return cls(
            config=ScanConfig(**cfg),
            model_name=meta["model_name"],
            n_tokens=meta["n_tokens"],
            n_sequences=meta["n_sequences"],
            d_head=meta["d_head"],
            heads=io.read_table(path / "heads.parquet"),
            curves=io.read_table(path / "curves.parquet"),
            losses=io.read_table(losses) if losses.is_file() else None,
            timings=meta.get("timings", {}),
        )


# --------------------------------------------------------------------------------------------------
# the sweep: per-sequence sums of every layer, for the real logits and the two null ensembles


@dataclass
class _LayerSums:
    """``SequenceSums`` of one layer: of the real logits per bootstrap unit, of the nulls per batch, and
    the additive pieces of the logit spread."""

    real: Any = None
    gauss: list[Any] = field(default_factory=list)
    shuffled: list[Any] = field(default_factory=list)
    spread: list[tuple[Any, Any]] = field(default_factory=list)  # (sum of squares, dof) per head, null sequences


def resolve_model(model: Any, device: str):
    """A ``LoadedModel`` from a path/name (None = bundled MiniLM), a LoadedModel, or a built HF model."""
    from thermolens import models

    if model is None or isinstance(model, (str, Path)):
        return models.load_model(None if model is None else str(model), device=device)
    if isinstance(model, models.LoadedModel):
        return model
    return models.from_pretrained_model(model)


def resolve_tokens(loaded: Any, texts: Sequence[str] | str | None, config: ScanConfig):
    """The corpus (None = built-in text) tokenized and packed as ``config`` says."""
    from thermolens.data import corpus

    if loaded.tokenizer is None:
        raise ValueError(f"model {loaded.name!r} has no tokenizer; put its tokenizer files beside the weights "
                         "or wrap it with models.from_pretrained_model(model, tokenizer)")
    if texts is None:
        texts = [corpus.builtin_text()]
    elif isinstance(texts, str):
        texts = [texts]
    return corpus.tokenize_corpus(loaded.tokenizer, list(texts), seq_len=config.seq_len, max_tokens=config.max_tokens,
                                  model_max_length=loaded.max_positions)


def _chosen(values: Sequence[int] | None, n: int, what: str) -> list[int]:
    if values is None:
        return list(range(n))
    bad = [v for v in values if not 0 <= v < n]
    if bad:
        raise ValueError(f"{what}s {bad} out of range; the model has {n} {what}s (0..{n - 1})")
    return sorted(set(values))


def _add_null_sums(sums: _LayerSums, logits: Any, mask: Any, betas: Any, generator: Any) -> None:
    """Sums of both null ensembles of one batch, and the head's pooled within-row logit spread."""
    import torch

    from thermolens import thermo

    sum_sq, dof = thermo.within_row_sums(logits, mask)
    sums.spread.append((sum_sq, dof))
    sigma = torch.sqrt(sum_sq / dof.clamp_min(1.0))  # thermo.logit_std, from the pieces kept above
    gauss = thermo.gaussian_null_logits(mask, sigma, generator)
    sums.gauss.append(thermo.sequence_sums(gauss, betas, mask))
    sums.shuffled.append(thermo.sequence_sums(thermo.shuffled_null_logits(logits, mask, generator), betas, mask))


def scan(
    model: Any = None,
    texts: Sequence[str] | str | None = None,
    *,
    temperatures: Sequence[float] | None = None,
    mode: Mode | None = None,
    config: ScanConfig | None = None,
    device: str = "cpu",
    progress: ProgressFn | None = None,
) -> ScanResult:
    """Scan the thermodynamics of every attention head of ``model`` over ``texts``.

    model: a path or Hugging Face name, a ``thermolens.models.LoadedModel``, a Hugging Face model, or
        None for the bundled all-MiniLM-L6-v2.
    texts: strings (None = the built-in English corpus).
    temperatures, mode: shortcuts overriding the same fields of ``config``.
    progress: called as ``progress(done, total)`` after every forward pass (the CLI draws a bar with it).
    """
    import torch

    from thermolens import thermo

    config = config or ScanConfig()
    overrides: dict[str, Any] = {}
    if temperatures is not None:
        overrides["temperatures"] = tuple(float(t) for t in temperatures)
    if mode is not None:
        overrides["mode"] = mode
    config = dataclasses.replace(config, **overrides)

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    loaded = resolve_model(model, device)
    timings["load"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    tokens = resolve_tokens(loaded, texts, config)
    timings["tokenize"] = time.perf_counter() - t0

    layers = _chosen(config.layers, loaded.n_layers, "layer")
    heads = _chosen(config.heads, loaded.n_heads, "head")
    temps = np.asarray(config.temperatures, dtype=float)
    betas = torch.as_tensor(1.0 / temps, dtype=torch.float64)
    generator = torch.Generator(device=loaded.device).manual_seed(config.seed)
    quenched = config.mode == "quenched"
    n_batches = tokens.n_batches(config.batch_size)
    n_null_batches = math.ceil(min(config.null_sequences, tokens.n_seq) / config.batch_size)
    total = n_batches if quenched else n_null_batches + n_batches * len(temps)
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    acc = {layer: _LayerSums() for layer in layers}
    blocks = {layer: thermo.SequenceBlocks(tokens.n_seq, config.bootstrap_blocks) for layer in layers}
    losses: list[tuple[float, float]] = []
    clock = {"forward": 0.0, "thermo": 0.0}
    start = time.perf_counter()
    with torch.inference_mode():
        # Quenched pass: every batch in quenched mode; in both modes the first `null_sequences`
        # sequences also feed the null ensembles, drawn from the model's own (T = 1) logits.
        null_left = min(config.null_sequences, tokens.n_seq)
        for ids, mask in tokens.batches(config.batch_size):
            if not (quenched or null_left):
                break
            take = min(null_left, ids.shape[0])
            if not quenched:  # this pass only feeds the nulls: capture just their sequences
                ids, mask = ids[:take], mask[:take]
            captured = _timed(clock, "forward", capture_batch, loaded, ids, mask, layers)
            null_left -= take
            t1 = time.perf_counter()
            for layer in layers:
                logits, key_mask = captured.logits[layer], captured.mask[layer]
                if quenched:
                    blocks[layer].add(thermo.sequence_sums(logits, betas, key_mask, check_finite=False))
                if take:
                    _add_null_sums(acc[layer], logits[:take], key_mask[:take], betas, generator)
            clock["thermo"] += time.perf_counter() - t1
            tick()
        if quenched:
            for layer in layers:
                acc[layer].real = blocks[layer].sums
        else:
            _propagated(loaded, tokens, config, layers, heads, temps, acc, losses, clock, tick)
    timings["forward_and_capture"] = clock["forward"]
    timings["thermo"] = clock["thermo"]
    timings["sweep"] = time.perf_counter() - start

    t0 = time.perf_counter()
    heads_df, curves_df = _tabulate(acc, layers, heads, temps, config, loaded.d_head)
    timings["bootstrap_and_tables"] = time.perf_counter() - t0
    return ScanResult(
        config=config,
        model_name=loaded.name,
        n_tokens=int(tokens.n_tokens),
        n_sequences=int(tokens.n_seq),
        d_head=int(loaded.d_head),
        heads=heads_df,
        curves=curves_df,
        losses=pd.DataFrame(losses, columns=["T", "loss"]) if losses else None,
        timings=timings,
    )


def _timed(clock: dict[str, float], key: str, fn: Callable, *args: Any) -> Any:
    t0 = time.perf_counter()
    out = fn(*args)
    clock[key] += time.perf_counter() - t0
    return out


def capture_batch(loaded: Any, ids: Any, mask: Any, layers: list[int]) -> Any:
    """Pre-softmax logits of ``layers`` for one batch, on the model's device."""
    from thermolens import models

    return models.capture_logits(loaded, ids.to(loaded.device), mask.to(loaded.device), layers=layers)


def _propagated(loaded, tokens, config, layers, heads, temps, acc, losses, clock, tick) -> None:
    """One forward pass per (T, batch) with T applied inside the model; each heated head is measured at T."""
    import torch

    from thermolens import models, thermo

    per_t: dict[int, list[Any]] = {layer: [] for layer in layers}
    for T in temps:
        blocks = {layer: thermo.SequenceBlocks(tokens.n_seq, config.bootstrap_blocks) for layer in layers}
        loss_sum, loss_n = 0.0, 0
        beta = torch.tensor([1.0 / T], dtype=torch.float64)
        with models.temperature(loaded, float(T), layers=layers, heads=heads):
            for ids, mask in tokens.batches(config.batch_size):
                captured = _timed(clock, "forward", capture_batch, loaded, ids, mask, layers)
                if loaded.loss_kind is not None:
                    dev = loaded.device
                    loss = _timed(clock, "forward", models.model_loss, loaded, ids.to(dev), mask.to(dev))
                    if loss is not None:
                        loss_sum += float(loss) * ids.shape[0]
                        loss_n += ids.shape[0]
                t1 = time.perf_counter()
                for layer in layers:
                    blocks[layer].add(thermo.sequence_sums(captured.logits[layer], beta, captured.mask[layer],
                                                           check_finite=False))
                clock["thermo"] += time.perf_counter() - t1
                tick()
        for layer in layers:
            per_t[layer].append(blocks[layer].sums)
        if loss_n:
            losses.append((float(T), loss_sum / loss_n))
    for layer in layers:
        acc[layer].real = _stack_temperatures(per_t[layer])


def _stack_temperatures(parts: list[Any]) -> Any:
    """Join single-temperature ``SequenceSums`` into one ``(n_T, n_seq, heads)`` stack, as a quenched scan has."""
    import torch

    from thermolens.thermo.sums import SUM_FIELDS

    return dataclasses.replace(
        parts[0],
        betas=torch.cat([p.betas for p in parts]),
        **{k: torch.cat([getattr(p, k) for p in parts], dim=0) for k in SUM_FIELDS},
    )


# --------------------------------------------------------------------------------------------------
# tables


def _select_heads(sums: Any, heads: list[int]) -> Any:
    from thermolens.thermo.sums import SUM_FIELDS

    if heads == list(range(sums.rows.shape[-1])):  # every head, in order: no copy
        return sums
    return dataclasses.replace(sums, **{k: getattr(sums, k)[..., heads] for k in SUM_FIELDS})


def _tabulate(acc, layers, heads, temps, config: ScanConfig, d_head: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    from scipy.stats import norm

    from thermolens import thermo

    z = norm.ppf(0.5 + config.ci / 2)
    head_rows, curve_frames = [], []
    for layer in layers:
        sums = acc[layer]
        real = _select_heads(sums.real, heads)
        curves = thermo.curves(real, temps)
        point = thermo.critical_temperature(temps, curves.heat_capacity)
        if config.n_boot > 0 and real.n_sequences >= 2:
            boot = thermo.bootstrap_critical_temperature(real, temps, n_boot=config.n_boot, seed=config.seed, ci=config.ci)
            lo, hi, edge_fraction = boot.T_low, boot.T_high, boot.edge_fraction
        else:
            lo = hi = edge_fraction = np.full(len(heads), np.nan)
        nulls = {}
        for name in ("gauss", "shuffled"):
            null_curves = thermo.curves(_select_heads(thermo.SequenceSums.concat(getattr(sums, name)), heads), temps)
            nulls[name] = (null_curves, thermo.critical_temperature(temps, null_curves.heat_capacity))
        sum_sq = sum(s for s, _ in sums.spread)[heads].cpu().numpy()
        dof = sum(d for _, d in sums.spread)[heads].cpu().numpy()
        sigma = np.sqrt(sum_sq / np.maximum(dof, 1.0))
        chi_peak = temps[np.nanargmax(np.nan_to_num(curves.susceptibility, nan=-1.0), axis=1)]
        at_star = np.clip(point.index, 0, len(temps) - 1)
        for k, head in enumerate(heads):
            t_star = float(point.T_star[k])
            t_gauss = float(nulls["gauss"][1].T_star[k])
            t_shuf = float(nulls["shuffled"][1].T_star[k])
            se = (np.log(hi[k]) - np.log(lo[k])) / (2 * z) if np.isfinite(lo[k]) and hi[k] > lo[k] else np.nan
            # Distance to the nearer of the two nulls: a head is only as special as its closest null.
            gap = min(abs(np.log(t_star) - np.log(t_gauss)), abs(np.log(t_star) - np.log(t_shuf)))
            separation = gap / se if np.isfinite(se) else np.nan
            differs = bool(np.isfinite(lo[k]) and not point.at_edge[k]
                           and not lo[k] <= t_gauss <= hi[k] and not lo[k] <= t_shuf <= hi[k])
            head_rows.append({
                "layer": layer, "head": head, "T_star": t_star, "T_star_lo": float(lo[k]), "T_star_hi": float(hi[k]),
                "C_max": float(point.C_max[k]), "at_edge": bool(point.at_edge[k]),
                "edge_fraction": float(edge_fraction[k]), "n_keys": float(curves.mean_keys[k]),
                "logit_std": float(sigma[k]),
                "T_star_null_gauss": t_gauss, "C_max_null_gauss": float(nulls["gauss"][1].C_max[k]),
                "T_star_null_shuffled": t_shuf, "C_max_null_shuffled": float(nulls["shuffled"][1].C_max[k]),
                "null_separation": float(separation), "differs_from_null": differs,
                "T_star_kim": t_star * math.sqrt(d_head),
                "T_chi_peak": float(chi_peak[k]),
                "xi_at_T_star": float(curves.correlation_length[k, at_star[k]]),
            })
        frame = curves.to_frame().rename(columns={
            "free_energy": "F", "energy": "U", "entropy": "S", "heat_capacity": "C", "correlation_length": "xi",
            "correlation_length_ratio": "xi_ratio", "concentration": "q", "susceptibility": "chi",
            "mean_keys": "n_keys"})
        frame["head"] = np.asarray(heads)[frame["head"].to_numpy()]
        frame.insert(0, "layer", layer)
        frame["C_null_gauss"] = nulls["gauss"][0].heat_capacity.reshape(-1)
        frame["C_null_shuffled"] = nulls["shuffled"][0].heat_capacity.reshape(-1)
        curve_frames.append(frame)
    return pd.DataFrame(head_rows), pd.concat(curve_frames, ignore_index=True)
