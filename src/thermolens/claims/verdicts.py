"""From evidence to verdicts: Holm's family-wise control over the report, then the sensitivity rule.

Holm (1979, Scand. J. Statist. 6:65) step-down: sort the m p-values, p_(1) <= ... <= p_(m); reject
H_(i) while p_(i) <= alpha / (m - i + 1), and stop at the first that fails. The adjusted p-value is
``max_{j <= i} min(1, (m - j + 1) p_(j))``; a test rejects exactly when its adjusted value is
<= alpha. Each claim's primary test is one member of the family. A claim's variants (the analyst's
alternative choices) are decided at the level its primary test met — the threshold
``alpha / (m - i + 1)`` of its rank, or ``alpha / m`` past the first acceptance, where the step-down
stopped — so a variant is never judged more leniently than the claim itself.

A row is "inconclusive" when any variant's verdict differs from the primary verdict (the report
names the choices that flip it), or when its evidence says it needs the full preset. A row that
needs the full preset is inconclusive whatever its p-value, so its test does not join the family
(it would only make the others' thresholds stricter); its numbers are shown at the unadjusted level.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from thermolens.claims.base import Evidence, Variant

__all__ = ["ALPHA", "Verdict", "decide", "holm"]

ALPHA = 0.05


def holm(p_values: Sequence[float], alpha: float = ALPHA) -> tuple[np.ndarray, np.ndarray]:
    """Holm-adjusted p-values and the level each test met: ``(adjusted, level)``, in input order.

    ``level[i]`` is the per-test threshold Holm compares test ``i`` with at its rank: rejected tests
    and the first accepted one get ``alpha / (m - rank)``; tests past the step-down's stop get the
    threshold at which it stopped (they are accepted whatever their p-value).
    """
    p = np.asarray(p_values, dtype=float)
    m = p.size
    if m == 0:
        return p.copy(), p.copy()
    if np.any((p < 0) | (p > 1) | np.isnan(p)):
        raise ValueError(f"p-values must lie in [0, 1], got {p.tolist()}")
    order = np.argsort(p, kind="stable")
    factors = m - np.arange(m)
    adjusted_sorted = np.minimum(1.0, np.maximum.accumulate(factors * p[order]))
    thresholds = alpha / factors
    level_sorted = thresholds.copy()
    failed = np.flatnonzero(p[order] > thresholds)
    if failed.size:
        level_sorted[failed[0]:] = thresholds[failed[0]]
    adjusted, level = np.empty(m), np.empty(m)
    adjusted[order], level[order] = adjusted_sorted, level_sorted
    return adjusted, level


@dataclass(frozen=True)
class Verdict:
    """A claim's final verdict and how it was reached."""

    verdict: str
    primary: str
    p_value: float | None
    p_adjusted: float | None
    level: float | None
    sensitivity: tuple[dict, ...]
    flipped_by: tuple[str, ...]
    n_tests: int
    note: str


def _variant_verdict(variant: Variant, level: float | None) -> str:
    if variant.verdict is not None:
        return variant.verdict
    if level is None:
        raise ValueError(f"variant '{variant.choice}' is a test but its claim has no primary test")
    return variant.if_rejected if variant.p_value <= level else variant.if_not_rejected


def decide(evidence: Mapping[str, Evidence], alpha: float = ALPHA) -> dict[str, Verdict]:
    """Final verdicts for every claim's evidence, with Holm's control over all primary tests."""
    tested = [cid for cid, ev in evidence.items() if ev.decision is not None and not ev.needs_full]
    adjusted, levels = holm([evidence[cid].decision.p_value for cid in tested], alpha)
    by_claim = {cid: (float(a), float(lv)) for cid, a, lv in zip(tested, adjusted, levels)}
    out: dict[str, Verdict] = {}
    for cid, ev in evidence.items():
        p_adj, level = by_claim.get(cid, (None, None))
        if ev.decision is not None and cid not in by_claim:  # needs the full preset: outside the family
            level = alpha
        if ev.decision is not None:
            rejected = ev.decision.p_value <= level if p_adj is None else p_adj <= alpha
            primary = ev.decision.if_rejected if rejected else ev.decision.if_not_rejected
        else:
            primary = ev.verdict
        sensitivity = tuple(
            {"choice": v.choice, "effect": v.effect, "p_value": v.p_value, "verdict": _variant_verdict(v, level)}
            for v in ev.variants
        )
        flipped = tuple(s["choice"] for s in sensitivity if s["verdict"] != primary)
        if ev.needs_full:
            verdict, note = "inconclusive", f"needs the full preset: {ev.needs_full}"
        elif flipped:
            verdict, note = "inconclusive", f"the primary verdict ({primary}) flips under: {'; '.join(flipped)}"
        else:
            verdict, note = primary, ""
        n_tests = (1 if ev.decision is not None else 0) + sum(v.p_value is not None for v in ev.variants)
        out[cid] = Verdict(
            verdict=verdict, primary=primary, p_value=None if ev.decision is None else ev.decision.p_value,
            p_adjusted=p_adj, level=level, sensitivity=sensitivity, flipped_by=flipped, n_tests=n_tests, note=note,
        )
    return out
