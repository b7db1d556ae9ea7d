"""Activation avalanches in a transformer (``thermolens avalanches``): is information flow a critical
branching process (Aranda Barois 2024, Theorem 2: P(s) ~ s^-tau exp(-s/s_c), tau ~ 3/2 at optimal
performance)? Measured with null models and a threshold scan, never asserted.

Pipeline, one forward pass per batch (``thermolens.experiments.avalanches.cascades`` has the definitions):

1. capture the site's activations layer by layer (``thermolens.models.activations``) and reduce each
   at once to active-unit counts per (token, layer) at every threshold of the robustness scan; the
   baseline of every unit comes from the first ``reference_sequences`` sequences;
2. cascades on the count lattice (``layer-time`` or ``token-layer``), censored ones left out;
3. statistics (``avalanche_fits``): tau with bootstrap goodness of fit, likelihood ratios, s_c, tau of
   durations and the crackling relation; descendants per ancestor between layers and the MR estimate
   of m along the token axis (Wilting & Priesemann 2018, arXiv:1608.07035) per layer; susceptibility;
4. the same on two nulls (layer order shuffled per token; rate-matched independent units);
5. optionally the whole of 1-3 at attention temperatures T applied inside the forward pass
   (``thermolens.models.temperature``), events measured against the T = 1 baseline, with the model's
   loss at every T where it has an LM head.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from thermolens import io
from thermolens.experiments.avalanches.fits import ALTERNATIVES, AvalancheStats, beats_null, fit_cascades, ks_p_value
from thermolens.experiments.avalanches.cascades import (
    BASELINES,
    LATTICES,
    cascades,
    descendants_per_ancestor,
    rate_matched_counts,
    shuffle_layers,
    susceptibility,
)

ProgressFn = Callable[[int, int], None]
SITES = ("resid", "mlp", "attn")  # = thermolens.models.activations.SITES (kept here: no torch import at CLI parse)
NULLS = ("shuffled_layers", "rate_matched")


@dataclass(frozen=True)
class AvalancheConfig:
    """Everything an avalanche analysis depends on besides the model and the text.

    site: ``resid`` (residual stream after each block), ``mlp`` (MLP hidden units), ``attn`` (attention output).
    lattice: ``token-layer`` (clusters on the token x layer lattice) or ``layer-time`` (depth as time).
    threshold: the event threshold (a z-score for ``baseline="zscore"``, a quantile in (0, 1) for
        ``"quantile"``); robustness: further thresholds whose exponents are reported beside it
        (None: 2/3, 5/6, 7/6 and 4/3 of a z-score threshold; for a quantile q, 1 - (1-q) x (2, 1.5, 0.75, 0.5)).
    reference_sequences: the first sequences, whose activations give every unit's baseline.
    n_boot: Clauset bootstrap replicates of the size fit (0 skips it; 2500 gives p to +-0.01).
    n_boot_branching: bootstrap replicates of the MR estimate's CI.
    temperatures: attention temperatures for the propagated sweep (None: T = 1 only).
    """

    site: str = "resid"
    lattice: str = "token-layer"
    threshold: float = 3.0
    baseline: str = "zscore"
    robustness: tuple[float, ...] | None = None
    seq_len: int = 128
    max_tokens: int = 16384
    batch_size: int = 16
    reference_sequences: int = 16
    n_boot: int = 100
    n_boot_branching: int = 50
    temperatures: tuple[float, ...] | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.site not in SITES:
            raise ValueError(f"unknown site {self.site!r}; valid sites: {', '.join(SITES)}")
        if self.lattice not in LATTICES:
            raise ValueError(f"unknown lattice {self.lattice!r}; valid lattices: {', '.join(LATTICES)}")
        if self.baseline not in BASELINES:
            raise ValueError(f"unknown baseline {self.baseline!r}; valid baselines: {', '.join(BASELINES)}")
        if self.baseline == "zscore" and not self.threshold > 0:
            raise ValueError(f"threshold={self.threshold} must be a positive z-score, e.g. 3")
        if self.baseline == "quantile" and not 0 < self.threshold < 1:
            raise ValueError(f"threshold={self.threshold} must be a quantile in (0, 1), e.g. 0.99")
        if self.max_tokens <= 0:
            raise ValueError(f"max_tokens must be positive (got {self.max_tokens}); e.g. --max-tokens 16384")
        if self.seq_len < 3 or self.batch_size < 1 or self.reference_sequences < 1:
            raise ValueError("seq_len must be >= 3, batch_size and reference_sequences >= 1")
        if self.n_boot < 0 or self.n_boot_branching < 0:
            raise ValueError("bootstrap replicate counts must be >= 0")
        if self.temperatures is not None:
            t = np.asarray(self.temperatures, dtype=float)
            if t.size == 0 or not np.all(np.isfinite(t)) or np.any(t <= 0):
                raise ValueError("temperatures must be finite and positive, e.g. --temperatures 0.25:4:12")

    @property
    def thresholds(self) -> tuple[float, ...]:
        """The main threshold first, then the robustness scan (duplicates dropped)."""
        if self.robustness is not None:
            extra = self.robustness
        elif self.baseline == "zscore":
            extra = tuple(self.threshold * f for f in (2 / 3, 5 / 6, 7 / 6, 4 / 3))
        else:
            extra = tuple(1 - (1 - self.threshold) * f for f in (2.0, 1.5, 0.75, 0.5))
        out = [float(self.threshold)]
        for t in extra:
            t = round(float(t), 12)  # 1 - 0.005 * 1.5 prints as 0.9925, not 0.9924999999999999
            if all(abs(t - u) > 1e-12 for u in out):
                out.append(t)
        return tuple(out)

    def to_dict(self) -> dict[str, Any]:
        return io.to_jsonable(self)


@dataclass(frozen=True)
class AvalancheResult:
    """Outcome of an avalanche analysis.

    fits: one ``AvalancheStats`` per source: ``"model"`` and the nulls ``"shuffled_layers"``, ``"rate_matched"``.
    beats_nulls: per null, whether the model's power law is not reproduced by it (``avalanche_fits.beats_null``).
    cascades: (source, size, duration) of every complete cascade, for the CCDFs.
    layers: per layer: mean active units, fraction of active sites, descendants per ancestor to the next
        layer (``sigma``, ``sigma_stderr``; also for the shuffled null) and the MR estimate along tokens (``m_mr``).
    thresholds: exponents and branching ratio at every threshold of the robustness scan.
    temperatures: per attention temperature T: tau, s_c, branching ratio, susceptibility, activity, loss (None
        without a sweep).
    """

    config: AvalancheConfig
    model_name: str
    n_tokens: int
    n_sequences: int
    n_units: int
    n_layers: int
    fits: dict[str, AvalancheStats]
    beats_nulls: dict[str, bool]
    cascades: pd.DataFrame
    layers: pd.DataFrame
    thresholds: pd.DataFrame
    temperatures: pd.DataFrame | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def model(self) -> AvalancheStats:
        return self.fits["model"]

    @property
    def power_law_beats_nulls(self) -> bool:
        return bool(self.model.is_power_law and all(self.beats_nulls.values()))

    def to_frame(self) -> pd.DataFrame:
        """One row per source (model and nulls) with every fitted number."""
        return pd.DataFrame([s.to_dict() for s in self.fits.values()])

    def summary(self) -> dict[str, Any]:
        """Headline numbers (what ``--json`` prints)."""

        def headline(s: AvalancheStats) -> dict[str, Any]:
            return {k: _num(getattr(s, k)) for k in (
                "tau", "tau_stderr", "tau_duration", "tau_duration_stderr", "s_c", "gof_p", "branching_ratio",
                "branching_ratio_stderr", "branching_ratio_mr", "susceptibility", "n_avalanches", "is_power_law")}

        m = self.model
        out: dict[str, Any] = {
            "model": self.model_name, "site": self.config.site, "lattice": self.config.lattice,
            "threshold": self.config.threshold, "baseline": self.config.baseline, "n_tokens": self.n_tokens,
            **headline(m), "xmin": _num(m.xmin), "n_tail": m.n_tail, "p_vs_exponential": _num(m.p_exponential),
            "p_vs_truncated": _num(m.p_truncated), "tpl_alpha": _num(m.tpl_alpha), "p_cutoff": _num(m.p_cutoff),
            "gamma_fit": _num(m.gamma_fit),
            "gamma_predicted": _num(m.gamma_predicted), "n_censored": m.n_censored,
            "null": {name: {**headline(self.fits[name]), "ks_p_vs_model": _num(self.fits[name].ks_p_vs_model),
                            "beaten": self.beats_nulls[name]} for name in NULLS},
            "power_law_beats_nulls": self.power_law_beats_nulls,
            "thresholds": [{k: _num(v) for k, v in row.items()} for row in
                           self.thresholds[["threshold", "tau", "tau_stderr", "tau_duration", "branching_ratio",
                                            "n_avalanches"]].to_dict(orient="records")],
            "timings_s": self.timings,
        }
        if m.note:
            out["note"] = m.note
        if self.temperatures is not None:
            out["temperatures"] = [{k: _num(v) for k, v in row.items()}
                                   for row in self.temperatures.to_dict(orient="records")]
        return out

    def save(self, path: str | Path) -> Path:
        """Write ``fits``, ``cascades``, ``layers``, ``thresholds`` (and ``temperatures``) as Parquet, and
        ``avalanches.json``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        io.write_table(path / "fits.parquet", self.to_frame())
        io.write_table(path / "cascades.parquet", self.cascades)
        io.write_table(path / "layers.parquet", self.layers)
        io.write_table(path / "thresholds.parquet", self.thresholds)
        if self.temperatures is not None:
            io.write_table(path / "temperatures.parquet", self.temperatures)
        io.write_json(path / "avalanches.json", {
            "config": self.config.to_dict(), "model_name": self.model_name, "n_tokens": self.n_tokens,
            "n_sequences": self.n_sequences, "n_units": self.n_units, "n_layers": self.n_layers,
            "beats_nulls": self.beats_nulls, "timings": self.timings})
        return path

    @classmethod
    def load(cls, path: str | Path) -> AvalancheResult:
        path = Path(path)
        if not (path / "avalanches.json").is_file():
            raise ValueError(f"{path} is not an avalanche result directory (no avalanches.json)")
        meta = json.loads((path / "avalanches.json").read_text())
        cfg = meta["config"]
        for key in ("robustness", "temperatures"):
            if cfg.get(key) is not None:
                cfg[key] = tuple(cfg[key])
        fits = {row["source"]: AvalancheStats.from_dict(row)
                for row in io.read_table(path / "fits.parquet").to_dict(orient="records")}
        temps = path / "temperatures.parquet"
        return cls(
            config=AvalancheConfig(**cfg), model_name=meta["model_name"], n_tokens=meta["n_tokens"],
            n_sequences=meta["n_sequences"], n_units=meta["n_units"], n_layers=meta["n_layers"], fits=fits,
            beats_nulls={k: bool(v) for k, v in meta["beats_nulls"].items()},
            cascades=io.read_table(path / "cascades.parquet"), layers=io.read_table(path / "layers.parquet"),
            thresholds=io.read_table(path / "thresholds.parquet"),
            temperatures=io.read_table(temps) if temps.is_file() else None, timings=meta.get("timings", {}),
        )


def _num(v: Any) -> Any:
    """JSON-friendly scalar: NaN becomes None, numpy scalars become Python ones."""
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return None if not np.isfinite(v) else float(v)
    return v


# --------------------------------------------------------------------------------------------------
# capture and extraction: activations -> count lattice


def _reference_message(baseline, site: str) -> str:
    if baseline.method == "zscore":
        lo = min(r[0] for r in baseline.reference_range.values())
        hi = max(r[1] for r in baseline.reference_range.values())
        return f"try a threshold between {lo:.2g} and {hi:.2g} (90th and 99.9th percentiles of |z| at site {site})"
    return "try a quantile between 0.9 and 0.999"


def _check_reference(counts: np.ndarray, baseline, site: str) -> None:
    """Refuse a threshold under which no unit, or every unit, or every site, is active on the reference batch.

    ``counts``: (n_reference_tokens, n_layers) active units at the main threshold."""
    threshold = baseline.thresholds[0]
    n_units = next(iter(baseline.width.values())).shape[-1]
    if counts.sum() == 0:
        raise ValueError(f"threshold {threshold:g} makes no unit active on the reference sequences; "
                         + _reference_message(baseline, site))
    if np.all(counts == n_units):
        raise ValueError(f"threshold {threshold:g} makes every unit active on the reference sequences; "
                         + _reference_message(baseline, site))
    if np.all(counts > 0):
        raise ValueError(f"threshold {threshold:g} makes every (token, layer) site active on the reference sequences, "
                         "so all activity is one cascade; " + _reference_message(baseline, site))


def count_lattice(loaded: Any, tokens: Any, config: AvalancheConfig, baseline=None, *,
                  progress: Callable[[], None] | None = None):
    """Capture ``config.site`` over ``tokens`` and reduce it to a ``CountLattice``; returns it and the baseline.

    Without ``baseline`` the first ``config.reference_sequences`` sequences define it at every threshold
    of ``config.thresholds`` (their activations are kept only until it is fitted); all thresholds of
    the baseline are counted in the same pass.
    """
    import torch

    from thermolens.experiments.avalanches.cascades import LatticeBuilder, fit_baseline
    from thermolens.models.activations import capture_activations

    n_seq = tokens.n_seq
    valid_all = tokens.attention_mask.bool().numpy()
    n_ref = min(config.reference_sequences, n_seq) if baseline is None else 0
    chunks = [(0, n_ref)] if n_ref else []
    chunks += [(s, min(s + config.batch_size, n_seq)) for s in range(n_ref, n_seq, config.batch_size)]
    builder = None
    with torch.inference_mode():
        for start, stop in chunks:
            ids = tokens.input_ids[start:stop].to(loaded.device)
            mask = tokens.attention_mask[start:stop].to(loaded.device)
            valid = mask.bool()
            seq, pos = np.nonzero(valid_all[start:stop])
            seq = seq + start
            if baseline is None:
                reference: dict[int, Any] = {}
                capture_activations(loaded, ids, mask, config.site,
                                    lambda layer, x: reference.__setitem__(layer, x[valid].float()))
                baseline = fit_baseline(reference, config.thresholds, config.baseline)
                builder = LatticeBuilder(baseline, n_seq, tokens.seq_len, loaded.n_layers)
                for layer in sorted(reference):
                    builder.add(layer, seq, pos, reference.pop(layer))
                _check_reference(builder.counts[0, seq, pos], baseline, config.site)
            else:
                if builder is None:
                    builder = LatticeBuilder(baseline, n_seq, tokens.seq_len, loaded.n_layers)
                capture_activations(loaded, ids, mask, config.site, lambda layer, x: builder.add(
                    layer, seq, pos, x[valid].to(baseline.centre[layer].dtype)))
            if progress is not None:
                progress()
    return builder.build(valid_all), baseline


# --------------------------------------------------------------------------------------------------
# statistics of a lattice


def _mr_per_layer(counts: np.ndarray, valid: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """MR estimate of m along the token axis for every layer (full-length sequences as trials; NaN if too short)."""
    from thermolens import stats

    full = valid.all(axis=1)
    n_pos = counts.shape[1]
    kmax = min(20, (n_pos - 10) // 2)
    out = np.full((counts.shape[-1], 3), np.nan)
    if kmax < 3 or full.sum() < 2:
        return out
    for layer in range(counts.shape[-1]):
        series = counts[full, :, layer].astype(np.float64)
        series = series[series.std(axis=1) > 0]
        if series.shape[0] < 2:
            continue
        try:
            br = stats.branching_ratio(series, kmax, n_boot=n_boot, seed=seed)
        except ValueError:
            continue
        out[layer] = (br.m, *br.m_ci)
    return out


def lattice_stats(counts: np.ndarray, valid: np.ndarray, n_units: int, *, source: str, lattice: str, n_boot: int,
                  n_boot_branching: int, seed: int, require: bool = False, context: str = "",
                  mr: bool = True, light: bool = False) -> tuple[AvalancheStats, Any, np.ndarray, np.ndarray]:
    """(stats, cascades, per-layer sigma and stderr rows, per-layer MR rows) of one count lattice.
    ``light``: compare the power law with the exponential only (threshold and temperature scans)."""
    c = cascades(counts, valid, lattice)
    fit = fit_cascades(c, source=source, n_boot=n_boot, seed=seed, require=require, context=context,
                       alternatives=("exponential",) if light else ALTERNATIVES)
    sigma_l, se_l, sigma, se = descendants_per_ancestor(counts, valid)
    mr_rows = _mr_per_layer(counts, valid, n_boot_branching, seed) if mr else np.full((counts.shape[-1], 3), np.nan)
    fit = dataclasses.replace(
        fit, branching_ratio=sigma, branching_ratio_stderr=se,
        branching_ratio_mr=float(np.nanmean(mr_rows[:, 0])) if np.isfinite(mr_rows[:, 0]).any() else float("nan"),
        susceptibility=susceptibility(counts, valid, n_units),
        mean_activity=float(counts[valid].mean()))
    return fit, c, np.stack([sigma_l, se_l], axis=1), mr_rows


# --------------------------------------------------------------------------------------------------
# the job


def avalanches(
    model: Any = None,
    texts: Sequence[str] | str | None = None,
    *,
    config: AvalancheConfig | None = None,
    device: str = "cpu",
    progress: ProgressFn | None = None,
    **overrides: Any,
) -> AvalancheResult:
    """Activation avalanches of ``model`` over ``texts``, with null models, a threshold scan and optionally
    an attention-temperature sweep.

    model: a path or Hugging Face name, a ``thermolens.models.LoadedModel``, a Hugging Face model, or None
        for the bundled all-MiniLM-L6-v2. texts: strings (None = the built-in English corpus).
    overrides: fields of ``AvalancheConfig`` (e.g. ``site="mlp"``, ``threshold=2.5``) replacing ``config``'s.
    progress: called as ``progress(done, total)`` after every forward pass.
    """
    from thermolens.experiments.scan.heads import resolve_model, resolve_tokens

    config = dataclasses.replace(config or AvalancheConfig(), **overrides)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    loaded = resolve_model(model, device)
    tokens = resolve_tokens(loaded, texts, config)  # reads seq_len and max_tokens
    timings["load_and_tokenize"] = time.perf_counter() - t0
    temps = tuple(config.temperatures or ())
    n_ref = min(config.reference_sequences, tokens.n_seq)
    first_pass = 1 + -(-(tokens.n_seq - n_ref) // config.batch_size)
    total = first_pass + len(temps) * (tokens.n_batches(config.batch_size) + 1)
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    t0 = time.perf_counter()
    lattice, baseline = count_lattice(loaded, tokens, config, progress=tick)
    timings["capture_and_extraction"] = time.perf_counter() - t0
    rng = np.random.default_rng(config.seed)
    common = dict(lattice=config.lattice, n_boot_branching=config.n_boot_branching, seed=config.seed)
    occupancy = float((lattice.main[lattice.valid] > 0).mean())
    context = (f" (site {config.site}, lattice {config.lattice}, threshold {config.threshold:g}, "
               f"{tokens.n_tokens} tokens, {100 * occupancy:.0f}% of (token, layer) sites active)")

    t0 = time.perf_counter()
    model_fit, model_c, sigma_rows, mr_rows = lattice_stats(
        lattice.main, lattice.valid, lattice.n_units, source="model", n_boot=config.n_boot, require=True,
        context=context, **common)
    timings["fits"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    null_counts = {"shuffled_layers": shuffle_layers(lattice.main, rng),
                   "rate_matched": rate_matched_counts(lattice.unit_rates, lattice.valid, rng)}
    fits, frames, beats = {"model": model_fit}, [model_c.to_frame().assign(source="model")], {}
    null_sigma = None
    for name, counts in null_counts.items():
        fit, c, sig, _ = lattice_stats(counts, lattice.valid, lattice.n_units, source=name, n_boot=config.n_boot,
                                       **common)
        fit = dataclasses.replace(fit, ks_p_vs_model=ks_p_value(model_c.sizes, c.sizes))
        fits[name] = fit
        frames.append(c.to_frame().assign(source=name))
        beats[name] = beats_null(model_fit, model_c.sizes, fit, c.sizes)
        if name == "shuffled_layers":
            null_sigma = sig
    timings["nulls"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    threshold_rows = []
    for k, th in enumerate(lattice.thresholds):
        fit, _, _, _ = lattice_stats(lattice.counts[k], lattice.valid, lattice.n_units, source="model", n_boot=0,
                                     mr=False, light=True, **common)
        threshold_rows.append({"threshold": th, **{key: getattr(fit, key) for key in (
            "tau", "tau_stderr", "xmin", "s_c", "tau_duration", "tau_duration_stderr", "branching_ratio",
            "branching_ratio_stderr", "susceptibility", "mean_activity", "n_avalanches", "is_power_law")}})
    timings["threshold_scan"] = time.perf_counter() - t0

    layers = pd.DataFrame({
        "layer": np.arange(lattice.n_layers),
        "mean_active": lattice.main.astype(np.float64)[lattice.valid].mean(axis=0),
        "fraction_active_sites": (lattice.main[lattice.valid] > 0).mean(axis=0),
        "sigma": np.r_[sigma_rows[:, 0], np.nan], "sigma_stderr": np.r_[sigma_rows[:, 1], np.nan],
        "sigma_shuffled": np.r_[null_sigma[:, 0], np.nan],
        "m_mr": mr_rows[:, 0], "m_mr_lo": mr_rows[:, 1], "m_mr_hi": mr_rows[:, 2],
    })

    temperatures = None
    if temps:
        t0 = time.perf_counter()
        temperatures = _temperature_sweep(loaded, tokens, config, baseline, temps, tick)
        timings["temperature_sweep"] = time.perf_counter() - t0
    return AvalancheResult(
        config=config, model_name=loaded.name, n_tokens=int(tokens.n_tokens), n_sequences=int(tokens.n_seq),
        n_units=lattice.n_units, n_layers=lattice.n_layers, fits=fits, beats_nulls=beats,
        cascades=pd.concat(frames, ignore_index=True)[["source", "size", "duration"]], layers=layers,
        thresholds=pd.DataFrame(threshold_rows), temperatures=temperatures, timings=timings,
    )


def _temperature_sweep(loaded, tokens, config: AvalancheConfig, baseline, temps, tick) -> pd.DataFrame:
    """Counts at the main threshold (T = 1 baseline) with attention at each T inside the forward pass."""
    from thermolens import models

    main_only = dataclasses.replace(baseline, thresholds=baseline.thresholds[:1],
                                    width={k: w[:1] for k, w in baseline.width.items()})
    rows = []
    for T in temps:
        with models.temperature(loaded, float(T)):
            lat, _ = count_lattice(loaded, tokens, config, main_only, progress=tick)
            loss = _mean_loss(loaded, tokens, config) if loaded.loss_kind is not None else float("nan")
        tick()
        fit, _, _, _ = lattice_stats(lat.main, lat.valid, lat.n_units, source="model", lattice=config.lattice,
                                     n_boot=0, n_boot_branching=0, seed=config.seed, light=True)
        rows.append({"T": float(T), **{key: getattr(fit, key) for key in (
            "tau", "tau_stderr", "s_c", "tau_duration", "branching_ratio", "branching_ratio_stderr",
            "branching_ratio_mr", "susceptibility", "mean_activity", "n_avalanches", "is_power_law")}, "loss": loss})
    return pd.DataFrame(rows)


def _mean_loss(loaded, tokens, config: AvalancheConfig) -> float:
    """The model's own loss (masked-LM or next-token) averaged over batches, weighted by sequences."""
    from thermolens import models

    total, n = 0.0, 0
    for ids, mask in tokens.batches(config.batch_size):
        loss = models.model_loss(loaded, ids.to(loaded.device), mask.to(loaded.device), seed=config.seed)
        if loss is not None:
            total += loss * ids.shape[0]
            n += ids.shape[0]
    return total / n if n else float("nan")
