"""Figures of the Kim 2026 claims (``thermolens.claims.kim``): they draw the numbers the claims
computed, and compute no physics."""

from __future__ import annotations

import math
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def _finite(x: Any) -> bool:
    return x is not None and isinstance(x, (int, float, np.floating)) and math.isfinite(float(x))


def plot_canonical(checks, tolerance: float, resolution: float, tstar, *, primary: tuple[str, str], sqrt_d: float):
    """Left: largest error of each check per model and dtype (log scale) against the tolerance and
    the error a 1% wrong ``T_K`` would leave (the check's resolution). Right: per head, Kim's
    ``T*_K`` against ``sqrt(d_k) T*`` of the primary model, on the diagonal. Returns the Figure.

    ``checks``: long table (model, dtype, layer, check, error); ``tstar``: (model, dtype, layer,
    head, T_star, T_star_kim); ``sqrt_d``: sqrt(d_k) of the primary model.
    """
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [2.2, 1]})
    table = checks.groupby(["check", "model", "dtype"], sort=False)["error"].max().unstack(["model", "dtype"])
    names = list(table.index)
    columns = list(table.columns)
    width = 0.8 / max(len(columns), 1)
    for i, column in enumerate(columns):
        values = np.maximum(table[column].to_numpy(float), 1e-18)  # an exact zero still gets a bar
        left.bar(np.arange(len(names)) + (i - (len(columns) - 1) / 2) * width, values, width,
                 label=f"{column[0]} / {column[1]}")
    left.axhline(tolerance, color="black", ls="--", lw=1, label=f"tolerance {tolerance:g}")
    left.axhline(resolution, color="tab:red", ls=":", lw=1.2, label=f"T_K off by 1%: {resolution:.1e}")
    left.set_yscale("log")
    left.set_xticks(np.arange(len(names)))
    left.set_xticklabels(names, rotation=25, ha="right", fontsize=8)
    left.set_ylabel("largest error over layers, rows, T")
    left.legend(fontsize=7, loc="upper left", ncol=2)
    left.set_title("model's own attention vs canonical ensemble", fontsize=10)

    model, dtype = primary
    part = tstar[(tstar["model"] == model) & (tstar["dtype"] == dtype)]
    x = part["T_star"].to_numpy(float) * sqrt_d
    right.scatter(x, part["T_star_kim"], s=12, color="tab:blue")
    if x.size:
        lims = [float(np.min(x)) * 0.8, float(np.max(x)) * 1.25]
        right.plot(lims, lims, color="gray", lw=0.8)
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel(f"sqrt(d_k) T*  (sqrt(d_k) = {sqrt_d:.3g})")
    right.set_ylabel("T*_K from energies -q.k")
    right.set_title(f"T* per head, {model} {dtype}", fontsize=10)
    fig.tight_layout()
    return fig


def _panel(ax, panel: dict[str, Any]) -> None:
    steps = panel["steps"]
    ax.plot(steps, panel["test_acc"], color="tab:orange", lw=1.2, label="test acc")
    ax.plot(steps, panel["train_acc"], color="tab:blue", lw=0.8, alpha=0.6, label="train acc")
    ax.set_ylim(-0.02, 1.02)
    ax.tick_params(labelsize=7)
    twin = ax.twinx()
    twin.plot(steps, panel["C"], color="tab:red", lw=1.1, label="C(t), T = 1")
    if len(panel["sweep_steps"]):
        twin.plot(panel["sweep_steps"], panel["sweep_cmax"], color="tab:red", ls=":", marker=".", ms=4,
                  label="C_max of C(T)")
    twin.tick_params(labelsize=7, colors="tab:red")
    if _finite(panel["onset"]):
        ax.axvline(panel["onset"], color="tab:orange", ls="--", lw=1)
    if _finite(panel["peak"]):
        ax.axvline(panel["peak"], color="tab:red", ls="--", lw=1)
    if panel["groks"] and _finite(panel["t_fit"]) and _finite(panel["t_gen"]):
        ax.axvspan(panel["t_fit"], panel["t_gen"], color="gray", alpha=0.12, lw=0)
    ax.set_title(panel["title"], fontsize=8)


def plot_precursor(panels: list[dict[str, Any]], per_run: list[dict[str, Any]], cmax: dict[str, Any]):
    """Top: one panel per run — test and train accuracy (left axis), ``C(t)`` at ``T = 1`` and the
    ``C(T)`` peak height at the sweep checkpoints (right axis), onset (orange dashes), C peak (red
    dashes), the memorised-but-not-generalized stretch ``[t_fit, t_gen]`` shaded when the run groks.
    Bottom left: lead = onset - peak of each grokking run with its 95% interval, against 0 (the null
    of simultaneity). Bottom right: ``C_max`` against p (log p) with the fitted power law.
    Returns the Figure.
    """
    n = len(panels)
    n_cols = min(4, max(n, 1))
    n_rows = math.ceil(n / n_cols) if n else 1
    fig = plt.figure(figsize=(max(3.6 * n_cols + 1, 11.0), 2.4 * n_rows + 3.4))
    outer = fig.add_gridspec(2, 1, height_ratios=[n_rows, 1.5])
    top = outer[0].subgridspec(n_rows, n_cols, hspace=0.6, wspace=0.4)
    bottom = outer[1].subgridspec(1, 2)
    for i, panel in enumerate(panels):
        ax = fig.add_subplot(top[i // n_cols, i % n_cols])
        _panel(ax, panel)
        if i == 0:
            handles = ax.get_legend_handles_labels()[0] + ax.figure.axes[-1].get_legend_handles_labels()[0]
            ax.legend(handles=handles, fontsize=6, loc="center right")

    leads = fig.add_subplot(bottom[0, 0])
    usable = [r for r in per_run if r["groks"] and _finite(r["lead"])]
    for y, r in enumerate(usable):
        low, high = r["lead_ci"]
        if _finite(low) and _finite(high):
            leads.plot([low, high], [y, y], color="tab:red", lw=1.5)
        leads.plot(r["lead"], y, "o", color="tab:red", ms=4)
    leads.axvline(0, color="black", lw=0.8, label="0: simultaneous (H0)")
    if usable:
        leads.legend(fontsize=7, loc="best")
    leads.set_yticks(range(len(usable)))
    leads.set_yticklabels([f"p={r['p']} s={r['seed']}" for r in usable], fontsize=7)
    leads.set_xlabel("lead = onset (test acc 0.5) - C peak, steps (> 0: peak first)", fontsize=8)
    if not usable:
        leads.text(0.5, 0.5, f"no run groks under the criterion ({len(per_run)} runs)", ha="center", va="center",
                   transform=leads.transAxes, fontsize=9)
        leads.set_yticks([])

    scaling = fig.add_subplot(bottom[0, 1])
    ps = np.array([r["p"] for r in usable], float)
    cs = np.array([r["C_max"] for r in usable], float)
    if ps.size:
        scaling.scatter(ps, cs, color="tab:red", s=16)
        if _finite(cmax.get("exponent")):
            grid_p = np.geomspace(ps.min(), ps.max(), 50)
            scaling.plot(grid_p, np.exp(cmax["intercept"]) * grid_p ** cmax["exponent"], color="gray",
                         label=f"p^{cmax['exponent']:.2f}")
            scaling.legend(fontsize=7)
        scaling.set_xscale("log")
    else:
        scaling.text(0.5, 0.5, "no grokking run: no C_max", ha="center", va="center", transform=scaling.transAxes,
                     fontsize=9)
    scaling.set_xlabel("modulus p", fontsize=8)
    scaling.set_ylabel("C_max (peak height)", fontsize=8)
    fig.tight_layout()
    return fig
