"""The scan study under the study contract (``thermolens.runner.study``), with a paired null test of every peak.

A run is ``thermolens scan`` (``ScanConfig``; model ``None`` = the bundled all-MiniLM-L6-v2, corpus
``None`` = the built-in text) and, optionally, two checks of the seed's ``detect_critical_point``
(Aranda Barois 2024, §3.1):

``null_test`` (``null_test.parquet``)
    The scan's ``differs_from_null`` compares a head's bootstrap interval with the null's *point*
    T*, drawn from a few sequences: the null's own sampling error is ignored, so a head equal to its
    null is called different more often than the nominal 5 %. Here the real logits and both null
    ensembles (DESIGN.md §3: Gaussian logits of the head's key structure and spread; the head's
    row-centred logits re-dealt across rows) are summed on the *same* first ``paired_sequences``
    sequences, and the sequences are resampled together (a paired bootstrap, Efron & Tibshirani
    1993, ch. 13). For each peak definition — ``C`` (specific heat, the scan's T*), ``chi``
    (susceptibility) and ``xi`` (correlation length), each the spline-refined maximum of its curve
    (``thermo.critical_temperature``) — a head *differs* from a null when the percentile interval of
    ``log(T_head / T_null)`` over the replicates excludes 0, and is *distinct* when it differs from
    both nulls and its own peak is bracketed by the grid. A third ensemble, an independent Gaussian
    draw (``calib``), goes through the same test: the fraction of these null "heads" found distinct
    is the test's false-positive rate, measured. ``ratio_C`` (with its paired interval) places the chi
    and xi peaks relative to the C peak, and ``coincides_C`` says whether that interval contains 1.
``power_law`` (``critical_points.parquet``, ``null_critical_points.parquet``)
    ``detect_critical_point`` — Clauset et al. 2009 (arXiv:0706.1062) on each head's attention weights
    at its T* — and the same check on the weights of the head's Gaussian null at the null's own T*:
    a softmax of Gaussian logits gives lognormal-like weights, which a finite-sample power-law test
    can also accept, so the real heads' rate is read beside the null's.

Every table is written atomically; a run directory holding some of them for the same config
continues from the first one missing (``kill -9`` costs at most the step that was running).
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from thermolens import io
from thermolens.experiments.scan.heads import ScanConfig, ScanResult
from thermolens.runner.study import Study, config_to_dict

__all__ = [
    "DEFINITIONS", "STUDY", "ScanStudyConfig", "ScanStudyResult", "load", "null_power_law", "paired_null_test", "run",
    "summary",
]

STUDY_JSON = "study.json"
NULL_TEST = "null_test.parquet"
CRITICAL = "critical_points.parquet"
NULL_CRITICAL = "null_critical_points.parquet"
SOURCES = ("real", "gauss", "shuffled", "calib")
#: peak definitions: name -> field of ``thermo.Curves``
DEFINITIONS = {"C": "heat_capacity", "chi": "susceptibility", "xi": "correlation_length"}


@dataclass(frozen=True)
class ScanStudyConfig:
    """One scan and the checks of its critical points.

    scan: the scan's own config. model: None (bundled MiniLM) or a local model directory. corpus: None
    (built-in text) or paths of text files / directories.
    null_test / paired_sequences: the paired bootstrap of real and null peaks on the first
        ``paired_sequences`` sequences (``scan.n_boot`` replicates, ``scan.ci`` intervals).
    power_law: run the power-law check on the first ``power_law_sequences`` sequences, at most
        ``power_law_samples`` weights per head, ``power_law_boot`` Clauset replicates, accepting at
        bootstrap p > ``p_threshold``.
    """

    scan: ScanConfig = field(default_factory=ScanConfig)
    model: str | None = None
    corpus: tuple[str, ...] | None = None
    null_test: bool = True
    paired_sequences: int = 64
    power_law: bool = False
    power_law_sequences: int = 8
    power_law_samples: int = 5000
    power_law_boot: int = 100
    p_threshold: float = 0.1

    def __post_init__(self) -> None:
        if self.corpus is not None and not self.corpus:
            raise ValueError("corpus=() names no text; pass None for the built-in corpus or list text files")
        if self.paired_sequences < 2:
            raise ValueError(f"paired_sequences={self.paired_sequences}: a bootstrap over sequences needs >= 2")
        if self.null_test and self.scan.n_boot < 1:
            raise ValueError("the null test bootstraps sequences: set scan.n_boot >= 1 (200 is typical)")
        if self.power_law_sequences < 1 or self.power_law_samples < 50 or self.power_law_boot < 0:
            raise ValueError("power_law_sequences must be >= 1, power_law_samples >= 50, power_law_boot >= 0")
        if not 0 < self.p_threshold < 1:
            raise ValueError(f"p_threshold={self.p_threshold} must lie in (0, 1); Clauset et al. use 0.1")


@dataclass(frozen=True)
class ScanStudyResult:
    """The scan, and (when asked for) the paired null test and both power-law tables."""

    scan: ScanResult
    null_test: pd.DataFrame | None = None
    critical: pd.DataFrame | None = None
    null_critical: pd.DataFrame | None = None


# --------------------------------------------------------------------------------------------------
# the paired null test


def _accumulate(loaded: Any, tokens: Any, config: ScanStudyConfig, layers: list[int], heads: list[int], betas: Any):
    """Per-sequence ``SequenceSums`` (numpy) of every source and layer, on the first ``paired_sequences`` sequences."""
    import torch

    from thermolens import thermo
    from thermolens.experiments.scan.heads import _add_null_sums, _LayerSums, _select_heads, capture_batch

    n_seq = min(config.paired_sequences, tokens.n_seq)
    acc = {layer: _LayerSums() for layer in layers}
    real: dict[int, list[Any]] = {layer: [] for layer in layers}
    calib: dict[int, list[Any]] = {layer: [] for layer in layers}
    generator = torch.Generator(device=loaded.device).manual_seed(config.scan.seed + 1)
    with torch.inference_mode():
        for start in range(0, n_seq, config.scan.batch_size):
            stop = min(start + config.scan.batch_size, n_seq)
            captured = capture_batch(loaded, tokens.input_ids[start:stop], tokens.attention_mask[start:stop], layers)
            for layer in layers:
                logits, mask = captured.logits[layer], captured.mask[layer]
                real[layer].append(thermo.sequence_sums(logits, betas, mask, check_finite=False))
                _add_null_sums(acc[layer], logits, mask, betas, generator)
                sigma = torch.nan_to_num(thermo.logit_std(logits, mask))
                calib_logits = thermo.gaussian_null_logits(mask, sigma, generator)
                calib[layer].append(thermo.sequence_sums(calib_logits, betas, mask))
    out = {}
    for layer in layers:
        parts = {"real": real[layer], "gauss": acc[layer].gauss, "shuffled": acc[layer].shuffled,
                 "calib": calib[layer]}
        out[layer] = {name: _select_heads(thermo.SequenceSums.concat(p), heads).numpy() for name, p in parts.items()}
    return out, n_seq


def _replicate_peaks(sums: Any, temps: np.ndarray, counts: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Peak temperature and at-edge flag ``(n_rep, heads)`` of every definition, for each row of ``counts``."""
    from thermolens import thermo
    from thermolens.thermo.sums import SUM_FIELDS

    n_rep = counts.shape[0]

    def resample(x: np.ndarray) -> np.ndarray:  # (n_T, n_seq, heads) -> (n_T, 1, n_rep * heads)
        r = np.tensordot(counts, x, axes=([1], [1]))  # (n_rep, n_T, heads)
        return r.transpose(1, 0, 2).reshape(x.shape[0], 1, -1)

    stacked = dataclasses.replace(sums, **{k: resample(getattr(sums, k)) for k in SUM_FIELDS})
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        curves = thermo.curves(stacked, temps)
        out = {}
        for name, attr in DEFINITIONS.items():
            point = thermo.critical_temperature(temps, getattr(curves, attr))
            out[name] = (np.asarray(point.T_star, dtype=float).reshape(n_rep, -1),
                         np.asarray(point.at_edge, dtype=bool).reshape(n_rep, -1))
    return out


def paired_null_test(loaded: Any, tokens: Any, config: ScanStudyConfig, layers: list[int],
                     heads: list[int]) -> pd.DataFrame:
    """One row per (layer, head, definition): the peak of the head and of each null, with paired-bootstrap
    intervals of ``T_head / T_null`` and the verdicts ``differs`` / ``calib_differs`` (see module doc)."""
    import torch

    temps = np.asarray(config.scan.temperatures, dtype=float)
    betas = torch.as_tensor(1.0 / temps, dtype=torch.float64)
    sums, n_seq = _accumulate(loaded, tokens, config, layers, heads, betas)
    rng = np.random.default_rng(config.scan.seed)
    counts = np.vstack([np.ones(n_seq), rng.multinomial(n_seq, np.full(n_seq, 1.0 / n_seq), size=config.scan.n_boot)])
    a = (1.0 - config.scan.ci) / 2
    rows = []
    for layer in layers:
        peaks = {src: _replicate_peaks(sums[layer][src], temps, counts) for src in SOURCES}
        for name in DEFINITIONS:
            t = {src: peaks[src][name][0] for src in SOURCES}  # (n_rep, heads); row 0 = full sample
            edge = {src: peaks[src][name][1][0] for src in SOURCES}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                interval = {src: np.nanquantile(t[src][1:], [a, 1 - a], axis=0) for src in SOURCES}
                ratio = {(x, n): np.nanquantile(np.log(t[x][1:]) - np.log(t[n][1:]), [a, 1 - a], axis=0)
                         for x in ("real", "calib") for n in ("gauss", "shuffled")}
                t_c = peaks["real"]["C"][0]
                to_c = np.nanquantile(np.log(t["real"][1:]) - np.log(t_c[1:]), [a, 1 - a], axis=0)
            excl = {key: (lo > 0) | (hi < 0) for key, (lo, hi) in ratio.items()}
            for k, head in enumerate(heads):
                row: dict[str, Any] = {"layer": layer, "head": head, "definition": name, "n_sequences": n_seq}
                for src in SOURCES:
                    prefix = "T" if src == "real" else f"T_{src}"
                    row[prefix] = float(t[src][0, k])
                    row[f"{prefix}_lo"], row[f"{prefix}_hi"] = (float(v) for v in interval[src][:, k])
                    row["at_edge" if src == "real" else f"at_edge_{src}"] = bool(edge[src][k])
                for (x, n), (lo, hi) in ratio.items():
                    stem = f"ratio_{n}" if x == "real" else f"calib_ratio_{n}"
                    row[stem] = float(t[x][0, k] / t[n][0, k])
                    row[f"{stem}_lo"], row[f"{stem}_hi"] = float(np.exp(lo[k])), float(np.exp(hi[k]))
                # where this definition's peak lies relative to the C peak (the seed has them at one T)
                row["ratio_C"] = float(t["real"][0, k] / t_c[0, k])
                row["ratio_C_lo"], row["ratio_C_hi"] = float(np.exp(to_c[0, k])), float(np.exp(to_c[1, k]))
                row["coincides_C"] = bool(to_c[0, k] <= 0 <= to_c[1, k]) or name == "C"
                row["differs"] = bool(excl[("real", "gauss")][k] and excl[("real", "shuffled")][k]
                                      and not edge["real"][k])
                row["calib_differs"] = bool(excl[("calib", "gauss")][k] and excl[("calib", "shuffled")][k]
                                            and not edge["calib"][k])
                rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------------
# the power-law check on the Gaussian null


def null_power_law(loaded: Any, tokens: Any, null_test: pd.DataFrame, config: ScanStudyConfig) -> pd.DataFrame:
    """``detect_critical_point``'s power-law check on each head's Gaussian null, at the null's own T*
    (definition ``C`` of ``null_test``), on the first ``power_law_sequences`` sequences."""
    import torch

    from thermolens import thermo
    from thermolens.experiments.scan.critical import _attention_weights, _check_head
    from thermolens.experiments.scan.heads import capture_batch

    peaks = null_test[null_test["definition"] == "C"]
    layers = sorted(int(v) for v in peaks["layer"].unique())
    n = config.power_law_sequences
    generator = torch.Generator(device=loaded.device).manual_seed(config.scan.seed + 2)
    rng = np.random.default_rng(config.scan.seed)
    with torch.inference_mode():
        captured = capture_batch(loaded, tokens.input_ids[:n], tokens.attention_mask[:n], layers)
    rows = []
    for layer in layers:
        logits, mask = captured.logits[layer], captured.mask[layer]
        null = thermo.gaussian_null_logits(mask, torch.nan_to_num(thermo.logit_std(logits, mask)), generator)
        for peak in peaks[peaks["layer"] == layer].itertuples(index=False):
            head = int(peak.head)
            valid = torch.broadcast_to(mask[:, min(head, mask.shape[1] - 1)], null[:, head].shape)
            probs = thermo.boltzmann(null[:, head], 1.0 / peak.T_gauss, valid)
            weights = _attention_weights(probs, valid, rng, config.power_law_samples)
            rows.append({"layer": layer, "head": head, "T_star": peak.T_gauss,
                         **_check_head(weights, n_boot=config.power_law_boot, seed=config.scan.seed,
                                       p_threshold=config.p_threshold)})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------------
# the contract


def _same_config(run_dir: Path, config: ScanStudyConfig) -> bool:
    stored = run_dir / STUDY_JSON
    return stored.is_file() and io.read_json(stored).get("config") == config_to_dict(config)


def _table(path: Path) -> pd.DataFrame | None:
    return io.read_table(path) if path.is_file() else None


def run(config: ScanStudyConfig, run_dir: Path) -> ScanStudyResult:
    """Compute the scan and its checks into ``run_dir``, continuing from the tables already there."""
    from thermolens import models
    from thermolens.data.corpus import read_texts
    from thermolens.experiments.scan.critical import detect_critical_point
    from thermolens.experiments.scan.heads import _chosen, resolve_tokens, scan

    run_dir = Path(run_dir)
    if not _same_config(run_dir, config):  # tables of another config are not this one's
        for name in ("scan.json", NULL_TEST, CRITICAL, NULL_CRITICAL):
            (run_dir / name).unlink(missing_ok=True)
        run_dir.mkdir(parents=True, exist_ok=True)
        io.write_json(run_dir / STUDY_JSON, {"study": "scan", "config": config_to_dict(config)})
    texts = None if config.corpus is None else read_texts(list(config.corpus))
    loaded = tokens = None

    def model_and_tokens():
        nonlocal loaded, tokens
        if loaded is None:
            loaded = models.load_model(config.model, device="cpu")
            tokens = resolve_tokens(loaded, texts, config.scan)
        return loaded, tokens

    if (run_dir / "scan.json").is_file():
        result = ScanResult.load(run_dir)
    else:
        result = scan(model_and_tokens()[0], texts, config=config.scan)
        result.save(run_dir)  # scan.json last: its presence marks the scan complete
    null_test = _table(run_dir / NULL_TEST)
    if config.null_test and null_test is None:
        loaded, tokens = model_and_tokens()
        layers = _chosen(config.scan.layers, loaded.n_layers, "layer")
        heads = _chosen(config.scan.heads, loaded.n_heads, "head")
        null_test = paired_null_test(loaded, tokens, config, layers, heads)
        io.write_table(run_dir / NULL_TEST, null_test)
    critical = _table(run_dir / CRITICAL)
    null_critical = _table(run_dir / NULL_CRITICAL)
    if config.power_law:
        if critical is None:
            critical = detect_critical_point(result, model_and_tokens()[0], texts,
                                             n_sequences=config.power_law_sequences,
                                             max_samples=config.power_law_samples, n_boot=config.power_law_boot,
                                             p_threshold=config.p_threshold, seed=config.scan.seed)
            io.write_table(run_dir / CRITICAL, critical)
        if null_critical is None and null_test is not None:
            null_critical = null_power_law(*model_and_tokens(), null_test, config)
            io.write_table(run_dir / NULL_CRITICAL, null_critical)
    return ScanStudyResult(scan=result, null_test=null_test, critical=critical, null_critical=null_critical)


def load(run_dir: Path) -> ScanStudyResult:
    """A finished scan run directory, read back."""
    run_dir = Path(run_dir)
    return ScanStudyResult(scan=ScanResult.load(run_dir), null_test=_table(run_dir / NULL_TEST),
                           critical=_table(run_dir / CRITICAL), null_critical=_table(run_dir / NULL_CRITICAL))


def summary(result: ScanStudyResult) -> dict[str, Any]:
    """The scan's headline numbers (without per-head rows and timings) and the checks' counts."""
    out = {k: v for k, v in result.scan.summary().items() if k not in ("heads", "timings_s")}
    if result.null_test is not None:
        for name, part in result.null_test.groupby("definition"):
            out[f"n_distinct_{name}"] = int(part["differs"].sum())
            out[f"n_calib_distinct_{name}"] = int(part["calib_differs"].sum())
    if result.critical is not None:
        out["n_power_law_heads"] = int(result.critical["is_power_law"].sum())
    if result.null_critical is not None:
        out["n_power_law_null_heads"] = int(result.null_critical["is_power_law"].sum())
    return out


STUDY = Study(name="scan", config_type=ScanStudyConfig, run=run, load=load, summary=summary)
