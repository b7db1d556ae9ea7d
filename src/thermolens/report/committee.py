"""Figures of the committee machine: SE branches with AMP points, overlaps, the large-K limit.

Every function takes results from ``thermolens.committee`` and an optional ``ax`` and returns the
Axes; saving is ``thermolens.io.save_figure``. Nothing here computes physics.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

_BRANCH_STYLE = {"uninformed": dict(ls="--", color="tab:blue"), "informed": dict(ls=":", color="tab:red")}


def _axes(ax):
    if ax is None:
        _, ax = plt.subplots(figsize=(6.0, 4.2))
    return ax


def _mark_thresholds(ax, thresholds) -> None:
    if thresholds is None:
        return
    marks = (("alpha_spec", "tab:green", r"$\alpha_{spec}$"), ("alpha_it", "black", r"$\alpha_{IT}$"),
             ("alpha_alg", "tab:purple", r"$\alpha_{alg}$ (spinodal)"))
    for attr, color, label in marks:
        value = getattr(thresholds, attr)
        if value is not None:
            ax.axvline(value, color=color, lw=0.9, alpha=0.8, label=f"{label} = {value:.3f}")


def plot_error_curve(curve, amp: Sequence = (), thresholds=None, *, kind: str = "gibbs", ax=None):
    """Generalization error vs alpha: both SE branches, the equilibrium, AMP points with error bars.

    ``kind="gibbs"``: SE eps_g against eps_g at AMP's measured overlaps; ``kind="plugin"``: SE error
    of the posterior-mean committee against AMP's test error on fresh samples.
    """
    ax = _axes(ax)
    attr = "eps_g" if kind == "gibbs" else "eps_plugin"
    for name in ("uninformed", "informed"):
        pts = curve.branch(name)
        ax.plot(curve.alpha, [getattr(p, attr) for p in pts], label=f"SE {name}", lw=1.4, **_BRANCH_STYLE[name])
    eq = [None if p is None else getattr(p, attr) for p in curve.equilibrium_points()]
    ax.plot(curve.alpha, np.array(eq, dtype=float), color="k", lw=2.2, alpha=0.35, label="SE equilibrium")
    if amp:
        a = [s.alpha for s in amp]
        stat = [s.eps_gibbs if kind == "gibbs" else s.eps_test for s in amp]
        ax.errorbar(a, [m for m, _ in stat], yerr=[e for _, e in stat], fmt="o", color="tab:orange", capsize=3,
                    label=f"AMP, n={amp[0].n}, {len(amp[0].runs)} seeds")
    _mark_thresholds(ax, thresholds)
    ax.set_xlabel(r"$\alpha = m/n$")
    ax.set_ylabel(r"$\varepsilon_g$ (Gibbs)" if kind == "gibbs" else r"$\varepsilon$ of $\varphi(x\hat W)$")
    ax.set_title(f"committee K={curve.config.K}, {curve.config.prior} prior")
    ax.legend(fontsize=7)
    return ax


def plot_overlaps(curve, amp: Sequence = (), *, ax=None):
    """q_d (specialization) and q_a (committee-wide overlap) vs alpha, both branches, AMP points."""
    ax = _axes(ax)
    for name in ("uninformed", "informed"):
        pts = curve.branch(name)
        style = _BRANCH_STYLE[name]
        ax.plot(curve.alpha, [p.q_d for p in pts], lw=1.4, label=f"$q_d$ {name}", **style)
        ax.plot(curve.alpha, [p.q_a for p in pts], lw=1.0, alpha=0.6, label=f"$q_a$ {name}",
                marker=".", ms=3, **style)
    if amp:
        a = [s.alpha for s in amp]
        ax.errorbar(a, [s.q_d[0] for s in amp], yerr=[s.q_d[1] for s in amp], fmt="o", color="tab:orange",
                    capsize=3, label="AMP $q_d$")
        ax.errorbar(a, [s.q_a[0] for s in amp], yerr=[s.q_a[1] for s in amp], fmt="s", color="tab:brown",
                    capsize=3, label="AMP $q_a$")
    ax.set_xlabel(r"$\alpha = m/n$")
    ax.set_ylabel("overlap")
    ax.set_title(r"$Q = q_d I + (q_a/K)\,\mathbf{1}\mathbf{1}^T$")
    ax.legend(fontsize=7)
    return ax


def plot_large_k(curve, *, ax=None):
    """Large-K committee-symmetric limit: Gibbs error of both branches against alpha / K."""
    ax = _axes(ax)
    for name, pts in (("uninformed", curve.uninformed), ("informed", curve.informed)):
        ax.plot(curve.alpha_tilde, [p.eps_g for p in pts], lw=1.4, label=f"{name}", **_BRANCH_STYLE[name])
    ax.plot(curve.alpha_tilde, curve.equilibrium_eps_g, color="k", lw=2.2, alpha=0.35, label="equilibrium")
    ax.set_xlabel(r"$\tilde\alpha = \alpha / K$")
    ax.set_ylabel(r"$\varepsilon_g$ (Gibbs)")
    ax.set_title(r"large-$K$ limit, Gaussian prior")
    ax.legend(fontsize=7)
    return ax


def phase_diagram_figure(curve, amp: Sequence = (), thresholds=None, large_k=None):
    """The whole picture on one figure: errors (Gibbs, plug-in vs AMP test), overlaps, large K."""
    n_panels = 4 if large_k is not None else 3
    fig, axes = plt.subplots(1, n_panels, figsize=(5.2 * n_panels, 4.4))
    plot_error_curve(curve, amp, thresholds, kind="gibbs", ax=axes[0])
    plot_error_curve(curve, amp, thresholds, kind="plugin", ax=axes[1])
    plot_overlaps(curve, amp, ax=axes[2])
    if large_k is not None:
        plot_large_k(large_k, ax=axes[3])
    fig.tight_layout()
    return fig
