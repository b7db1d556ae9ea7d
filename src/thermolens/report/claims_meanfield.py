"""Figures of the Mun & Rosenzweig claims (``thermolens.claims.meanfield``): data in, a Figure out."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["order_parameter_figure", "rates_figure"]


def order_parameter_figure(
    curves: dict,
    *,
    title: str,
    points=None,
    parameter: str | None = None,
    threshold: float | None = None,
    gap_tol: float = 1e-10,
    onset: dict | None = None,
):
    """Left: the global minimiser's order parameter against ``K/K_# - 1`` per curve, ``K_c`` dotted.

    ``curves`` maps a label to ``{"K_rel", "r", "K_c_rel"}``. Right, with ``points`` (value,
    relative_gap): the relative gap ``(K_# - K_c)/K_#`` against the kernel parameter (gaps below
    ``gap_tol``, i.e. continuous, drawn as triangles at ``gap_tol / 10``) and the threshold; without
    ``points``: the onset on log-log axes with the slope 1/2 of a continuous (pitchfork) transition.
    """
    fig, (left, right) = plt.subplots(1, 2, figsize=(11.0, 4.2))
    for i, (label, c) in enumerate(curves.items()):
        color = f"C{i}"
        order = np.argsort(c["K_rel"])
        left.plot(c["K_rel"][order], c["r"][order], ".-", color=color, ms=3, lw=1, label=label)
        if np.isfinite(c["K_c_rel"]):
            left.axvline(c["K_c_rel"], color=color, ls=":", lw=1)
    left.axvline(0.0, color="black", lw=0.8)
    widths = [float(np.max(np.abs(c["K_rel"]))) for c in curves.values() if len(c["K_rel"])]
    if widths and max(widths) > 5 * min(widths):  # a far-off K_c (large jump) beside a continuous onset
        left.set_xscale("symlog", linthresh=min(widths))
    left.set_xlabel(r"$K/K_\# - 1$  (dotted: $K_c$)")
    left.set_ylabel(r"order parameter $|\hat\rho(k)|$ of the global minimiser")
    left.set_title(title, fontsize=10)
    if curves:
        left.legend(fontsize=8)
    if points is not None:
        gap = np.asarray(points["relative_gap"], float)
        value = np.asarray(points["value"], float)
        cont = gap <= gap_tol
        right.semilogy(value[~cont], gap[~cont], "o", color="tab:red", label=r"discontinuous: $K_c < K_\#$")
        right.semilogy(
            value[cont],
            np.full(cont.sum(), gap_tol / 10),
            "v",
            color="tab:blue",
            label=rf"continuous: gap $\leq$ {gap_tol:g} (drawn at {gap_tol / 10:g})",
        )
        if threshold is not None:
            right.axvline(
                threshold, color="gray", ls="--", lw=1, label=f"{parameter}$_*$ = {threshold:.6f} (Landau)"
            )
        right.set_xlabel(parameter or "parameter")
        right.set_ylabel(r"$(K_\# - K_c)/K_\#$")
        right.set_title("relative gap: zero means K_c = K_#", fontsize=10)
        right.legend(fontsize=8)
    else:
        for i, (label, c) in enumerate(curves.items()):
            up = (c["K_rel"] > 0) & (c["r"] > 0)
            right.loglog(
                c["K_rel"][up],
                c["r"][up],
                "o",
                color=f"C{i}",
                ms=3,
                label=f"{label}" + (f" (fitted b = {onset[label]:.3f})" if onset and label in onset else ""),
            )
            if up.any():
                x = np.geomspace(c["K_rel"][up].min(), c["K_rel"][up].max(), 20)
                anchor = c["r"][up][np.argmin(c["K_rel"][up])] / np.sqrt(x[0])
                right.loglog(
                    x,
                    anchor * np.sqrt(x),
                    "k--",
                    lw=1,
                    label="slope 1/2 (continuous onset)" if i == 0 else None,
                )
        right.set_xlabel(r"$K/K_\# - 1$")
        right.set_ylabel(r"$|\hat\rho(k)|$")
        right.set_title("onset above K_#: r ~ (K/K_# - 1)^b", fontsize=10)
        if curves:
            right.legend(fontsize=8)
    fig.tight_layout()
    return fig


def rates_figure(panels: list[dict]):
    """Per critical case, ``|rho_hat(k)|`` against ``t`` on log-log axes: PDE runs (lines), particle
    seeds (thin), the particle fit window (shaded), a guide of the stated slope ``-p`` anchored at the
    end of the longest PDE run, and the off-critical (exponential) PDE of ``panel["null"]`` (dashed).

    Each panel: ``title``, ``pde`` (run name -> (t, r)), ``particles`` (list of (t, r)), ``window``
    (``(t_lo, t_hi)`` or None), ``stated`` (p), ``null`` (name -> (t, r)), ``n_particles``.
    """
    n = max(1, len(panels))
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 4.2), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        for i, (t, r) in enumerate(panel["particles"]):
            ok = (t > 0) & (r > 0)
            ax.loglog(
                t[ok],
                r[ok],
                color="tab:green",
                lw=0.6,
                alpha=0.6,
                label=f"particles, N = {panel['n_particles']:.3g} ({len(panel['particles'])} seeds)"
                if i == 0
                else None,
            )
        longest, r_min = None, np.inf
        for i, (run, (t, r)) in enumerate(panel["pde"].items()):
            ok = (t > 0) & (r > 0)
            ax.loglog(t[ok], r[ok], color=f"C{i}", lw=1.4, label=f"PDE {run}")
            if ok.any():
                r_min = min(r_min, float(r[ok].min()))
                if longest is None or t[ok][-1] > longest[0][-1]:
                    longest = (t[ok], r[ok])
        for name, (t, r) in panel["null"].items():
            ok = (t > 0) & (r > 1e-12)
            ax.loglog(t[ok], r[ok], color="gray", ls="--", lw=1, label=f"PDE {name} (exponential)")
        if np.isfinite(r_min):  # the exponential null would otherwise squash the critical curves
            ax.set_ylim(0.5 * r_min, 0.7)
        if longest is not None:
            t, r = longest
            x = np.geomspace(t[-1] / 30, t[-1], 10)
            ax.loglog(
                x,
                r[-1] * (x / t[-1]) ** (-panel["stated"]),
                "k:",
                lw=2,
                label=f"stated slope -{panel['stated']:g}",
            )
        if panel["window"] is not None and np.all(np.isfinite(panel["window"])):
            ax.axvspan(*panel["window"], color="tab:green", alpha=0.08, label="particle fit window")
        ax.set_title(panel["title"], fontsize=9)
        ax.set_xlabel("time t")
        ax.set_ylabel(r"$|\hat\rho(k)|$")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
