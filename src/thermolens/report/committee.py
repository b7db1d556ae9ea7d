"""Figures of the committee machine: SE branches with AMP points, overlaps, the large-K limit.

Every function takes results from ``thermolens.committee`` and an optional ``ax`` and returns the
Axes; saving is ``thermolens.io.save_figure``. Nothing here computes physics.
"""

from __future__ import annotations

import math
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


_START_STYLE = {"random": dict(marker="o", color="tab:orange"), "informed": dict(marker="s", color="tab:green")}


def _se_lines(ax, study, column: str) -> None:
    se = study.se
    if not len(se):
        return
    for name in ("uninformed", "informed"):
        b = se[se.branch == name].sort_values("alpha")
        ax.plot(b.alpha, b[column], label=f"SE {name}", lw=1.4, **_BRANCH_STYLE[name])


def _gap_marks(ax, thresholds: dict) -> None:
    marks = (("alpha_it", "black", r"$\alpha_{IT}$"), ("alpha_alg", "tab:purple", r"$\alpha_{alg}$"),
             ("alpha_spinodal", "tab:brown", "spinodal"))
    for key, color, label in marks:
        value = thresholds.get(key)
        if value is not None:
            bound = "\u2264 " if key == "alpha_it" and thresholds.get("alpha_it_upper_bound") else ""
            ax.axvline(value, color=color, lw=0.9, alpha=0.8, label=f"{label} {bound}{value:.3g} (SE grid)")


def plot_gap_success(study, *, ax=None):
    """Fraction of seeds whose AMP ends specialized, per start and n, with the SE thresholds."""
    ax = _axes(ax)
    c = study.config
    shades = np.linspace(0.45, 1.0, len(c.ns))
    for start in c.starts:
        for shade, n in zip(shades, sorted(c.ns)):
            t = study.amp[(study.amp.start == start) & (study.amp.n == n)].groupby("alpha").success.mean()
            style = _START_STYLE[start]
            ax.plot(t.index, t.values, marker=style["marker"], color=style["color"], alpha=shade,
                    ls="-" if start == "random" else "--", label=f"AMP {start}, n={n}")
    _gap_marks(ax, study.thresholds)
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel(r"$\alpha = m/n$")
    ax.set_ylabel(f"success (q_d \u2265 {c.success_q:g})")
    ax.set_title(f"K={c.K}, {c.prior}: AMP from random and informed starts, {len(c.seeds)} seeds")
    ax.legend(fontsize=6)
    return ax


def plot_gap_error(study, *, ax=None):
    """Test error of AMP (both starts, largest n) and of the learners against SE's posterior-mean error."""
    ax = _axes(ax)
    c = study.config
    _se_lines(ax, study, "eps_plugin")
    top = study.amp[study.amp.n == max(c.ns)]
    for start in c.starts:
        g = top[top.start == start].groupby("alpha").eps_test
        ax.errorbar(g.mean().index, g.mean().values, yerr=g.std(ddof=0).values, fmt=_START_STYLE[start]["marker"],
                    color=_START_STYLE[start]["color"], capsize=3, label=f"AMP {start}, n={max(c.ns)} (mean \u00b1 sd)")
    if len(study.learners):
        for method, g in study.learners.groupby("method"):
            m = g.groupby("alpha").eps_test
            ax.errorbar(m.mean().index, m.mean().values, yerr=m.std(ddof=0).values, fmt="^", capsize=3,
                        label=f"{method}, n={int(g.n.iloc[0])}")
    _gap_marks(ax, study.thresholds)
    ax.set_xlabel(r"$\alpha = m/n$")
    ax.set_ylabel(r"test error of $\varphi(x\hat W)$")
    ax.legend(fontsize=6)
    return ax


def plot_gap_overlap(study, *, ax=None):
    """q_d of AMP (both starts, largest n) against SE's branches."""
    ax = _axes(ax)
    c = study.config
    _se_lines(ax, study, "q_d")
    top = study.amp[study.amp.n == max(c.ns)]
    for start in c.starts:
        g = top[top.start == start]
        ax.plot(g.alpha, g.q_d, ls="none", alpha=0.5, **_START_STYLE[start], label=f"AMP {start} (each seed)")
    ax.set_xlabel(r"$\alpha = m/n$")
    ax.set_ylabel(r"$q_d$")
    ax.legend(fontsize=6)
    return ax


def plot_gap_crossover(study, *, ax=None):
    """alpha_50(n) of each start against 1/sqrt(n), the extrapolation and the SE thresholds."""
    ax = _axes(ax)
    for start, cross in study.crossover.items():
        pts = [(int(n), f["alpha_50"], f["alpha_50_err"]) for n, f in cross["by_n"].items()
               if f["alpha_50"] is not None]
        if pts:
            n, a, e = (np.array(v, dtype=float) for v in zip(*pts))
            ax.errorbar(1.0 / np.sqrt(n), a, yerr=np.where(np.isfinite(e), e, 0.0), fmt=_START_STYLE[start]["marker"],
                        color=_START_STYLE[start]["color"], capsize=3, label=f"{start}: $\\alpha_{{50}}(n)$")
        ext = cross["extrapolated"]
        if ext["alpha_inf"] is not None:
            x = np.linspace(0.0, 1.0 / math.sqrt(min(study.config.ns)), 20)
            ax.plot(x, ext["alpha_inf"] + ext["slope"] * x, color=_START_STYLE[start]["color"], lw=1,
                    label=f"{start}: $\\alpha_\\infty$ = {ext['alpha_inf']:.3f} \u00b1 {ext['alpha_inf_err']:.3f}")
    for key, color in (("alpha_it", "black"), ("alpha_alg", "tab:purple"), ("alpha_spinodal", "tab:brown")):
        value = study.thresholds.get(key)
        if value is not None:
            ax.axhline(value, color=color, lw=0.9, alpha=0.8, label=f"SE {key} {value:.3g}")
    ax.set_xlabel(r"$1/\sqrt{n}$")
    ax.set_ylabel(r"$\alpha_{50}$ (logistic fit of success)")
    ax.set_xlim(left=0.0)
    ax.legend(fontsize=6)
    return ax


def gap_figure(study):
    """Four panels: success rates, test errors (AMP, learners, SE), q_d, finite-size crossover."""
    fig, axes = plt.subplots(2, 2, figsize=(12.0, 8.4))
    plot_gap_success(study, ax=axes[0, 0])
    plot_gap_error(study, ax=axes[0, 1])
    plot_gap_overlap(study, ax=axes[1, 0])
    plot_gap_crossover(study, ax=axes[1, 1])
    fig.tight_layout()
    return fig
