"""Figures of the committee-machine claims (``thermolens.claims.committee``): state evolution against
AMP at finite n, with the thresholds marked.

Each function takes tables prepared by the claim (SE branches, AMP runs, per-alpha AMP means with
their bootstrap intervals) and returns a Figure; saving is ``thermolens.io.save_figure``. Nothing
here computes physics or statistics.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

_BRANCHES = (
    ("uninformed", dict(ls="--", color="tab:blue"), "SE uninformed (AMP from a random start)"),
    ("informed", dict(ls=":", color="tab:red"), "SE informed"),
)
_MARKS = (("alpha_spec", "tab:green", r"$\alpha_{spec}$"), ("alpha_it", "black", r"$\alpha_{IT}$"),
          ("alpha_alg", "tab:purple", r"$\alpha_{alg}$"))


def _se_branches(ax, branches, column: str) -> None:
    """Both SE branches and the equilibrium (the Bayes-optimal value) of ``column`` against alpha."""
    for name, style, label in _BRANCHES:
        rows = branches[branches["branch"] == name].sort_values("alpha")
        ax.plot(rows["alpha"], rows[column], lw=1.4, marker=".", ms=3, label=label, **style)
    eq = branches[branches["equilibrium"]].sort_values("alpha")
    ax.plot(eq["alpha"], eq[column], color="k", lw=2.4, alpha=0.3, marker="o", ms=3,
            label="SE equilibrium (Bayes-optimal; dots: solved alphas)")


def _amp(ax, runs, points, column: str, label: str) -> None:
    """AMP: every run as a faint dot, the mean over seeds with its bootstrap interval."""
    ax.plot(runs["alpha"], runs[column], ".", color="tab:orange", alpha=0.35, ms=4)
    mean = points[f"{column}_mean"]
    ax.errorbar(points["alpha"], mean, yerr=[mean - points[f"{column}_lo"], points[f"{column}_hi"] - mean],
                fmt="o", color="tab:orange", mec="k", mew=0.5, capsize=3, label=label)


def _thresholds(ax, thresholds: dict) -> None:
    for key, color, label in _MARKS:
        value = thresholds.get(key)
        if value is not None:
            ax.axvline(value, color=color, lw=0.9, alpha=0.8, label=f"{label} = {value:.3f}")


def plot_specialization(branches, runs, points, thresholds: dict, *, bracket=None, amp_label: str = "AMP"):
    """K = 2 specialization: q_d and the Gibbs error against alpha, SE branches beside AMP.

    ``branches``: SE rows (alpha, branch, equilibrium, q_d, eps_g); ``runs``: AMP runs (alpha,
    q_d, eps_gibbs); ``points``: per-alpha AMP means (``<column>_mean/_lo/_hi``); ``bracket``: the
    alphas between which AMP's q_d leaves 0, shaded.
    """
    fig, (ax_q, ax_e) = plt.subplots(1, 2, figsize=(11.0, 4.3))
    for ax, column, ylabel in ((ax_q, "q_d", r"specialization $q_d$"),
                               (ax_e, "eps_g", r"$\varepsilon_g$ (Gibbs)")):
        _se_branches(ax, branches, column)
        _amp(ax, runs, points, column if column == "q_d" else "eps_gibbs", amp_label)
        _thresholds(ax, thresholds)
        if bracket is not None:
            ax.axvspan(*bracket, color="tab:orange", alpha=0.08, lw=0, label="AMP: $q_d$ leaves 0 here")
        ax.set_xlabel(r"$\alpha = m/n$")
        ax.set_ylabel(ylabel)
    ax_q.set_title(r"hidden units specialize: $Q = q_d I + (q_a/K)\,\mathbf{1}\mathbf{1}^T$")
    ax_e.set_title("generalization error at the overlaps")
    ax_q.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def plot_gap(branches, runs, points, thresholds: dict, *, tau: float, amp_label: str = "AMP"):
    """Computational gap: AMP's test error and overlap against alpha, SE's prediction for AMP (the
    uninformed branch) and the Bayes-optimal equilibrium, with the gap (alpha_IT, alpha_alg) shaded.

    ``branches``: SE rows (alpha, branch, equilibrium, eps_plugin, q_diag); ``runs``: AMP runs
    (alpha, eps_test, q_diag); ``points``: per-alpha means (``eps_test_*``, ``q_diag_*``) and
    ``n_success``/``n_runs`` (runs within ``tau`` of the Bayes-optimal overlap).
    """
    fig, (ax_e, ax_q) = plt.subplots(1, 2, figsize=(11.0, 4.3))
    for ax, column, se_column, ylabel in (
        (ax_e, "eps_test", "eps_plugin", r"test error of $\varphi(x\hat W)$"),
        (ax_q, "q_diag", "q_diag", r"overlap $\mathrm{tr}\,Q/K$"),
    ):
        _se_branches(ax, branches, se_column)
        _amp(ax, runs, points, column, amp_label)
        _thresholds(ax, thresholds)
        if thresholds.get("alpha_it") is not None and thresholds.get("alpha_alg") is not None:
            ax.axvspan(thresholds["alpha_it"], thresholds["alpha_alg"], color="tab:purple", alpha=0.07, lw=0,
                       label="computational gap (SE)")
        ax.set_xlabel(r"$\alpha = m/n$")
        ax.set_ylabel(ylabel)
    eq = branches[branches["equilibrium"]].sort_values("alpha")
    band = ax_q.fill_between(eq["alpha"], eq["q_diag"] - tau, eq["q_diag"] + tau, color="k", alpha=0.08, lw=0,
                             label=rf"success: within {tau:g} of Bayes-optimal")
    top = ax_q.get_ylim()[1]
    for row in points.itertuples():
        ax_q.annotate(f"{row.n_success}/{row.n_runs}", (row.alpha, top), fontsize=6, ha="center", va="top")
    ax_e.set_title("AMP against Bayes-optimal error")
    ax_q.set_title("AMP runs reaching the Bayes-optimal overlap")
    ax_e.legend(fontsize=7, loc="upper right")  # the same lines in both panels: one full legend
    ax_q.legend(handles=[band], fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig
