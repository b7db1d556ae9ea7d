"""Figures of the scaling analyses: T* against width per head index with the fitted power laws
(Theorem 1), the loss-optimal N*d against L*H with the fitted and the claimed slope (Theorem 3).
Functions draw results; they compute no physics."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _law(T0: float, alpha: float, alpha_n: float, d, n, d0: float, n0: float):
    """``T_0 (d/d_0)^(-alpha) (n/n_0)^(-alpha_n)`` (the n term dropped when alpha_n was not fitted)."""
    n_term = (n / n0) ** (-alpha_n) if np.isfinite(alpha_n) else 1.0
    return T0 * (d / d0) ** (-alpha) * n_term


def _plot_against(result, variable: str, ax):
    """T* of every bracketed head against ``variable`` ("d" or "L"), per k, with each k's fitted law
    at the geometric mean of the other variable, and the Gaussian-null fit (its own level) dashed."""
    points, per_k, pooled = result.points, result.per_k, result.pooled
    other = "L" if variable == "d" else "d"
    fixed = float(np.exp(np.log(points[other].to_numpy(float)).mean()))
    values = np.unique(points[variable].to_numpy(float))
    grid = np.geomspace(values.min(), values.max(), 50)

    def law(T0: float, alpha: float, alpha_n: float) -> np.ndarray:
        d, n = (grid, fixed) if variable == "d" else (fixed, grid)
        return _law(T0, alpha, alpha_n, d, n, result.d0, result.n0)

    colours = plt.get_cmap("viridis")(np.linspace(0, 0.9, max(len(per_k), 1)))
    rng = np.random.default_rng(0)  # horizontal jitter only, so overlapping members stay visible
    for colour, row in zip(colours, per_k.to_dict(orient="records")):
        sel = points["k"] == row["k"]
        jitter = np.exp(rng.uniform(-0.06, 0.06, int(sel.sum())))
        ax.scatter(points.loc[sel, variable] * jitter, points.loc[sel, "T_star"], s=10, alpha=0.5, color=colour)
        exponent = "alpha" if variable == "d" else "alpha_n"
        if np.isfinite(row[exponent]):
            ax.plot(grid, law(row["T0"], row["alpha"], row["alpha_n"]), color=colour,
                    label=f"k={row['k']}: {exponent}={row[exponent]:.2f} [{row[exponent + '_lo']:.2f}, "
                          f"{row[exponent + '_hi']:.2f}]")
    if np.isfinite(pooled["alpha_null"]):
        null_line = law(1.0, pooled["alpha_null"], pooled["alpha_n_null"])
        level = float(np.exp(np.log(points["T_star_null_gauss"]).mean()) / np.exp(np.log(null_line).mean()))
        ax.plot(grid, level * null_line, color="gray", ls="--", label="Gaussian null (pooled fit)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylabel("T* (peak of C(T))")
    ax.legend(fontsize=7)
    return fixed


def plot_temperature_scaling(result, *, ax=None):
    """Theorem 1: ``T*`` of every bracketed head against width ``d`` (log-log), one colour per head
    index ``k``, each ``k``'s fitted law ``T_0 (d/d_0)^(-alpha_k) (n/n_0)^(-alpha_n)`` drawn at the
    geometric-mean context length, and the pooled Gaussian-null fit dashed in grey.
    ``result``: a ``TemperatureScaling``. Returns the Axes."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4.5))
    n_mean = _plot_against(result, "d", ax)
    ax.set_xlabel("width d (d_model)")
    ax.set_title(f"Theorem 1: T* vs width (k = rank of T* in its layer; lines at n = {n_mean:.0f})", fontsize=9)
    return ax


def plot_context_scaling(result, *, ax=None):
    """The same heads against context length ``n = L`` (the finite-size variable), each ``k``'s law
    drawn at the geometric-mean width. ``result``: a ``TemperatureScaling``. Returns the Axes."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4.5))
    d_mean = _plot_against(result, "L", ax)
    ax.set_xlabel("context length n = L")
    ax.set_title(f"T* vs context length (lines at d = {d_mean:.0f})", fontsize=9)
    return ax


def plot_architecture_scaling(result, *, ax=None):
    """Loss-optimal ``N* d`` of every (L, H, d) group against ``L H`` (log-log), one colour per width,
    marker size by the stability of the choice over seed resamples, the fitted law
    ``C (L H)^e (d/d_0)^g`` for each width, and the claimed ``N d = C' sqrt(L H)`` (slope 1/2, the same
    for every width) through the geometric mean of the points. ``result``: an ``ArchitectureScaling``.
    Returns the Axes."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4.5))
    best = result.optimal
    lh, nd = best["LH"].to_numpy(float), best["Nd"].to_numpy(float)
    widths = np.unique(best["d"].to_numpy(float))
    colours = plt.get_cmap("plasma")(np.linspace(0, 0.85, widths.size))
    grid = np.geomspace(lh.min(), lh.max(), 50)
    g = result.width_exponent if np.isfinite(result.width_exponent) else 0.0
    for colour, d in zip(colours, widths):
        sel = best["d"].to_numpy(float) == d
        ax.scatter(lh[sel], nd[sel], s=15 + 60 * best.loc[sel, "stability"], color=colour, alpha=0.8)
        ax.plot(grid, result.C * grid**result.exponent * (d / result.d0) ** g, color=colour, label=f"fit, d = {d:g}")
    anchor_x, anchor_y = np.exp(np.log(lh).mean()), np.exp(np.log(nd).mean())
    ax.plot(grid, anchor_y * (grid / anchor_x) ** 0.5, color="k", ls="--", label="claimed: slope 1/2, all d")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("L H (context length x entropy rate, bits)")
    ax.set_ylabel("N* d (best head count x width)")
    ax.set_title(f"Theorem 3: e = {result.exponent:.2f} [{result.exponent_lo:.2f}, {result.exponent_hi:.2f}], "
                 f"g = {result.width_exponent:.2f} (claim: 1/2, 0)", fontsize=9)
    ax.legend(fontsize=7)
    return ax
