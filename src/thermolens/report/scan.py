"""Figures and the HTML report of a scan. Draws results; computes no physics."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from thermolens import io  # noqa: E402
from thermolens.report import html_table  # noqa: E402

def _log_x(ax) -> None:
    """Log-scaled temperature axis; minor ticks unlabelled (on a short range their labels collide)."""
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())


NULL_STYLE = {"gauss": dict(color="0.35", ls="--", lw=1.4), "shuffled": dict(color="0.35", ls=":", lw=1.4)}


def _layer_grid(n_layers: int, *, panel: float = 3.2):
    n_cols = min(n_layers, 4)
    n_rows = int(np.ceil(n_layers / n_cols))
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(panel * n_cols, 2.6 * n_rows), sharex=True, squeeze=False)
    for ax in axes.flat[n_layers:]:
        ax.set_visible(False)
    return fig, axes.flat


def plot_heat_capacity(result, layer: int, ax=None):
    """C(T) of every head of ``layer`` (coloured), T* marked, the two null ensembles (grey, head-averaged)."""
    ax = ax or plt.gca()
    curves = result.curves[result.curves["layer"] == layer]
    heads = result.heads[result.heads["layer"] == layer]
    cmap = plt.get_cmap("viridis")
    n_heads = max(int(heads["head"].max()) + 1, 1) if len(heads) else 1
    for head, part in curves.groupby("head"):
        ax.plot(part["T"], part["C"], color=cmap(head / max(n_heads - 1, 1)), lw=1.0, alpha=0.9)
    for _, row in heads.iterrows():
        if np.isfinite(row["T_star"]):
            ax.plot(row["T_star"], row["C_max"], "o", ms=3.5, color=cmap(row["head"] / max(n_heads - 1, 1)),
                    mec="k", mew=0.4)
    mean = curves.groupby("T")[["C_null_gauss", "C_null_shuffled"]].mean()
    ax.plot(mean.index, mean["C_null_gauss"], **NULL_STYLE["gauss"], label="Gaussian null")
    ax.plot(mean.index, mean["C_null_shuffled"], **NULL_STYLE["shuffled"], label="shuffled null")
    ax.axvline(1.0, color="tab:red", lw=0.8, alpha=0.6)
    _log_x(ax)
    ax.set_title(f"layer {layer}", fontsize=9)
    ax.set_xlabel("T")
    ax.set_ylabel("C per row")
    return ax


def heat_capacity_figure(result):
    layers = sorted(result.heads["layer"].unique())
    fig, axes = _layer_grid(len(layers))
    for ax, layer in zip(axes, layers):
        plot_heat_capacity(result, layer, ax)
    axes[0].legend(fontsize=7, frameon=False)
    fig.suptitle(f"Specific heat of attention vs temperature ({result.model_name}); dots: T* per head; red: T = 1",
                 fontsize=10)
    fig.tight_layout()
    return fig


def plot_tstar_heatmap(result, ax=None):
    """Layer x head map of T*; heads whose peak sits on the grid edge are hatched, CI-vs-null outcome starred."""
    ax = ax or plt.gca()
    heads = result.heads
    grid = heads.pivot(index="layer", columns="head", values="T_star")
    image = ax.imshow(np.log10(grid.to_numpy(dtype=float)), cmap="coolwarm", aspect="auto")
    cbar = ax.figure.colorbar(image, ax=ax, fraction=0.046)
    cbar.set_label("log10 T*")
    for _, row in heads.iterrows():
        i = list(grid.index).index(row["layer"])
        j = list(grid.columns).index(row["head"])
        label = f"{row['T_star']:.2g}" + ("*" if row["differs_from_null"] else "")
        ax.text(j, i, label, ha="center", va="center", fontsize=6)
        if row["at_edge"]:
            ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", lw=0))
    ax.set_xticks(range(len(grid.columns)), grid.columns)
    ax.set_yticks(range(len(grid.index)), grid.index)
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_title("critical temperature T* (* CI excludes both nulls; hatched: peak at grid edge)", fontsize=9)
    return ax


def plot_entropy(result, ax=None):
    """S(T) / ln n per head, coloured by layer: 1 is uniform attention, 0 a single key."""
    ax = ax or plt.gca()
    curves = result.curves
    layers = sorted(curves["layer"].unique())
    cmap = plt.get_cmap("plasma")
    for (layer, _), part in curves.groupby(["layer", "head"]):
        ax.plot(part["T"], part["S"] / np.log(part["n_keys"]), color=cmap(layers.index(layer) / max(len(layers), 1)),
                lw=0.7, alpha=0.7)
    for k, layer in enumerate(layers):
        ax.plot([], [], color=cmap(k / max(len(layers), 1)), label=f"layer {layer}")
    ax.axvline(1.0, color="tab:red", lw=0.8, alpha=0.6)
    _log_x(ax)
    ax.set_xlabel("T")
    ax.set_ylabel("S / ln n")
    ax.set_title("attention entropy per head", fontsize=9)
    ax.legend(fontsize=6, frameon=False, ncol=2)
    return ax


def plot_order_parameters(result, axes=None):
    """Correlation length and susceptibility vs T, averaged over the heads of each layer."""
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    mean = result.curves.groupby(["layer", "T"])[["xi", "chi"]].mean().reset_index()
    cmap = plt.get_cmap("plasma")
    layers = sorted(mean["layer"].unique())
    for k, layer in enumerate(layers):
        part = mean[mean["layer"] == layer]
        colour = cmap(k / max(len(layers), 1))
        axes[0].plot(part["T"], part["xi"], color=colour, label=f"layer {layer}")
        axes[1].plot(part["T"], part["chi"], color=colour)
    for ax, name in zip(axes, ("correlation length xi (tokens)", "susceptibility chi")):
        _log_x(ax)
        ax.set_xlabel("T")
        ax.set_title(name, fontsize=9)
        ax.axvline(1.0, color="tab:red", lw=0.8, alpha=0.6)
    axes[0].legend(fontsize=6, frameon=False, ncol=2)
    return axes


def plot_loss(result, ax=None):
    """Model loss against the temperature applied inside the forward pass, with the median T*."""
    ax = ax or plt.gca()
    losses = result.losses
    ax.plot(losses["T"], losses["loss"], "o-", ms=3)
    ax.axvline(result.heads["T_star"].median(), color="tab:purple", ls="--", label="median T* of heated heads")
    ax.axvline(1.0, color="tab:red", lw=0.8, alpha=0.6, label="T = 1")
    _log_x(ax)
    ax.set_xlabel("T (propagated)")
    ax.set_ylabel("loss")
    ax.legend(fontsize=7, frameon=False)
    return ax


def draw_figures(result, run_dir: str | Path) -> dict[str, Path]:
    """Draw every figure of a scan into ``run_dir``; return {name: path}."""
    run_dir = Path(run_dir)
    paths = {"heat_capacity": io.save_figure(heat_capacity_figure(result), run_dir / "heat_capacity.png")}
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * result.heads["head"].nunique(), 0.9 + 0.45 * result.heads["layer"].nunique()))
    plot_tstar_heatmap(result, ax)
    paths["T_star"] = io.save_figure(fig, run_dir / "T_star_heatmap.png")
    fig, ax = plt.subplots(figsize=(6, 3.6))
    plot_entropy(result, ax)
    paths["entropy"] = io.save_figure(fig, run_dir / "entropy.png")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    plot_order_parameters(result, axes)
    paths["order_parameters"] = io.save_figure(fig, run_dir / "xi_chi.png")
    if result.losses is not None:
        fig, ax = plt.subplots(figsize=(5, 3.2))
        plot_loss(result, ax)
        paths["loss"] = io.save_figure(fig, run_dir / "loss.png")
    return paths


def write_report(result, run_dir: str | Path) -> Path:
    """Figures plus a self-contained ``report.html`` (images embedded) with the most and least critical-like heads."""
    run_dir = Path(run_dir)
    figures = draw_figures(result, run_dir)
    cols = ["layer", "head", "T_star", "T_star_lo", "T_star_hi", "C_max", "T_star_null_gauss", "T_star_null_shuffled",
            "null_separation", "differs_from_null"]
    ranked = result.heads.sort_values("null_separation", ascending=False)
    images = "".join(
        f'<figure><img src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}" alt="{name}">'
        f"<figcaption>{html.escape(name)}</figcaption></figure>"
        for name, path in figures.items()
    )
    summary = result.summary()
    text = f"""<!doctype html><html><head><meta charset="utf-8"><title>thermolens scan — {html.escape(result.model_name)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}}img{{max-width:100%}}
table.t{{border-collapse:collapse;font-size:13px}}table.t td,table.t th{{padding:2px 8px;border-bottom:1px solid #ddd}}
figure{{margin:1.5em 0}}figcaption{{color:#666;font-size:12px}}</style></head><body>
<h1>Attention thermodynamics: {html.escape(result.model_name)}</h1>
<p>{result.n_tokens} tokens in {result.n_sequences} sequences of {result.config.seq_len}; mode <b>{result.config.mode}</b>;
{len(result.config.temperatures)} temperatures from {min(result.config.temperatures):.3g} to {max(result.config.temperatures):.3g};
{summary['n_heads']} heads. Median T* = {summary['T_star_median'] if summary['T_star_median'] is not None else float('nan'):.3g}
(Gaussian null: {summary['T_star_null_gauss_median']:.3g}). {summary['n_differs_from_null']} heads have a T* whose
{int(round(100 * result.config.ci))}% bootstrap CI excludes both null ensembles; {summary['n_at_edge']} peak at the edge of the grid.</p>
<p>Conventions: logits are what the model feeds its softmax; at temperature T the pattern is softmax(l/T); C = beta^2 Var(E), per
query row, averaged over rows. A specific-heat peak alone is not a phase transition: a softmax over n random logits peaks too
(random-energy-model freezing, beta*sigma ~ sqrt(2 ln n)); the nulls are drawn per head with the same key structure and logit spread.
<code>null_separation</code> = |ln T* - ln T*_null| for the nearer of the two nulls, in units of the bootstrap standard error.</p>
<h2>Most critical-like heads (largest separation from the nearer null)</h2>{html_table(ranked[cols].head(8))}
<h2>Least critical-like heads</h2>{html_table(ranked[cols].tail(8).iloc[::-1])}
{images}
</body></html>"""
    return io.write_text(run_dir / "report.html", text)
