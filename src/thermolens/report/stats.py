"""Figures of the statistics engine: the tail CCDF with the fitted laws, r_k with the MR fit, <S>(T).

Each function takes results and an optional ``ax`` and returns the ``Axes``; save with
``thermolens.io.save_figure(ax.figure, path)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from thermolens.stats.alternatives import Comparison, survival  # noqa: E402
from thermolens.stats.avalanches import CracklingResult  # noqa: E402
from thermolens.stats.branching import BranchingResult  # noqa: E402
from thermolens.stats.powerlaw import PowerLawFit  # noqa: E402

_COLOURS = {
    "power_law": "C3",
    "truncated_power_law": "C2",
    "lognormal": "C1",
    "exponential": "C4",
    "stretched_exponential": "C5",
}


def _axes(ax):
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 4.2))
    return ax


def plot_ccdf(x, fit: PowerLawFit, comparisons: Sequence[Comparison] = (), ax=None):
    """Empirical P(X >= x | X >= xmin) of the tail on log-log axes with the fitted power law and alternatives."""
    ax = _axes(ax)
    data = np.sort(np.asarray(x, dtype=np.float64))
    tail = data[(data >= fit.xmin) & (data <= (fit.xmax if fit.xmax is not None else np.inf))]
    values, counts = np.unique(tail, return_counts=True)
    ccdf = 1.0 - np.r_[0, np.cumsum(counts)[:-1]] / tail.size  # fraction >= each value
    ax.loglog(values, ccdf, ".", ms=3, color="0.3", label=f"data (n_tail={fit.n_tail})")
    hi = values[-1]
    grid = np.unique(np.round(np.geomspace(fit.xmin, hi, 120))) if fit.discrete else np.geomspace(fit.xmin, hi, 200)
    if fit.xmax is None:
        pl = survival("power_law", {"alpha": fit.alpha}, grid, fit.xmin, discrete=fit.discrete)
        ax.loglog(grid, pl, "-", color=_COLOURS["power_law"], label=f"power law α={fit.alpha:.3f}±{fit.alpha_stderr:.3f}")
    for c in comparisons:
        alt = c.alternative_fit
        s = survival(alt.name, alt.params, grid, alt.xmin, discrete=alt.discrete)
        label = f"{alt.name.replace('_', ' ')} (R={c.loglikelihood_ratio:.1f}, p={c.p_value:.2g})"
        ax.loglog(grid, s, "--", color=_COLOURS.get(alt.name), label=label)
    ax.set_ylim(0.5 / tail.size, 1.5)
    ax.set_xlabel("x")
    ax.set_ylabel("P(X ≥ x | X ≥ xmin)")
    ax.set_title(f"xmin={fit.xmin:g}, KS D={fit.ks_distance:.4f}")
    ax.legend(fontsize=7, frameon=False)
    return ax


def plot_branching(result: BranchingResult, ax=None):
    """Coefficients r_k (with bootstrap errors where available) and the fitted b m^k + c."""
    ax = _axes(ax)
    k = result.steps * result.dt
    if np.all(np.isfinite(result.coefficient_stderr)):
        ax.errorbar(k, result.coefficients, yerr=result.coefficient_stderr, fmt=".", ms=3, color="0.3", elinewidth=0.5, label="r_k")
    else:
        ax.plot(k, result.coefficients, ".", ms=3, color="0.3", label="r_k")
    ci = "" if not np.isfinite(result.m_ci[0]) else f" [{result.m_ci[0]:.4f}, {result.m_ci[1]:.4f}]"
    ax.plot(k, result.fitted(), "-", color="C3", label=f"{result.fit.replace('_', ' ')}: m={result.m:.4f}{ci}, τ={result.tau:.3g}")
    ax.set_xlabel("lag k·dt")
    ax.set_ylabel("r_k")
    ax.set_title(f"MR estimator ({result.method}); conventional m = r_1 = {result.m_conventional:.4f}")
    ax.legend(fontsize=7, frameon=False)
    return ax


def plot_mean_size(result: CracklingResult, ax=None):
    """<S>(T) with the fitted T^gamma and the slope predicted by (tau_t - 1)/(tau - 1)."""
    ax = _axes(ax)
    t, s = result.durations, result.mean_sizes
    ax.loglog(t, s, ".", color="0.3", label="<S>(T)")
    ref = s[0] / t[0] ** result.gamma_fit
    fit_label = f"fit γ={result.gamma_fit:.3f}±{result.gamma_fit_stderr:.3f}"
    pred_label = f"(τ_t-1)/(τ-1)={result.gamma_predicted:.3f}±{result.gamma_predicted_stderr:.3f}"
    ax.loglog(t, ref * t**result.gamma_fit, "-", color="C3", label=fit_label)
    ax.loglog(t, ref * t**result.gamma_predicted, "--", color="C0", label=pred_label)
    ax.set_xlabel("duration T (bins)")
    ax.set_ylabel("mean size <S>")
    ax.legend(fontsize=7, frameon=False)
    return ax
