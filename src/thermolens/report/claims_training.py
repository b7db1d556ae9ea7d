"""Figure of the claims report for criticality-aware training (``thermolens.claims.training``).

One column per comparison: above, the metric of every seed for AdamW and for the other optimizer,
joined by a line per seed (the same seed: the same initial weights and data order); below, the
per-seed differences with their mean, its 95 % t-interval, and the central 95 % of the same mean
under exact sign flips (the null of no difference). Functions draw the numbers they are given; they
compute no physics.
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["plot_paired_seeds"]


def _finite(*values: float) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)


def plot_paired(comparison, *, axes=None):
    """Paired seeds of one comparison on two Axes ``(top, bottom)``; returns them.

    ``comparison`` has ``label``, ``metric``, ``treatment``, ``seeds``, ``baseline_values``,
    ``treatment_values``, ``lr_baseline``, ``lr_treatment`` and ``test`` (``mean``, ``ci``,
    ``null_ci``): a ``thermolens.claims.training.PairedComparison``.
    """
    if axes is None:
        _, axes = plt.subplots(2, 1, figsize=(4.2, 6.0), gridspec_kw={"height_ratios": [1.3, 1]})
    top, bottom = axes
    base = np.asarray(comparison.baseline_values, float)
    treat = np.asarray(comparison.treatment_values, float)
    diff = treat - base
    for seed, b, t, d in zip(comparison.seeds, base, treat, diff):
        colour = "tab:green" if d < 0 else "tab:red"
        top.plot([0, 1], [b, t], "-o", color=colour, alpha=0.8, ms=4)
        top.annotate(f"seed {seed}", (1, t), xytext=(4, 0), textcoords="offset points", fontsize=6, va="center")
    top.set_xticks([0, 1], [f"adamw\nlr {comparison.lr_baseline:g}",
                            f"{comparison.treatment}\nlr {comparison.lr_treatment:g}"])
    top.set_xlim(-0.3, 1.45)
    top.set_ylabel(comparison.metric, fontsize=8)
    top.set_title(comparison.label, fontsize=8)
    test = comparison.test
    if _finite(*test.null_ci):
        bottom.axhspan(test.null_ci[0], test.null_ci[1], color="gray", alpha=0.2, label="null: 95% of sign flips")
    bottom.axhline(0, color="k", lw=0.8)
    x = np.linspace(-0.15, 0.15, diff.size) if diff.size > 1 else np.zeros(1)
    bottom.plot(x, diff, "o", color="tab:blue", alpha=0.7, ms=4, label="per seed")
    if _finite(*test.ci):
        bottom.errorbar([0.45], [test.mean], yerr=[[test.mean - test.ci[0]], [test.ci[1] - test.mean]],
                        fmt="D", color="k", capsize=4, label="mean, 95% CI (t)")
    else:
        bottom.plot([0.45], [test.mean], "D", color="k", label="mean")
    bottom.set_xlim(-0.4, 0.8)
    bottom.set_xticks([])
    bottom.set_ylabel(f"{comparison.treatment} - adamw\n(< 0: {comparison.treatment} better)", fontsize=8)
    bottom.legend(fontsize=6, loc="best")
    return top, bottom


def plot_paired_seeds(comparisons):
    """One column per comparison (``plot_paired``), the first being the claim's primary test.

    Returns the Figure."""
    n = max(len(comparisons), 1)
    fig, axes = plt.subplots(2, n, figsize=(4.2 * n, 6.2), squeeze=False, gridspec_kw={"height_ratios": [1.3, 1]})
    for j, comparison in enumerate(comparisons):
        plot_paired(comparison, axes=(axes[0, j], axes[1, j]))
    axes[0, 0].set_title("primary: " + axes[0, 0].get_title(), fontsize=8)
    fig.tight_layout()
    return fig
