"""Figures and the HTML report of an avalanche analysis. Draws results; computes no physics
(the fitted curves are ``thermolens.stats.alternatives.survival`` of the stored fits)."""

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
from thermolens.stats.alternatives import survival  # noqa: E402

SOURCE_STYLE = {
    "model": dict(color="C0", marker=".", ms=3.5, ls="none", label="model"),
    "shuffled_layers": dict(color="0.45", marker="x", ms=2.5, ls="none", label="null: layers shuffled"),
    "rate_matched": dict(color="C1", marker="+", ms=3, ls="none", label="null: rate-matched"),
}


def _ccdf(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values and the empirical P(X >= x)."""
    v, counts = np.unique(values, return_counts=True)
    return v, 1.0 - np.r_[0, np.cumsum(counts)[:-1]] / values.size


def plot_size_ccdf(result, ax=None, *, what: str = "size"):
    """CCDF of cascade sizes (or durations) of the model and both nulls, with the model's power-law and
    truncated-power-law fits drawn from their xmin (scaled by the tail fraction)."""
    ax = ax or plt.gca()
    for source, part in result.cascades.groupby("source"):
        values = part[what].to_numpy(dtype=float)
        if values.size:
            x, p = _ccdf(values)
            ax.loglog(x, p, **SOURCE_STYLE.get(source, dict(ls="-", label=source)))
    m = result.model
    model_values = result.cascades.loc[result.cascades["source"] == "model", what].to_numpy(dtype=float)
    if what == "size":
        xmin, alpha = m.xmin, m.tau
    else:
        xmin, alpha = m.duration_xmin, m.tau_duration
    if np.isfinite(alpha) and np.isfinite(xmin) and model_values.size:
        frac = float(np.mean(model_values >= xmin))
        grid = np.unique(np.round(np.geomspace(xmin, model_values.max(), 40)))
        ax.loglog(grid, frac * survival("power_law", {"alpha": alpha}, grid, xmin, discrete=True), "-", color="C3",
                  lw=1.2, label=f"power law {'tau' if what == 'size' else 'tau_t'} = {alpha:.2f}")
        if what == "size" and np.isfinite(m.tpl_alpha) and np.isfinite(m.s_c) and m.s_c > 0:
            lo = m.tpl_xmin
            full = np.unique(np.round(np.geomspace(lo, model_values.max(), 40)))
            tpl = survival("truncated_power_law", {"alpha": m.tpl_alpha, "lam": 1.0 / m.s_c}, full, lo, discrete=True)
            ax.loglog(full, float(np.mean(model_values >= lo)) * tpl, "--", color="C2", lw=1.2,
                      label=f"s^-a exp(-s/s_c), all sizes: a = {m.tpl_alpha:.2f}, s_c = {m.s_c:.3g}")
    ax.set_xlabel("size (unit events)" if what == "size" else
                  ("duration (layers)" if result.config.lattice == "layer-time" else "duration (tokens)"))
    ax.set_ylabel("P(X >= x)")
    ax.legend(fontsize=7, frameon=False)
    return ax


def plot_branching(result, ax=None):
    """Descendants per ancestor from layer l to l+1 (model, shuffled null) and the MR estimate of m along tokens."""
    ax = ax or plt.gca()
    layers = result.layers
    pairs = layers.dropna(subset=["sigma"])
    ax.errorbar(pairs["layer"] + 0.5, pairs["sigma"], yerr=pairs["sigma_stderr"], fmt="o-", color="C0", ms=4,
                label="descendants per ancestor, l -> l+1")
    ax.plot(pairs["layer"] + 0.5, pairs["sigma_shuffled"], "x--", color="0.45", label="same, layers shuffled")
    mr = layers.dropna(subset=["m_mr"])
    if len(mr):
        err = np.vstack([mr["m_mr"] - mr["m_mr_lo"], mr["m_mr_hi"] - mr["m_mr"]])
        ax.errorbar(mr["layer"], mr["m_mr"], yerr=np.where(np.isfinite(err), np.abs(err), 0), fmt="s", color="C2",
                    ms=4, label="MR estimate of m along tokens")
    ax.axhline(1.0, color="tab:red", lw=0.8, alpha=0.7)
    ax.set_xlabel("layer")
    ax.set_ylabel("branching ratio")
    ax.set_title("branching ratio per layer (red: critical m = 1)", fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    return ax


def plot_thresholds(result, ax=None):
    """tau (and tau of durations) against the event threshold: the robustness check."""
    ax = ax or plt.gca()
    t = result.thresholds.sort_values("threshold")
    ax.errorbar(t["threshold"], t["tau"], yerr=t["tau_stderr"], fmt="o-", color="C0", ms=4, label="tau (sizes)")
    if t["tau_duration"].notna().any():
        ax.errorbar(t["threshold"], t["tau_duration"], yerr=t["tau_duration_stderr"], fmt="s--", color="C1", ms=4,
                    label="tau_t (durations)")
    ax.axhline(1.5, color="tab:red", lw=0.8, alpha=0.7)
    ax.axhline(2.0, color="tab:orange", lw=0.8, alpha=0.5)
    ax.axvline(result.config.threshold, color="0.5", lw=0.8, ls=":")
    ax.set_xlabel(f"threshold ({result.config.baseline})")
    ax.set_ylabel("exponent")
    ax.set_title("threshold robustness (red 3/2, orange 2: mean-field branching)", fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    return ax


def plot_temperature(result, axes=None):
    """tau, branching ratio, susceptibility and (when the model has an LM head) the loss against T."""
    temps = result.temperatures
    has_loss = temps["loss"].notna().any()
    n = 4 if has_loss else 3
    if axes is None:
        _, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.0))
    panels = [("tau", "tau (sizes)"), ("branching_ratio", "branching ratio"), ("susceptibility", "susceptibility chi")]
    if has_loss:
        panels.append(("loss", "model loss"))
    for ax, (key, label) in zip(axes, panels):
        yerr = temps.get(f"{key}_stderr")
        ax.errorbar(temps["T"], temps[key], yerr=yerr, fmt="o-", ms=3)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.axvline(1.0, color="tab:red", lw=0.8, alpha=0.6)
        ax.set_xlabel("T (propagated)")
        ax.set_title(label, fontsize=9)
    return axes


def plot_definitions(counts: np.ndarray, labels: np.ndarray, axes=None, *, title: str = ""):
    """The two cascade definitions on one sequence: ``counts`` ``(n_pos, n_layers)`` active units per site and
    ``labels`` ``(n_pos, n_layers)`` its token-layer clusters (0 = quiet). Left: layer-time runs per token
    (boxes around each maximal run of active layers, hatched when censored at the last layer); right:
    token-layer clusters, one colour each."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Rectangle

    if axes is None:
        _, axes = plt.subplots(2, 1, figsize=(10, 4.6), sharex=True)
    n_pos, n_layers = counts.shape
    shown = np.ma.masked_equal(counts.T.astype(float), 0)
    axes[0].imshow(shown, aspect="auto", origin="lower", cmap="Blues", interpolation="nearest",
                   extent=(-0.5, n_pos - 0.5, -0.5, n_layers - 0.5))
    for t in range(n_pos):
        active = np.r_[0, counts[t] > 0, 0].astype(int)
        edges = np.flatnonzero(np.diff(active))
        for lo, hi in zip(edges[::2], edges[1::2]):
            censored = hi == n_layers
            axes[0].add_patch(Rectangle((t - 0.45, lo - 0.5), 0.9, hi - lo, fill=False, lw=0.8,
                                        ec="tab:red" if censored else "k", hatch="//" if censored else None))
    axes[0].set_title("layer-time: runs of active layers per token (red hatched: reach the last layer, censored)",
                      fontsize=9)
    n_labels = int(labels.max())
    rng = np.random.default_rng(0)
    palette = ListedColormap(np.vstack([[1, 1, 1, 1], plt.get_cmap("tab20")(rng.permutation(max(n_labels, 1)) % 20)]))
    axes[1].imshow(labels.T, aspect="auto", origin="lower", cmap=palette, interpolation="nearest",
                   vmin=0, vmax=max(n_labels, 1), extent=(-0.5, n_pos - 0.5, -0.5, n_layers - 0.5))
    axes[1].set_title("token-layer: connected clusters of active sites (4-neighbours), one colour each", fontsize=9)
    for ax in axes:
        ax.set_ylabel("layer")
        ax.set_yticks(range(n_layers))
    axes[1].set_xlabel("token")
    if title:
        axes[0].figure.suptitle(title, fontsize=10)
    return axes


def draw_figures(result, run_dir: str | Path) -> dict[str, Path]:
    """Every figure of an avalanche analysis into ``run_dir``; returns {name: path}."""
    run_dir = Path(run_dir)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    plot_size_ccdf(result, axes[0], what="size")
    plot_size_ccdf(result, axes[1], what="duration")
    fig.suptitle(f"Cascades of {result.model_name} ({result.config.site}, {result.config.lattice}, "
                 f"threshold {result.config.threshold:g})", fontsize=10)
    fig.tight_layout()
    paths = {"ccdf": io.save_figure(fig, run_dir / "ccdf.png")}
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    plot_branching(result, ax)
    paths["branching"] = io.save_figure(fig, run_dir / "branching.png")
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    plot_thresholds(result, ax)
    paths["thresholds"] = io.save_figure(fig, run_dir / "thresholds.png")
    if result.temperatures is not None:
        axes = plot_temperature(result)
        axes[0].figure.tight_layout()
        paths["temperature"] = io.save_figure(axes[0].figure, run_dir / "temperature.png")
    plt.close("all")
    return paths


def write_report(result, run_dir: str | Path) -> Path:
    """Figures plus a self-contained ``report.html`` (images embedded)."""
    run_dir = Path(run_dir)
    figures = draw_figures(result, run_dir)
    images = "".join(
        f'<figure><img src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}" alt="{name}">'
        f"<figcaption>{html.escape(name)}</figcaption></figure>"
        for name, path in figures.items()
    )
    cols = ["source", "n_avalanches", "n_censored", "tau", "tau_stderr", "xmin", "n_tail", "gof_p", "s_c",
            "p_exponential", "p_truncated", "tpl_alpha", "p_cutoff", "tau_duration", "gamma_fit", "gamma_predicted", "branching_ratio",
            "branching_ratio_mr", "susceptibility", "ks_p_vs_model", "is_power_law"]
    m = result.model
    verdict = ("The size distribution is a power law that beats both null models." if result.power_law_beats_nulls
               else "The size distribution is a power law, but not distinguishable from every null model."
               if m.is_power_law else "The size distribution is not a power law by the criteria below.")
    temps = "" if result.temperatures is None else f"<h2>Attention temperature</h2>{html_table(result.temperatures)}"
    text = f"""<!doctype html><html><head><meta charset="utf-8"><title>thermolens avalanches — {html.escape(result.model_name)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}}img{{max-width:100%}}
table.t{{border-collapse:collapse;font-size:13px}}table.t td,table.t th{{padding:2px 8px;border-bottom:1px solid #ddd}}
figure{{margin:1.5em 0}}figcaption{{color:#666;font-size:12px}}</style></head><body>
<h1>Activation avalanches: {html.escape(result.model_name)}</h1>
<p>{result.n_tokens} tokens in {result.n_sequences} sequences; site <b>{result.config.site}</b> ({result.n_units} units x
{result.n_layers} layers); cascades <b>{result.config.lattice}</b>; a unit is active when it deviates from its baseline
({result.config.baseline}) by more than {result.config.threshold:g}. <b>{html.escape(verdict)}</b></p>
<p>Criteria: power law = beats the exponential in the likelihood-ratio test (p &le; 0.1) and, with the bootstrap, goodness-of-fit
p &gt; 0.1 (Clauset et al. 2009); it beats a null when the null is not a power law (or has a tau more than 2 combined standard errors
away) and a two-sample KS test separates the size distributions (p &lt; 0.01). Mean-field critical branching: tau = 3/2,
tau_t = 2, gamma = 2, branching ratio 1.</p>
<h2>Fits</h2>{html_table(result.to_frame()[cols])}
<h2>Per layer</h2>{html_table(result.layers)}
<h2>Threshold robustness</h2>{html_table(result.thresholds)}
{temps}
{images}
</body></html>"""
    return io.write_text(run_dir / "report.html", text)
