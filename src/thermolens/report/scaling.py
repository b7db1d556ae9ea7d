"""Figures of the scaling analyses: T* against width per head index with the fitted power laws
(Theorem 1), the loss-optimal N*d against L*H with the fitted and the claimed slope (Theorem 3).
Functions draw results; they compute no physics."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_temperature_scaling(result, *, ax=None):
    """``T*`` of every bracketed head against width ``d`` (log-log), one colour per head index ``k``,
    with each ``k``'s fitted line ``T_0 (d/d_0)^(-alpha_k) (n/n_0)^(-alpha_n)`` drawn at the geometric
    mean context length of the family, and the pooled Gaussian-null fit dashed in grey.
    ``result``: a ``TemperatureScaling``. Returns the Axes."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4.5))
    points, per_k = result.points, result.per_k
    colours = plt.get_cmap("viridis")(np.linspace(0, 0.9, max(len(per_k), 1)))
    widths = np.unique(points["d"].to_numpy(float))
    grid = np.geomspace(widths.min(), widths.max(), 50)
    n_mean = float(np.exp(np.log(points["L"].to_numpy(float)).mean()))

    def line(T0: float, alpha: float, alpha_n: float) -> np.ndarray:
        n_term = (n_mean / result.n0) ** (-alpha_n) if np.isfinite(alpha_n) else 1.0
        return T0 * (grid / result.d0) ** (-alpha) * n_term

    rng = np.random.default_rng(0)  # horizontal jitter only, so overlapping members stay visible
    for colour, row in zip(colours, per_k.to_dict(orient="records")):
        sel = points["k"] == row["k"]
        jitter = np.exp(rng.uniform(-0.06, 0.06, int(sel.sum())))
        ax.scatter(points.loc[sel, "d"] * jitter, points.loc[sel, "T_star"], s=10, alpha=0.5, color=colour)
        if np.isfinite(row["alpha"]):
            ax.plot(grid, line(row["T0"], row["alpha"], row["alpha_n"]), color=colour,
                    label=f"k={row['k']}: alpha={row['alpha']:.2f} [{row['alpha_lo']:.2f}, {row['alpha_hi']:.2f}]")
    pooled = result.pooled
    if np.isfinite(pooled["alpha_null"]):
        null_T0 = float(np.exp(np.log(points["T_star_null_gauss"]).mean()))  # level of the null cloud
        scale = null_T0 / float(np.exp(np.mean(np.log(line(1.0, pooled["alpha_null"], pooled["alpha_n_null"])))))
        ax.plot(grid, line(scale, pooled["alpha_null"], pooled["alpha_n_null"]), color="gray", ls="--",
                label=f"Gaussian null: alpha={pooled['alpha_null']:.2f}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("width d (d_model)")
    ax.set_ylabel("T* (peak of C(T))")
    ax.set_title(f"Theorem 1: T* vs width (k = rank of T* in its layer; lines at n = {n_mean:.0f})", fontsize=9)
    ax.legend(fontsize=7)
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
