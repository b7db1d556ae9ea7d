"""Figures of the criticality claims (``thermolens.claims.criticality``): Theorem 2 and §3.1's detector.

Each function takes numbers the claim has already computed and returns a matplotlib ``Figure``;
nothing here fits or tests anything (the model curves drawn are ``stats.alternatives.survival`` of
fits made by the claim).
"""

from __future__ import annotations

from typing import Any

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from thermolens.report.avalanches import _ccdf  # noqa: E402
from thermolens.stats.alternatives import survival  # noqa: E402

__all__ = ["theorem2_figure", "detect_figure"]

TAU_PREDICTED = 1.5


def _tau_panel(ax, temps: pd.DataFrame, point: dict[str, Any]) -> None:
    """tau of the sweep against T (filled: a power law, open: not), 3/2, the optimum, the seed's-form exponent."""
    t = temps["T"].to_numpy(dtype=float)
    tau = temps["tau"].to_numpy(dtype=float)
    err = 1.96 * temps["tau_stderr"].to_numpy(dtype=float)
    pl = temps["is_power_law"].to_numpy(dtype=bool)
    ax.errorbar(t, tau, yerr=err, color="C0", ls="-", lw=0.8, marker="none", capsize=2,
                label="tau of the KS tail (Clauset), 95% CI")
    ax.plot(t[pl], tau[pl], "o", color="C0", ms=5, label="power law (beats exponential)")
    ax.plot(t[~pl], tau[~pl], "o", mfc="white", color="C0", ms=5, label="not a power law")
    ax.axhline(TAU_PREDICTED, color="C3", ls="--", lw=1, label="Theorem 2: tau = 3/2")
    if point.get("tolerance"):
        ax.axhspan(TAU_PREDICTED - point["tolerance"], TAU_PREDICTED + point["tolerance"], color="C3", alpha=0.1, lw=0)
    ax.axvline(point["T_opt"], color="0.3", ls=":", lw=1, label=point["T_opt_label"])
    if np.isfinite(point.get("alpha", np.nan)):
        lo, hi = point["alpha_ci"]
        ax.errorbar([point["T_opt"]], [point["alpha"]], yerr=[[point["alpha"] - lo], [hi - point["alpha"]]],
                    fmt="*", color="C2", ms=11, capsize=3, label="s^-a exp(-s/s_c), all sizes: a")
    if np.isfinite(point.get("alpha_null", np.nan)):
        lo, hi = point["alpha_null_ci"]
        ax.errorbar([point["T_opt"] * 1.06], [point["alpha_null"]],
                    yerr=[[point["alpha_null"] - lo], [hi - point["alpha_null"]]], fmt="x", color="0.45", ms=8,
                    capsize=3, label="a of the layer-shuffled null")
    ax.set_xscale("log")
    ax.set_xticks(t, [f"{v:.3g}" for v in t])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("attention temperature T")
    ax.set_ylabel("cascade-size exponent")
    loss = temps["loss"].to_numpy(dtype=float) if "loss" in temps else np.full(t.size, np.nan)
    if np.isfinite(loss).sum() >= 2:
        twin = ax.twinx()
        twin.plot(t, loss, "s-", color="C1", ms=4, lw=1, label="model loss")
        twin.set_ylabel("loss (nats / token)", color="C1")
    else:
        ax.text(0.02, 0.02, "no LM head: loss not available;\noptimum taken at the trained T = 1",
                transform=ax.transAxes, fontsize=7, color="0.3", va="bottom")
    ax.legend(fontsize=6.5, loc="best")


def _ccdf_panel(ax, sizes: dict[str, np.ndarray], fits: dict[str, dict[str, float]]) -> None:
    """CCDF of the sizes at the optimum, model and null, with the free and the tau = 3/2 seed's-form fits."""
    style = {"model": dict(color="C0", marker=".", ms=3.5, ls="none"),
             "shuffled_layers": dict(color="0.45", marker="x", ms=2.5, ls="none")}
    for name, values in sizes.items():
        if values.size:
            x, p = _ccdf(values)
            ax.loglog(x, p, label={"model": "model", "shuffled_layers": "null: layers shuffled"}.get(name, name),
                      **style.get(name, {}))
    model = sizes.get("model", np.zeros(0))
    if model.size:
        grid = np.unique(np.round(np.geomspace(model.min(), model.max(), 40)))
        for key, ls, colour in (("free", "-", "C2"), ("fixed", "--", "C3")):
            fit = fits.get(key)
            if fit and np.isfinite(fit["alpha"]):
                curve = survival("truncated_power_law", {"alpha": fit["alpha"], "lam": fit["lam"]}, grid,
                                 float(model.min()), discrete=True)
                label = (f"s^-a exp(-s/s_c): a = {fit['alpha']:.2f}" + (" (fixed)" if key == "fixed" else "")
                         + (f", s_c = {1 / fit['lam']:.3g}" if fit["lam"] > 0 else ""))
                ax.loglog(grid, curve, ls, color=colour, lw=1.2, label=label)
    ax.set_xlabel("cascade size s (unit events)")
    ax.set_ylabel("P(S >= s)")
    ax.legend(fontsize=6.5, loc="lower left")


def theorem2_figure(temps: pd.DataFrame | None, point: dict[str, Any], sizes: dict[str, np.ndarray],
                    fits: dict[str, dict[str, float]], *, title: str = ""):
    """Left: tau against attention temperature (and the loss, when the model has one) with 3/2 and the optimum;
    right: the size distribution at the optimum against the layer-shuffled null, with the seed's form fitted
    freely and with tau fixed at 3/2."""
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(11.5, 4.3))
    if temps is not None and len(temps):
        _tau_panel(a0, temps, point)
    else:
        a0.text(0.5, 0.5, "no temperature sweep", ha="center", transform=a0.transAxes)
    _ccdf_panel(a1, sizes, fits)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _scatter_panel(ax, peaks: pd.DataFrame) -> None:
    """Each head's peak temperature against its Gaussian null's; the calibration draw in grey."""
    distinct = peaks["differs"].to_numpy(dtype=bool)
    ax.loglog(peaks["T_gauss"], peaks["T_calib"], ".", color="0.6", ms=4,
              label="independent Gaussian draw (calibration)")
    ax.loglog(peaks.loc[~distinct, "T_gauss"], peaks.loc[~distinct, "T"], "o", mfc="white", color="C0", ms=4,
              label="head, not distinct from both nulls")
    ax.loglog(peaks.loc[distinct, "T_gauss"], peaks.loc[distinct, "T"], "o", color="C0", ms=4,
              label="head, distinct from both nulls")
    lo = np.nanmin(peaks[["T", "T_gauss", "T_calib"]].to_numpy())
    hi = np.nanmax(peaks[["T", "T_gauss", "T_calib"]].to_numpy())
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.7)
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        axis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.set_xlabel("T* of the Gaussian null (C peak)")
    ax.set_ylabel("T* of the head (C peak)")
    ax.legend(fontsize=6.5, loc="upper left")


def _head_panel(ax, curves: pd.DataFrame, row: dict[str, Any]) -> None:
    """One head's C, chi and xi (each scaled to its maximum) against T, with the peaks of the head and nulls."""
    t = curves["T"].to_numpy(dtype=float)
    for col, colour, label in (("C", "C0", "C"), ("chi", "C1", "chi"), ("xi", "C2", "xi")):
        y = curves[col].to_numpy(dtype=float)
        ax.semilogx(t, y / np.nanmax(y), "-", color=colour, lw=1.3, label=f"{label} (head)")
    for col, ls, label in (("C_null_gauss", "--", "C, Gaussian null"), ("C_null_shuffled", ":", "C, shuffled null")):
        y = curves[col].to_numpy(dtype=float)
        ax.semilogx(t, y / np.nanmax(curves["C"].to_numpy(dtype=float)), ls, color="0.35", lw=1, label=label)
    ax.axvspan(row["T_lo"], row["T_hi"], color="C0", alpha=0.2, lw=0)
    ax.axvline(row["T"], color="C0", lw=0.8)
    ax.axvline(row["T_gauss"], color="0.35", ls="--", lw=0.8)
    ax.axvline(row["T_shuffled"], color="0.35", ls=":", lw=0.8)
    ax.set_xlabel("temperature T")
    ax.set_ylabel("curve / its maximum")
    ax.set_title(f"layer {row['layer']} head {row['head']}: T* = {row['T']:.3g} "
                 f"[{row['T_lo']:.3g}, {row['T_hi']:.3g}], nulls {row['T_gauss']:.3g} / {row['T_shuffled']:.3g}",
                 fontsize=8)
    ax.legend(fontsize=6.5, loc="upper left")


def detect_figure(peaks: pd.DataFrame, curves: pd.DataFrame, head: dict[str, Any], fractions: pd.DataFrame, *,
                  title: str = ""):
    """Left: T* of every head against its Gaussian null's (C peak); middle: one head's C, chi, xi with the
    detected point and the nulls' peaks; right: the fraction of heads distinct from both nulls per peak
    definition, beside the calibration draw's, the power-law rates of heads and nulls, and the fraction of heads
    whose chi and xi peaks coincide with T* (no null: NaN rows draw no bar)."""
    fig, (a0, a1, a2) = plt.subplots(1, 3, figsize=(15, 4.3))
    _scatter_panel(a0, peaks)
    _head_panel(a1, curves, head)
    x = np.arange(len(fractions))
    width = 0.38
    for offset, col, colour, label in ((-width / 2, "fraction", "C0", "heads"),
                                       (width / 2, "null_fraction", "0.55", "null (calibration / Gaussian null)")):
        values = fractions[col].to_numpy(dtype=float)
        lo = values - fractions[f"{col}_lo"].to_numpy(dtype=float)
        hi = fractions[f"{col}_hi"].to_numpy(dtype=float) - values
        a2.bar(x + offset, values, width, yerr=[lo, hi], color=colour, capsize=3, label=label)
    a2.set_xticks(x, fractions["label"], fontsize=7)
    a2.set_ylim(0, 1)
    a2.set_ylabel("fraction of heads (95% CI)")
    a2.legend(fontsize=6.5, loc="upper right")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
