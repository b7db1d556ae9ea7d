"""Figures of an optimizer comparison: learning curves with seed spread, sharpness against the
stability thresholds, per-head temperature against T*, K-FAC factor spectra. Functions draw
results; they compute no physics."""

from __future__ import annotations

import math
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _colors(names) -> dict[str, Any]:
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return {name: cycle[i % len(cycle)] for i, name in enumerate(dict.fromkeys(names))}


def _label(row) -> str:
    return f"{row['optimizer']}" + ("" if row["init"] == "default" else f" ({row['init']} init)")


def plot_curves(task: str, runs, histories: dict[str, Any]):
    """Learning curves, one line per run, one colour per optimizer x init.

    grokking: test accuracy against step; lm: validation loss against step and against wall time.
    ``runs``: the comparison's run table; ``histories``: run name -> history frame. Returns the Figure.
    """
    rows = runs.to_dict(orient="records")
    colors = _colors(_label(r) for r in rows)
    panels = 1 if task == "grokking" else 2
    fig, axes = plt.subplots(1, panels, figsize=(6.5 * panels, 4.2), squeeze=False)
    seen: set[str] = set()
    for row in rows:
        h = histories[row["run"]]
        label = _label(row)
        kwargs = dict(color=colors[label], alpha=0.8, lw=1.2, label=None if label in seen else label)
        seen.add(label)
        if task == "grokking":
            axes[0, 0].plot(h["step"], h["test_acc"], **kwargs)
            onset = row.get("onset_step")
            if onset is not None and math.isfinite(onset):
                axes[0, 0].axvline(onset, color=colors[label], ls=":", lw=0.8)
        else:
            axes[0, 0].plot(h["step"], h["val_loss"], **kwargs)
            axes[0, 1].plot(h["wall_s"], h["val_loss"], **{**kwargs, "label": None})
    if task == "grokking":
        axes[0, 0].set_ylabel("test accuracy")
        axes[0, 0].set_xlabel("training step (dotted: onset of generalization)")
    else:
        axes[0, 0].set_ylabel("validation loss (nats/token)")
        axes[0, 0].set_xlabel("training step")
        axes[0, 1].set_xlabel("wall time (s, this machine)")
        axes[0, 1].set_ylabel("validation loss (nats/token)")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_sharpness(sharpness):
    """Sharpness against 2/lr (left) and preconditioned sharpness against Adam's threshold (right),
    log scale, one line per run. Returns the Figure."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    colors = _colors(_label(r) for r in sharpness.to_dict(orient="records"))
    seen: set[str] = set()
    for run, group in sharpness.groupby("run", sort=False):
        row = group.iloc[0]
        label = _label(row)
        kwargs = dict(color=colors[label], marker="o", ms=3, label=None if label in seen else label)
        seen.add(label)
        axes[0].plot(group["step"], group["sharpness"], **kwargs)
        ok = group["sharpness_precond"].notna()
        if ok.any():
            axes[1].plot(group.loc[ok, "step"], group.loc[ok, "sharpness_precond"], **kwargs)
    if len(sharpness):
        axes[0].axhline(float(sharpness["gd_threshold"].iloc[0]), color="k", ls="--", lw=1, label="2 / lr")
        axes[1].axhline(float(sharpness["adam_threshold"].iloc[0]), color="k", ls="--", lw=1,
                        label="(2 + 2 beta1) / ((1 - beta1) lr)")
    axes[0].set_ylabel("top Hessian eigenvalue")
    axes[1].set_ylabel("top eigenvalue of P^-1 H")
    for ax in axes:
        ax.set_yscale("log")
        ax.set_xlabel("training step")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_temperature(temperature):
    """Per-head operating temperature T (solid, controlled runs) and measured T* (dots) against
    step; one panel per optimizer x init. Returns the Figure."""
    groups = list(temperature.groupby(["optimizer", "init"], sort=False))
    n = max(len(groups), 1)
    fig, axes = plt.subplots(1, n, figsize=(5.5 * n, 4.2), squeeze=False)
    for ax, ((optimizer, init), group) in zip(axes[0], groups):
        heads = sorted({(int(r["layer"]), int(r["head"])) for r in group.to_dict(orient="records")})
        colors = _colors(heads)  # one colour per head, the same in every run (seed)
        for (_, layer, head), sel in group.groupby(["run", "layer", "head"], sort=False):
            color = colors[(int(layer), int(head))]
            ctl = sel[sel["source"] == "controller"]
            sweep = sel[sel["source"] == "sweep"]
            if len(ctl):
                ax.plot(ctl["step"], ctl["T"], color=color, lw=1.0)
                ax.plot(ctl["step"], ctl["T_star"], color=color, ls="none", marker=".", ms=2)
            if len(sweep):
                ax.plot(sweep["step"], sweep["T_star"], color=color, ls=":", marker="x", ms=3)
        ax.set_yscale("log")
        ax.set_title(f"{optimizer} ({init} init): T (line), T* (dots: optimizer, x: sweep)", fontsize=9)
        ax.set_xlabel("training step")
        ax.set_ylabel("temperature")
    fig.tight_layout()
    return fig


def plot_spectra(spectra, *, max_blocks: int = 6):
    """Eigenvalues of the K-FAC factors of the final models (rank on x, log y), one panel per
    block (the first ``max_blocks``), one colour per optimizer x init. Returns the Figure."""
    blocks = list(dict.fromkeys(spectra["block"]))[:max_blocks]
    n = max(len(blocks), 1)
    cols = min(3, n)
    fig, axes = plt.subplots(math.ceil(n / cols), cols, figsize=(4.5 * cols, 3.4 * math.ceil(n / cols)), squeeze=False)
    colors = _colors(_label(r) for r in spectra.drop_duplicates("run").to_dict(orient="records"))
    for ax, block in zip(axes.flat, blocks):
        seen: set[str] = set()
        for run, group in spectra[spectra["block"] == block].groupby("run", sort=False):
            label = _label(group.iloc[0])
            values = np.clip(group["eigenvalue"].to_numpy(float), 1e-12, None)
            ax.plot(group["rank"], values, color=colors[label], alpha=0.7, label=None if label in seen else label)
            seen.add(label)
        ax.set_yscale("log")
        ax.set_title(block, fontsize=9)
        ax.set_xlabel("rank")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(blocks):]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig
