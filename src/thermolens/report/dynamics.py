"""Figures for ``thermolens dynamics``: depth curves, cosine distributions, the temperature sweep, the model
on the mean-field (beta, K/K_#) diagram, training trajectories and the particle model's hysteresis."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from thermolens import io  # noqa: E402
from thermolens.report import html_table  # noqa: E402

CIRCLE_BETA_STAR = 2.4469183112890494  # thermolens.meanfield.sphere_threshold(2)

_COMPONENT_STYLE = {
    "tokens": ("black", "-", "token states"),
    "null": ("gray", ":", "null (same norms, random directions)"),
    "no_special": ("tab:blue", "--", "without special tokens"),
    "minus_position": ("tab:orange", "--", "minus the per-position mean"),
    "minus_mean": ("tab:green", "--", "minus the corpus mean state"),
}


def _band(ax, x, rows, color, ls, label):
    ax.plot(x, rows["value"], color=color, ls=ls, marker="o", ms=3, label=label)
    ax.fill_between(x, rows["lo"], rows["hi"], color=color, alpha=0.15, lw=0)


def plot_depth(depth, quantity: str = "mean_cosine", ax=None, components=tuple(_COMPONENT_STYLE)):
    """One order parameter against depth (0 = embeddings) for each component, bootstrap bands."""
    ax = ax or plt.subplots(figsize=(5, 3.4))[1]
    for component in components:
        rows = depth[(depth["quantity"] == quantity) & (depth["component"] == component)].sort_values("layer")
        if len(rows):
            color, ls, label = _COMPONENT_STYLE[component]
            _band(ax, rows["layer"], rows, color, ls, label)
    ax.set_xlabel("layer (0 = embeddings)")
    ax.set_ylabel(quantity.replace("_", " "))
    return ax


def plot_head_heatmap(heads, ax=None):
    """Mean pairwise cosine of every head's output, minus its null."""
    ax = ax or plt.subplots(figsize=(6, 3))[1]
    rows = heads[heads["quantity"] == "mean_cosine"]
    table = rows.assign(excess=rows["value"] - rows["null"]).pivot(index="layer", columns="head", values="excess")
    image = ax.imshow(table.to_numpy(), aspect="auto", cmap="viridis",
                      extent=(-0.5, table.shape[1] - 0.5, table.index.max() + 0.5, table.index.min() - 0.5))
    plt.colorbar(image, ax=ax, label="mean cosine - null")
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_title("clustering of each head's output", fontsize=9)
    return ax


def plot_histogram(histogram, ax=None):
    """Pairwise-cosine densities per layer (colour = depth), the null dashed."""
    ax = ax or plt.subplots(figsize=(5, 3.4))[1]
    layers = sorted(histogram["layer"].unique())
    colors = plt.cm.viridis(np.linspace(0, 1, len(layers)))
    for layer, color in zip(layers, colors):
        for component, ls in (("tokens", "-"), ("null", ":")):
            rows = histogram[(histogram["layer"] == layer) & (histogram["component"] == component)]
            if component == "null" and layer != layers[-1]:
                continue
            ax.plot((rows["lo"] + rows["hi"]) / 2, rows["density"], color="gray" if component == "null" else color,
                    ls=ls, lw=1.2, label="null" if component == "null" else f"layer {layer}")
    ax.set_xlabel("pairwise cosine within a sequence")
    ax.set_ylabel("density")
    ax.legend(fontsize=7, ncol=2)
    return ax


def plot_sweep(sweep, quantity: str = "r1", ax=None):
    ax = ax or plt.subplots(figsize=(5, 3.4))[1]
    rows = sweep[sweep["quantity"] == quantity].sort_values("beta")
    _band(ax, rows["beta"], rows, "black", "-", f"last layer {quantity}")
    ax.axvline(1.0, color="gray", ls=":", lw=1)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("attention beta = 1/T (1 = the model)")
    ax.set_ylabel(quantity.replace("_", " "))
    return ax


def plot_placement(effective, sweep_effective=None, ax=None):
    """Each layer at (beta_eff, K_eff/K_#) with bootstrap bars; the sweep's path of each layer as T varies.

    K/K_# = 1 is the linear instability of the uniform state; right of beta_*(d) the mean-field transition
    is discontinuous, left of it continuous (Landau, on S^(d-1)).
    """
    ax = ax or plt.subplots(figsize=(5.5, 4))[1]
    d = int(effective["d"].iloc[0])
    beta_star = float(effective["beta_star"].iloc[0])
    ok = effective[np.isfinite(effective["K_ratio"])]
    colors = plt.cm.plasma(np.linspace(0, 0.85, max(len(effective), 1)))
    if sweep_effective is not None and len(sweep_effective):
        for layer, color in zip(effective["layer"], colors):
            path = sweep_effective[(sweep_effective["layer"] == layer) & np.isfinite(sweep_effective["K_ratio"])]
            path = path.sort_values("beta_eff")
            ax.plot(path["beta_eff"], path["K_ratio"], color=color, lw=0.8, alpha=0.6)
    for (_, row), color in zip(effective.iterrows(), colors):
        if not np.isfinite(row["K_ratio"]):
            continue
        ax.errorbar(row["beta_eff"], row["K_ratio"],
                    xerr=[[row["beta_eff"] - row["beta_lo"]], [row["beta_hi"] - row["beta_eff"]]],
                    yerr=[[row["K_ratio"] - row["K_ratio_lo"]], [row["K_ratio_hi"] - row["K_ratio"]]],
                    fmt="o", color=color, ms=5, label=f"layer {int(row['layer'])}")
    ax.axhline(1.0, color="black", lw=1)
    ax.axvline(beta_star, color="tab:red", ls="--", lw=1, label=rf"$\beta_*$(d={d}) = {beta_star:.3f}")
    ax.axvline(CIRCLE_BETA_STAR, color="tab:red", ls=":", lw=1, label=r"$\beta_*$ circle = 2.447")
    xmax = max([3.0] + [float(v) for v in ok["beta_hi"] if np.isfinite(v)])
    if sweep_effective is not None and len(sweep_effective):
        xmax = max(xmax, float(sweep_effective.loc[np.isfinite(sweep_effective["K_ratio"]), "beta_eff"].max()))
    ax.axvspan(0, beta_star, color="tab:blue", alpha=0.08, lw=0)
    ax.axvspan(beta_star, xmax * 1.1, color="tab:red", alpha=0.06, lw=0)
    ax.set_xlim(0, xmax * 1.1)
    ax.set_xlabel(r"$\beta_{eff}$ (logit slope on token cosine)")
    ax.set_ylabel(r"$K_{eff} / K_\#(\beta_{eff}, d)$")
    ax.set_title("the model on the mean-field diagram (above 1: clustered phase)", fontsize=9)
    ax.legend(fontsize=7)
    return ax


def _page(title: str, intro: str, figures: dict[str, Path], tables: str = "") -> str:
    images = "".join(
        f'<figure><img src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}" alt="{name}">'
        f"<figcaption>{html.escape(name)}</figcaption></figure>"
        for name, path in figures.items()
    )
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}}img{{max-width:100%}}
table.t{{border-collapse:collapse;font-size:13px}}table.t td,table.t th{{padding:2px 8px;border-bottom:1px solid #ddd}}
figure{{margin:1.5em 0}}figcaption{{color:#666;font-size:12px}}</style></head><body>
<h1>{html.escape(title)}</h1>{intro}{tables}{images}</body></html>"""


def draw_figures(result, run_dir: str | Path) -> dict[str, Path]:
    run_dir = Path(run_dir)
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    plot_depth(result.depth, "mean_cosine", axes[0, 0]).legend(fontsize=7)
    plot_depth(result.depth, "r1", axes[0, 1], components=("tokens", "null"))
    plot_depth(result.depth, "r2", axes[1, 0], components=("tokens", "null"))
    plot_depth(result.depth, "n_clusters", axes[1, 1], components=("tokens", "null"))
    fig.suptitle(f"{result.name}: token clustering through depth ({result.n_sequences} x {result.n_tokens} tokens)")
    fig.tight_layout()
    paths = {"order parameters through depth": io.save_figure(fig, run_dir / "depth.png")}
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    plot_histogram(result.histogram, axes[0])
    plot_head_heatmap(result.heads, axes[1])
    fig.tight_layout()
    paths["pairwise cosines and heads"] = io.save_figure(fig, run_dir / "cosines_heads.png")
    fig, ax = plt.subplots(figsize=(6, 4.4))
    plot_placement(result.effective, result.sweep_effective, ax)
    fig.tight_layout()
    paths["mean-field placement"] = io.save_figure(fig, run_dir / "placement.png")
    if result.sweep is not None:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
        plot_sweep(result.sweep, "r1", axes[0])
        plot_sweep(result.sweep, "mean_cosine", axes[1])
        fig.suptitle(f"last layer against attention temperature: {result.shape['shape']}")
        fig.tight_layout()
        paths["temperature sweep"] = io.save_figure(fig, run_dir / "sweep.png")
    return paths


def write_report(result, run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    figures = draw_figures(result, run_dir)
    summary = result.summary()
    intro = f"""<p>{result.n_sequences} sequences of {result.n_tokens} tokens, d = {result.d}. Tokens are read as particles on
the sphere (one sequence = one system, one layer = one time step; Geshkovski et al., arXiv:2312.10794). The null keeps every
state's norm and draws its direction at random: it gives r_1 ~ n^(-1/2) and mean cosine 0. A direction shared by all tokens
(the corpus mean state), a position-dependent offset or special tokens (positions {list(result.special_positions)}) can fake
clustering; the dashed curves remove them.</p>
<p>beta_eff: the slope of each head's row-centred logits on the token cosines (mean over heads); K_eff: the drift of the
tangent updates along the noisy-transformer field over their residual noise (docs/dynamics.md). Mean-field theory on
S^(d-1) puts the transition at K_eff/K_# = 1, continuous for beta_eff below beta_*(d) = {summary['beta_star_d']:.4f} and
discontinuous above it.</p>"""
    cols = ["layer", "beta_eff", "beta_lo", "beta_hi", "logit_r2", "K_eff", "K_lo", "K_hi", "K_ratio", "landau"]
    tables = "<h2>Effective parameters per layer</h2>" + html_table(result.effective[cols])
    return io.write_text(run_dir / "report.html", _page(f"thermolens dynamics: {result.name}", intro, figures, tables))


# --------------------------------------------------------------------------------------------------
# particles


def plot_anneal(anneal, beta: float, theory=None, ax=None):
    """Heating and cooling branches of r_1 against K/K_#; K_c marked where it differs from K_#."""
    ax = ax or plt.subplots(figsize=(5, 3.4))[1]
    rows = anneal[anneal["beta"] == beta]
    for direction, color, marker in (("heating", "tab:red", "^"), ("cooling", "tab:blue", "v")):
        part = rows[rows["direction"] == direction].sort_values("K_ratio")
        ax.errorbar(part["K_ratio"], part["r1"], yerr=part["sd"], color=color, marker=marker, ms=4, lw=1,
                    label=direction)
    ax.axvline(1.0, color="black", lw=1, ls=":")
    if theory is not None:
        row = theory[theory["beta"] == beta].iloc[0]
        if row["K_c"] < row["K_sharp"]:
            ax.axvline(row["K_c"] / row["K_sharp"], color="gray", lw=1, ls="--", label=r"$K_c$")
        ax.set_title(f"beta = {beta:g}: {row['transition']}", fontsize=9)
    ax.set_xlabel(r"$K / K_\#$")
    ax.set_ylabel(r"$r_1$")
    ax.legend(fontsize=7)
    return ax


def write_simulation_report(result, run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    betas = result.config.betas
    figures = {}
    fig, axes = plt.subplots(2, len(betas), figsize=(5 * len(betas), 7), squeeze=False)
    for i, beta in enumerate(betas):
        depth = result.depth[result.depth["beta"] == beta]
        plot_depth(depth, "r1", axes[0, i], components=("tokens", "null", "minus_mean")).legend(fontsize=7)
        axes[0, i].set_xlabel(f"recorded step (tau = {result.config.tau_layer:g} each)")
        axes[0, i].set_title(f"beta = {beta:g}, K = {result.config.K_ratio:g} K_#", fontsize=9)
        if len(result.anneal):
            plot_anneal(result.anneal, beta, result.theory, axes[1, i])
        else:
            axes[1, i].axis("off")
    fig.tight_layout()
    figures["particles: depth and hysteresis"] = io.save_figure(fig, run_dir / "particles.png")
    cols = ["beta", "layer", "beta_eff", "K_true", "K_eff", "K_lo", "K_hi", "dtau"]
    tables = ("<h2>Mean-field theory</h2>" + html_table(result.theory)
              + "<h2>K recovered from the recorded steps</h2>" + html_table(result.effective[cols]))
    c = result.config
    intro = (f"<p>{c.n_sequences} systems of {c.n_particles} particles on S^{c.d - 1} (noisy transformer), measured "
             "by the same code as a model's tokens.</p>")
    return io.write_text(run_dir / "report.html", _page("thermolens dynamics: particles", intro, figures, tables))


# --------------------------------------------------------------------------------------------------
# training


def plot_training(result, axes=None):
    """Last-layer r_1 (and null) against step; beta_eff and K/K_# per layer; the run's accuracy if known."""
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    ax = axes[0]
    for component, color, ls in (("tokens", "black", "-"), ("minus_mean", "tab:green", "--"), ("null", "gray", ":")):
        rows = result.last_layer("r1", component)
        _band(ax, rows["step"], rows, color, ls, f"last-layer r1 ({component})")
    history = result.history
    if history is not None and "test_acc" in history:
        twin = ax.twinx()
        twin.plot(history["step"], history["test_acc"], color="tab:green", lw=1, label="test accuracy")
        twin.set_ylabel("test accuracy", color="tab:green")
    ax.set_xlabel("training step")
    ax.set_ylabel(r"$r_1$")
    ax.set_title(f"{result.label}: {result.shape['shape']}", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    ax = axes[1]
    for layer, rows in result.effective.groupby("layer"):
        rows = rows.sort_values("step")
        ax.plot(rows["step"], rows["beta_eff"], marker="o", ms=2, label=rf"layer {layer} $\beta_{{eff}}$")
        ax.plot(rows["step"], rows["K_ratio"], ls="--", label=rf"layer {layer} $K/K_\#$")
    ax.axhline(float(result.effective["beta_star"].iloc[0]), color="tab:red", ls=":", lw=1, label=r"$\beta_*(d)$")
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_xlabel("training step")
    ax.legend(fontsize=7)
    return axes


def write_training_report(results, run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    figures = {}
    for i, result in enumerate(results):
        fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
        plot_training(result, axes)
        fig.tight_layout()
        figures[f"{result.label}: order parameter and effective parameters against training step"] = io.save_figure(
            fig, run_dir / f"training_run{i}.png")
    intro = "<p>Token clustering at every weight snapshot of the runs, measured as for any model.</p>"
    return io.write_text(run_dir / "report.html", _page("thermolens dynamics: through training", intro, figures))
