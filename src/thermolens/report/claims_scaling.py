"""Figures of the claims report for Theorems 1 and 3 (``thermolens.claims.scaling``).

Each figure puts the scaling-analysis plot of ``report.scaling`` beside a panel that shows the
claim's number against its null or predicted value. Functions draw the numbers they are given;
they compute no physics.
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from thermolens.report.scaling import plot_architecture_scaling, plot_temperature_scaling  # noqa: E402

__all__ = ["plot_exponents", "plot_theorem1", "plot_theorem3"]


def plot_exponents(rows, *, ax=None):
    """A forest plot of width exponents: ``rows`` = ``(label, alpha, lo, hi)`` (lo/hi NaN: a point
    without interval), top to bottom, with ``alpha = 0`` marked and the side Theorem 1 claims
    (``alpha > 0``: T* falls with width) shaded. Returns the Axes."""
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4.5))
    y = np.arange(len(rows))[::-1]
    finite = [v for r in rows for v in r[1:] if v is not None and math.isfinite(v)]
    span = max([abs(v) for v in finite] + [0.1]) * 1.15
    ax.axvspan(0, span, color="tab:green", alpha=0.08, label="claimed side: alpha > 0")
    ax.axvline(0, color="k", lw=0.8)
    for yi, (label, value, lo, hi) in zip(y, rows):
        colour = "gray" if "null" in label else "tab:blue"
        if math.isfinite(lo) and math.isfinite(hi):
            ax.errorbar(value, yi, xerr=[[value - lo], [hi - value]], fmt="o", color=colour, capsize=3)
        else:
            ax.plot(value, yi, "D", color=colour, ms=5, mfc="white")
    ax.set_yticks(y, [r[0] for r in rows], fontsize=7)
    ax.set_xlim(-span, span)
    ax.set_xlabel("alpha  (T* ~ d^-alpha)")
    ax.set_title("exponents with 95% CI (open: variants, no CI)", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    return ax


def plot_theorem1(result, rows):
    """Theorem 1: left, ``T*`` against width per head index with each fit and the Gaussian-null fit
    (``report.scaling.plot_temperature_scaling`` of the ``TemperatureScaling`` ``result``); right, the
    exponents ``rows`` (see :func:`plot_exponents`). Returns the Figure."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [1.4, 1]})
    plot_temperature_scaling(result, ax=left)
    plot_exponents(rows, ax=right)
    fig.tight_layout()
    return fig


def plot_theorem3(result, replicates, claimed: float, marks):
    """Theorem 3: left, the loss-optimal ``N* d`` against ``L H`` with the fits and the claimed slope
    (``report.scaling.plot_architecture_scaling`` of the ``ArchitectureScaling`` ``result``); right,
    the bootstrap replicates of the exponent ``e`` as a histogram, the claimed value and 0 marked,
    and the variants' estimates ``marks`` = ``(label, e)`` as ticks. Returns the Figure."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 4.8), gridspec_kw={"width_ratios": [1.4, 1]})
    plot_architecture_scaling(result, ax=left)
    r = np.asarray(replicates, dtype=float)
    r = r[np.isfinite(r)]
    right.hist(r, bins=40, color="tab:blue", alpha=0.6, label=f"bootstrap replicates of e ({r.size})")
    right.axvline(claimed, color="tab:red", ls="--", label=f"claimed e = {claimed:g}")
    right.axvline(0.0, color="k", lw=0.8, label="e = 0 (no dependence on L H)")
    right.axvline(result.exponent, color="tab:blue", lw=2, label=f"estimate e = {result.exponent:.2f}")
    top = right.get_ylim()[1]
    colours = plt.get_cmap("tab10")(np.linspace(0, 1, max(len(marks), 1)))
    for colour, (label, value) in zip(colours, marks):
        right.plot([value], [top * 0.95], "v", color=colour, label=label if len(label) <= 60 else label[:57] + "...")
    right.set_xlabel("e in N* d = C (L H)^e (d/d0)^g")
    right.set_ylabel("replicates")
    right.set_title("exponent against the claim (triangles: variants)", fontsize=9)
    right.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    fig.tight_layout()
    return fig
