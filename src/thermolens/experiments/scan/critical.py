"""``detect_critical_point`` of the seed paper (Aranda Barois 2024, §3.1), made runnable and honest.

The seed scans temperatures, tracks a correlation length ``xi`` and a susceptibility ``chi`` of the
attention patterns, and declares the first temperature at which ``is_power_law(patterns)`` passes a
Kolmogorov–Smirnov test (p > 0.05) the critical point. As written that test cannot work: a KS
p-value computed against parameters fitted to the same data is biased towards acceptance, and
failing to reject a power law is not evidence for one. Here, per head of a finished scan:

* the critical temperature is ``T*``, the refined peak of ``C(T)`` (with its bootstrap CI and its
  null-model reference, from the scan); ``T_chi_peak`` and ``xi_at_T_star`` come from the same curves;
* the power-law check is applied to the head's attention weights ``p_ij`` at ``T*`` (the seed's
  "patterns") with the method of Clauset, Shalizi & Newman 2009 (arXiv:0706.1062): MLE exponent with
  ``xmin`` chosen by minimum KS distance, the semi-parametric bootstrap p-value, and likelihood-ratio
  tests against a lognormal and an exponential. ``is_power_law`` is True only when the bootstrap
  p-value exceeds ``p_threshold`` (0.1, Clauset's threshold) and neither alternative is favoured.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

ALTERNATIVES = ("lognormal", "exponential")


def _attention_weights(probs: Any, valid: Any, rng: np.random.Generator, max_samples: int) -> np.ndarray:
    """Valid, positive attention weights of one head, subsampled without replacement to ``max_samples``."""
    values = probs[valid].double().cpu().numpy()
    values = values[values > 0]
    if values.size > max_samples:
        values = rng.choice(values, size=max_samples, replace=False)
    return values


def _check_head(weights: np.ndarray, *, n_boot: int, seed: int, p_threshold: float) -> dict[str, Any]:
    from thermolens import stats

    try:
        fit = stats.fit_power_law(weights)
    except ValueError as exc:  # too few or degenerate weights: say why instead of guessing
        return {"alpha": np.nan, "xmin": np.nan, "n_tail": 0, "gof_p": np.nan, "is_power_law": False,
                "reason": str(exc)}
    gof = stats.goodness_of_fit(fit, weights, n_boot=n_boot, seed=seed, n_jobs=1)
    row: dict[str, Any] = {"alpha": fit.alpha, "xmin": fit.xmin, "n_tail": fit.n_tail, "gof_p": gof.p_value}
    favoured = []
    for name in ALTERNATIVES:
        comparison = stats.compare(fit, weights, name)
        row[f"R_{name}"] = comparison.normalized_ratio
        row[f"p_{name}"] = comparison.p_value
        if comparison.favours == name:
            favoured.append(name)
    row["is_power_law"] = bool(gof.p_value > p_threshold and not favoured)
    row["reason"] = (
        "plausible power law" if row["is_power_law"]
        else f"bootstrap p = {gof.p_value:.3g} <= {p_threshold}" if gof.p_value <= p_threshold
        else f"{', '.join(favoured)} fits better"
    )
    return row


def detect_critical_point(
    result: Any,
    model: Any,
    texts: Sequence[str] | str | None = None,
    *,
    n_sequences: int = 8,
    max_samples: int = 5000,
    n_boot: int = 100,
    p_threshold: float = 0.1,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Critical point of every head of a finished ``ScanResult``, with the seed's power-law check.

    model, texts: the model and corpus the scan ran on (the first ``n_sequences`` sequences are
    captured once more to get each head's attention weights at its T*). Returns one row per head:
    ``layer, head, T_star, T_star_lo, T_star_hi, T_star_null_gauss, T_chi_peak, xi_at_T_star,``
    ``alpha, xmin, n_tail, gof_p, R_lognormal, p_lognormal, R_exponential, p_exponential,``
    ``is_power_law, reason``.
    """
    import torch

    from thermolens import thermo
    from thermolens.experiments.scan.heads import capture_batch, resolve_model, resolve_tokens

    if not 0 < p_threshold < 1:
        raise ValueError(f"p_threshold={p_threshold} must lie in (0, 1); Clauset et al. use 0.1")
    loaded = resolve_model(model, "cpu")
    tokens = resolve_tokens(loaded, texts, result.config)
    ids, mask = tokens.input_ids[:n_sequences], tokens.attention_mask[:n_sequences]
    heads = result.heads
    layers = sorted(int(v) for v in heads["layer"].unique())
    with torch.inference_mode():
        captured = capture_batch(loaded, ids, mask, layers)
    rng = np.random.default_rng(seed)
    rows = []
    for index, head_row in enumerate(heads.itertuples(index=False)):
        layer, head = int(head_row.layer), int(head_row.head)
        logits = captured.logits[layer][:, head]
        valid = torch.broadcast_to(captured.mask[layer][:, min(head, captured.mask[layer].shape[1] - 1)], logits.shape)
        probs = thermo.boltzmann(logits, 1.0 / head_row.T_star, valid)
        weights = _attention_weights(probs, valid, rng, max_samples)
        rows.append({
            "layer": layer, "head": head, "T_star": head_row.T_star, "T_star_lo": head_row.T_star_lo,
            "T_star_hi": head_row.T_star_hi, "T_star_null_gauss": head_row.T_star_null_gauss,
            "T_chi_peak": head_row.T_chi_peak, "xi_at_T_star": head_row.xi_at_T_star,
            **_check_head(weights, n_boot=n_boot, seed=seed, p_threshold=p_threshold),
        })
        if progress is not None:
            progress(index + 1, len(heads))
    return pd.DataFrame(rows)
