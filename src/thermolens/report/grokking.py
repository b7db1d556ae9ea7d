"""Figures of grokking runs: accuracy and specific heat on shared step axes, C(T) through training,
lead time against the modulus. Functions draw results; they compute no physics."""

from __future__ import annotations

import math
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _vline(ax, x, **kwargs) -> None:
    if x is not None and isinstance(x, (int, float)) and math.isfinite(x):
        ax.axvline(x, **kwargs)


def plot_run(history, summary: dict[str, Any], *, axes=None):
    """Two panels sharing the step axis: train/test accuracy above, specific heat below.

    ``history``: a run's history frame; ``summary``: its headline row (onset and peak steps).
    Returns the lower Axes (``.figure`` is the figure).
    """
    if axes is None:
        fig, axes = plt.subplots(2, 1, figsize=(7, 5.5), sharex=True, gridspec_kw={"height_ratios": [1, 1.3]})
    top, bottom = axes
    steps = history["step"]
    top.plot(steps, history["train_acc"], label="train", color="tab:blue")
    top.plot(steps, history["test_acc"], label="test", color="tab:orange")
    top.set_ylabel("accuracy")
    top.set_ylim(-0.02, 1.02)
    top.legend(loc="lower right", fontsize=8)
    bottom.plot(steps, history["test_C_eq"], label="C (= row, test)", color="tab:red")
    bottom.plot(steps, history["train_C_eq"], label="C (= row, train)", color="tab:red", ls=":", alpha=0.7)
    bottom.plot(steps, history["test_C_null"], label="Gaussian null", color="gray", ls="--")
    bottom.plot(steps, history["test_C_corr"], label="C − null", color="tab:purple", alpha=0.8)
    bottom.set_ylabel("specific heat at T = 1")
    bottom.set_xlabel("training step")
    bottom.legend(loc="upper right", fontsize=8)
    for ax in (top, bottom):
        _vline(ax, summary.get("onset_step"), color="tab:orange", ls="--", lw=1)
        _vline(ax, summary.get("peak_step"), color="tab:red", ls="--", lw=1)
    title = f"p={summary.get('p')} seed={summary.get('seed')} frac={summary.get('train_fraction')}"
    if summary.get("grokfast"):
        title += "  [GROKFAST: modified dynamics]"
    top.set_title(title, fontsize=10)
    return bottom


def plot_study(histories: dict[str, Any], runs) -> Any:
    """One panel per run: test accuracy (left axis) and C (right axis) on the run's step axis.

    ``histories``: run name -> history frame; ``runs``: the study's run table. Returns the Figure.
    """
    rows = runs.to_dict(orient="records")
    n = len(rows)
    n_cols = min(3, n)
    n_rows = math.ceil(n / n_cols)
    fig, grid = plt.subplots(n_rows, n_cols, figsize=(4.2 * n_cols, 2.8 * n_rows), squeeze=False)
    for ax, row in zip(grid.flat, rows):
        history = histories[row["run"]]
        ax.plot(history["step"], history["test_acc"], color="tab:orange", lw=1.2)
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel("test acc", fontsize=8, color="tab:orange")
        twin = ax.twinx()
        twin.plot(history["step"], history["test_C_eq"], color="tab:red", lw=1.2)
        twin.set_ylabel("C", fontsize=8, color="tab:red")
        _vline(ax, row.get("onset_step"), color="tab:orange", ls="--", lw=1)
        _vline(ax, row.get("peak_step"), color="tab:red", ls="--", lw=1)
        flag = " GROKFAST" if row.get("grokfast") else ""
        ax.set_title(f"p={row['p']} seed={row['seed']} frac={row['train_fraction']:g}{flag}", fontsize=9)
        ax.tick_params(labelsize=7)
        twin.tick_params(labelsize=7)
    for ax in list(grid.flat)[n:]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def plot_lead_vs_p(runs, *, ax=None):
    """Lead (onset − peak, steps) of every run against p, with the median per p; Returns the Axes."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    rng = np.random.default_rng(0)  # horizontal jitter only, so overlapping seeds stay visible
    for col, label, color in (("lead_steps", "C", "tab:red"), ("lead_corr_steps", "C − null", "tab:purple")):
        data = runs[["p", col]].dropna()
        offset = 0.0 if col == "lead_steps" else 0.15
        x = np.log(data["p"].to_numpy(float)) + offset + rng.uniform(-0.05, 0.05, len(data))
        ax.scatter(np.exp(x), data[col], color=color, s=18, alpha=0.8, label=label)
        med = data.groupby("p")[col].median()
        ax.plot(med.index * math.exp(offset), med.to_numpy(), color=color, marker="_", ms=16, ls="none")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("modulus p")
    ax.set_ylabel("lead = onset − peak (steps)")
    ax.legend(fontsize=8)
    if bool(runs["grokfast"].any()):
        ax.set_title("GROKFAST: modified dynamics", fontsize=9)
    return ax


def plot_sweep(sweep, *, ax=None):
    """``C(T)`` of the ``=`` rows (mean over heads) at each sweep checkpoint, colored by step."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    mean = sweep.groupby(["step", "T"], as_index=False)["C"].mean()
    steps = sorted(mean["step"].unique())
    cmap = plt.get_cmap("viridis")
    for i, step in enumerate(steps):
        part = mean[mean["step"] == step]
        ax.plot(part["T"], part["C"], color=cmap(i / max(len(steps) - 1, 1)), lw=1)
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(min(steps), max(steps)))
    ax.figure.colorbar(sm, ax=ax, label="training step")
    ax.set_xscale("log")
    ax.set_xlabel("T (our units; Kim's T_K = sqrt(d_head) T)")
    ax.set_ylabel("C(T), = row, mean over heads")
    return ax


def plot_tstar(tstar, *, ax=None):
    """``T*`` (peak of C(T)) of each head against the training step; hollow markers where the peak
    sits at an end of the temperature grid (not bracketed). Returns the Axes."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    for (layer, head), part in tstar.groupby(["layer", "head"]):
        line, = ax.plot(part["step"], part["T_star"], marker="o", ms=3, lw=1, label=f"L{layer}H{head}")
        edge = part[part["at_edge"].astype(bool)]
        ax.scatter(edge["step"], edge["T_star"], s=30, facecolors="none", edgecolors=line.get_color())
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("T* (ours; Kim's T*_K = sqrt(d_head) T*)")
    ax.legend(fontsize=7, ncol=2)
    return ax
