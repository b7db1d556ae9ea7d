"""Aubin et al. 2018 (arXiv:1806.05451): the K = 2 committee machine's specialization transition and
its computational gap, tested with state evolution (SE) and with AMP on finite instances.

The physics is ``thermolens.committee`` (docs/committee.md): teacher ``W*`` (n x K), labels
``y = sign(sum_l sign(x.W*_l / sqrt(n)))``, ``alpha = m/n``, overlaps ``Q = W_hat^T W* / n``
projected on ``q_d I + (q_a/K) 1 1^T``. The studies are ``experiments.committee.contract``: one SE
piece (several settings) and AMP pieces over alpha x seed grids (the quick preset uses n = 2000 and
4 seeds, the full one n = 10^4 and 10 seeds on a finer alpha grid).

**aubin-specialization** — for K = 2 the overlaps go from the permutation-symmetric fixed point
(q_d = 0: both student units learn the same mixture of teacher units) to a specialized one (q_d > 0)
at ``alpha_spec``. SE is deterministic, so this is a closed-form claim: fixed verdict "supported"
when ``find_thresholds`` (Gaussian weights) locates the transition — the q_d = 0 fixed point loses
stability (lambda = 1) at ``alpha_spec``, the equilibrium has q_d < 1e-6 at every scan point below it
and q_d > 1e-3 at every point above — else "not supported". Variants (fixed verdicts): the SE
residual tolerance 1e-11 instead of 1e-9 (a looser 1e-7 is not a fair variant: ``find_thresholds``
then stops a fresh uninformed start at alpha = 2.0 with q_d = 5e-6, above its 1e-6 test of
"non-specialized", and misses the bracket), the K = 2 output quadrature at step 0.05 instead of
0.1, and Rademacher weights (there the equilibrium jumps at ``alpha_IT``, first order). AMP at finite n is
reported beside it as numbers: q_d per alpha with a bootstrap interval over seeds against SE, and
the bracket of alphas between which AMP's q_d leaves 0.

**aubin-gap** — with Rademacher (binary) weights ``alpha_IT < alpha_alg``, and AMP from a random
start reaches the Bayes-optimal error exactly where SE says it can. Per AMP run (one alpha, one
seed) "success" means reaching the Bayes-optimal overlap: ``|tr Q_AMP / K - tr Q_BO / K| <= tau``
(``Q_BO``: SE's equilibrium; ``tau = 0.1``). Runs inside the gap ``(alpha_IT, alpha_alg)`` should
fail (SE's uninformed branch, which AMP follows, stays below the equilibrium); runs outside should
succeed — except within ``MARGIN = 0.1`` above ``alpha_alg``, left out because a finite instance
crosses a spinodal late (n = 1000 still fails at alpha = 2.1, n = 2000 succeeds there). Decision:
an intersection-union test of two exact binomial tests over the runs, H0a "P(success in the gap) >=
1/2" and H0b "P(success outside) <= 1/2", p = max(p_a, p_b) (each alpha-seed run is an independent
instance; a success probability that differs between alphas only makes the pooled test
conservative). Against it, the opposite claim — AMP beats SE's predicted failure, "P(success in the
gap) > 1/2" — is tested by the other tail; the direction with the smaller p is reported, its p-value
doubled (two one-sided tests): rejection means "supported" or "contradicted", no rejection "not
supported". If SE shows no gap the verdict is "not supported" without a test. Effect: AMP's test
error above SE's Bayes-optimal error inside the gap (stratified bootstrap over seeds), beside the
excess SE predicts for AMP (its uninformed branch). Variants: tau 0.05 and 0.25, margin 0.05 and
0.2, another n, damping 0.3 (same max_iter), Gaussian weights (no gap predicted: tests that AMP
reaches the Bayes-optimal overlap at every alpha), and under the full preset SE thresholds at a
finer quadrature.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thermolens.claims.base import Claim, Decision, Evidence, Piece, Variant

__all__ = ["CLAIMS", "GapTest", "evaluate_gap", "evaluate_specialization", "gap_test", "plan", "transition"]

SOURCE = "Aubin et al. 2018"
SE_STUDY = "thermolens.experiments.committee.contract:SE_STUDY"
AMP_STUDY = "thermolens.experiments.committee.contract:AMP_STUDY"

GAUSSIAN, GAUSSIAN_TOL, GAUSSIAN_QUAD = "k2-gaussian", "k2-gaussian-tol1e-11", "k2-gaussian-quad0.05"
BINARY, BINARY_FINE = "k2-binary", "k2-binary-fine"
#: SE q_d below this is the permutation-symmetric fixed point (the test of ``committee.thresholds``)
NON_SPECIALIZED = 1e-6
#: SE q_d above this is specialized (q_d = 0.097 at alpha = 2.25, 0.2 above alpha_spec, Gaussian)
SPECIALIZED = 1e-3
#: AMP's q_d is "specialized" at finite n when the lower end of its bootstrap interval exceeds this
AMP_SPECIALIZED = 0.01
#: success: AMP's tr(Q)/K within TAU of SE's Bayes-optimal one (binary: perfect recovery is 1,
#: AMP stuck on the uninformed branch sits at 0.3-0.6)
TAU = 0.1
TAU_VARIANTS = (0.05, 0.25)
#: AMP runs within MARGIN above alpha_alg (or of a continuous alpha_spec) are left out of the test
MARGIN = 0.1
MARGIN_VARIANTS = (0.05, 0.2)
DAMPING = 0.3
N_BOOT = 2000
SEED = 0
#: fewer runs than this on either side of the gap cannot carry a verdict (2 * 0.5^8 = 0.008)
MIN_RUNS = 8


# --------------------------------------------------------------------------------------------------
# presets: the pieces


def _grid(start: float, stop: float, step: float) -> tuple[float, ...]:
    n = int(round((stop - start) / step))
    return tuple(round(start + k * step, 6) for k in range(n + 1))


@dataclass(frozen=True)
class Plan:
    """The study configs of one preset (``experiments.committee.contract``) and, per piece, its
    estimated (seconds on 2 cores, peak GiB)."""

    preset: str
    se: Any
    amp_gaussian: Any
    amp_binary: Any
    amp_binary_n: Any
    amp_binary_damped: Any
    estimates: dict[str, tuple[float, float]]

    def names(self) -> dict[str, str]:
        p = self.preset
        return {"se": f"committee-se-{p}", "amp_gaussian": f"committee-amp-gaussian-{p}",
                "amp_binary": f"committee-amp-binary-{p}",
                "amp_binary_n": f"committee-amp-binary-n{self.amp_binary_n.n}-{p}",
                "amp_binary_damped": f"committee-amp-binary-damped-{p}"}

    def se_setting(self, name: str):
        return next(s for s in self.se.settings if s.name == name)

    def piece(self, key: str) -> Piece:
        from thermolens.runner.study import config_to_dict

        est_s, est_gib = self.estimates[key]
        return Piece(name=self.names()[key], study=SE_STUDY if key == "se" else AMP_STUDY,
                     config=config_to_dict(getattr(self, key)), est_s=est_s, est_gib=est_gib)


def plan(preset: str) -> Plan:
    """The pieces of both claims under ``preset`` ("quick": n = 2000, 4 seeds; "full": n = 10^4, 10 seeds)."""
    from dataclasses import replace

    from thermolens.experiments.committee.contract import AMPStudyConfig, SESetting, SEStudyConfig

    if preset == "quick":
        seeds, n, n_variant = (0, 1, 2, 3), 2000, 1500
        gauss_alphas = (0.5, 1.0, 1.5, 3.0, 3.5, 4.0)
        binary_alphas = (1.4, 1.7, 1.8, 1.9, 2.2, 2.5)
        damped_alphas = binary_alphas
        n_test = 5000  # test-error std ~0.005 per run; 20 000 fresh samples would cost more than AMP itself
        gauss = SESetting(GAUSSIAN, alpha_max=4.0, step=0.2, alpha_tol=1e-4, alphas=gauss_alphas)
        window = dict(alpha_min=1.8, alpha_max=2.4, step=0.2, alpha_tol=1e-4)  # scan points 2.0 | 2.2, 2.4
        # scan points 1.45 | 1.75 | 2.05, 2.35 bracket alpha_IT, alpha_spec and alpha_alg, away from the
        # critical slowing down of the iteration next to alpha_spec = 1.587
        binary = SESetting(BINARY, prior="binary", alpha_min=1.15, alpha_max=2.35, step=0.3, alpha_tol=0.01)
        extra: tuple = ()
        # wall seconds measured on 2 cores at load < 2 (the contract's sweeps: 2 single-threaded workers);
        # both claims together: 132 s of pieces + 3 s of evaluation
        estimates = {"se": (40.0, 1.0), "amp_gaussian": (15.0, 1.0), "amp_binary": (22.0, 1.0),
                     "amp_binary_n": (23.0, 1.0), "amp_binary_damped": (36.0, 1.0)}
    elif preset == "full":
        seeds, n, n_variant, n_test = tuple(range(10)), 10_000, 4000, 20_000
        gauss_alphas = _grid(0.25, 4.0, 0.25)
        binary_alphas = _grid(1.3, 2.6, 0.05)
        damped_alphas = _grid(1.3, 2.6, 0.1)
        gauss = SESetting(GAUSSIAN, alpha_max=4.0, step=0.05, alpha_tol=1e-4, alphas=gauss_alphas)
        window = dict(alpha_min=1.5, alpha_max=2.5, step=0.1, alpha_tol=1e-4)
        binary = SESetting(BINARY, prior="binary", alpha_min=1.0, alpha_max=3.0, step=0.05, alpha_tol=1e-4)
        extra = (replace(binary, name=BINARY_FINE, step=0.1, alpha_tol=1e-3, quad_step=0.05, prior_nodes=300),)
        # per run at n = 10^4 (measured, one BLAS thread): 24-50 s CPU inside the gap, ~12 s outside, 22 s for
        # the Gaussian prior at alpha = 4 (2 GB resident); two workers share the 2 cores
        estimates = {"se": (900.0, 1.0), "amp_gaussian": (1100.0, 4.5), "amp_binary": (3000.0, 3.0),
                     "amp_binary_n": (900.0, 1.5), "amp_binary_damped": (1800.0, 3.0)}
    else:
        raise ValueError(f"preset {preset!r} is unknown; use quick or full")
    all_binary = tuple(sorted(set(binary_alphas) | set(damped_alphas)))
    # the slowest setting first: the sweep's two workers then finish together
    settings = (replace(binary, alphas=all_binary), gauss, SESetting(GAUSSIAN_TOL, tol=1e-11, **window),
                SESetting(GAUSSIAN_QUAD, quad_step=0.05, **window), *(replace(s, alphas=all_binary) for s in extra))
    amp_binary = AMPStudyConfig(K=2, prior="binary", n=n, alphas=binary_alphas, seeds=seeds, n_test=n_test)
    return Plan(
        preset=preset, se=SEStudyConfig(settings=settings),
        amp_gaussian=AMPStudyConfig(K=2, prior="gaussian", n=n, alphas=gauss_alphas, seeds=seeds, n_test=n_test),
        amp_binary=amp_binary, amp_binary_n=replace(amp_binary, n=n_variant),
        amp_binary_damped=replace(amp_binary, alphas=damped_alphas, damping=DAMPING),
        estimates=estimates,
    )


def _load(study: str, pieces: dict[str, Path], name: str):
    from thermolens.runner.study import load_piece

    return load_piece(study, pieces[name])


# --------------------------------------------------------------------------------------------------
# small statistics


def _mean_ci(groups, *, n_boot: int = N_BOOT, seed: int = SEED) -> tuple[float, float, float]:
    """Mean of the pooled values and its 95% percentile-bootstrap interval, resampling within each group
    (seeds within one alpha). With 4 seeds per group the interval is a rough one."""
    import numpy as np

    groups = [np.asarray(g, dtype=float) for g in groups if len(g)]
    if not groups:
        return math.nan, math.nan, math.nan
    mean = float(np.concatenate(groups).mean())
    rng = np.random.default_rng(seed)
    sizes = np.array([g.size for g in groups])
    boots = np.zeros(n_boot)
    for g in groups:
        boots += g[rng.integers(0, g.size, size=(n_boot, g.size))].sum(axis=1)
    boots /= sizes.sum()
    lo, hi = np.quantile(boots, [0.025, 0.975])
    return mean, float(lo), float(hi)


def _per_alpha(runs, columns: tuple[str, ...]):
    """Per alpha: the mean of each column over seeds with its bootstrap interval (``<col>_mean/_lo/_hi``)."""
    import pandas as pd

    rows = []
    for alpha, group in runs.groupby("alpha"):
        row: dict[str, Any] = {"alpha": float(alpha), "n_runs": int(len(group))}
        for col in columns:
            row[f"{col}_mean"], row[f"{col}_lo"], row[f"{col}_hi"] = _mean_ci([group[col].to_numpy()])
        rows.append(row)
    return pd.DataFrame(rows)


def _se_table(table):
    """SE rows with ``q_diag = tr(Q)/K`` (K = 1, 2)."""
    q_diag = (table["Q00"] + table["Q11"]) / 2 if "Q11" in table else table["Q00"]
    return table.assign(q_diag=q_diag)


def _se_at(table, alpha: float, *, equilibrium: bool):
    """The SE row at ``alpha`` of the equilibrium (or the uninformed branch); None if not solved."""
    import numpy as np

    at = table[np.abs(table["alpha"] - alpha) < 1e-9]
    rows = at[at["equilibrium"]] if equilibrium else at[at["branch"] == "uninformed"]
    return None if rows.empty else rows.iloc[0]


# --------------------------------------------------------------------------------------------------
# aubin-specialization


def transition(thresholds: dict[str, Any], table) -> dict[str, Any]:
    """Where the SE equilibrium leaves q_d = 0, and whether it does so on the scan.

    The transition is ``alpha_spec`` when it is continuous ("second" order) and ``alpha_IT`` when it
    is first order. ``found``: it exists, the equilibrium has q_d < NON_SPECIALIZED at every scan
    point below it and q_d > SPECIALIZED at every scan point above it (at least one of each).
    """
    order = thresholds.get("order")
    alpha = {"second": thresholds.get("alpha_spec"), "first": thresholds.get("alpha_it")}.get(order)
    eq = table[table["on_scan"] & table["equilibrium"]].sort_values("alpha")
    out: dict[str, Any] = {"alpha": alpha, "order": order, "found": False, "n_below": 0, "n_above": 0,
                           "max_q_d_below": None, "min_q_d_above": None}
    if alpha is None:
        return out
    below, above = eq[eq["alpha"] < alpha], eq[eq["alpha"] > alpha]
    out.update(n_below=int(len(below)), n_above=int(len(above)))
    if len(below) and len(above):
        out.update(max_q_d_below=float(below["q_d"].abs().max()), min_q_d_above=float(above["q_d"].min()))
        out["found"] = out["max_q_d_below"] < NON_SPECIALIZED and out["min_q_d_above"] > SPECIALIZED
    return out


def _amp_specialization(runs, table) -> tuple[Any, tuple[float, float] | None]:
    """AMP's q_d per alpha beside SE's, and the bracket of alphas between which AMP's q_d leaves 0."""
    points = _per_alpha(runs, ("q_d", "eps_gibbs"))
    se_qd, se_eps = [], []
    for alpha in points["alpha"]:
        row = _se_at(table, alpha, equilibrium=True)
        se_qd.append(math.nan if row is None else float(row["q_d"]))
        se_eps.append(math.nan if row is None else float(row["eps_g"]))
    points = points.assign(se_q_d=se_qd, se_eps_g=se_eps, specialized=points["q_d_lo"] > AMP_SPECIALIZED)
    first = points.index[points["specialized"]]
    bracket = None
    if len(first) and first[0] > 0 and points["specialized"].iloc[first[0]:].all():
        bracket = (float(points["alpha"].iloc[first[0] - 1]), float(points["alpha"].iloc[first[0]]))
    return points, bracket


def evaluate_specialization(preset: str, pieces: dict[str, Path], claim_dir: Path) -> Evidence:
    """aubin-specialization (see the module docstring); writes ``specialization.png``."""
    from thermolens import io
    from thermolens.report.claims_committee import plot_specialization

    names = plan(preset).names()
    se = _load(SE_STUDY, pieces, names["se"])
    amp = _load(AMP_STUDY, pieces, names["amp_gaussian"])
    th, table = se.thresholds[GAUSSIAN], _se_table(se.tables[GAUSSIAN])
    primary = transition(th, table)
    others = {
        GAUSSIAN_TOL: "SE residual tolerance 1e-11 (default 1e-9)",
        GAUSSIAN_QUAD: "K = 2 output quadrature at step 0.05 (default 0.1)",
        BINARY: "Rademacher (binary) weights: the equilibrium jumps at alpha_IT (first order)",
    }
    variants, found_by = [], {}
    for name, choice in others.items():
        result = transition(se.thresholds[name], se.tables[name])
        found_by[name] = result
        variants.append(Variant(choice, effect=result["alpha"],
                                verdict="supported" if result["found"] else "not supported"))
    points, bracket = _amp_specialization(amp.table, table)
    alpha_spec, tol = primary["alpha"], th["alpha_tol"]
    below = points[points["alpha"] < alpha_spec] if alpha_spec is not None else points.iloc[:0]
    above = points[points["alpha"] > alpha_spec] if alpha_spec is not None else points.iloc[:0]
    cfg = amp.config
    fig = plot_specialization(table, amp.table, points, th, bracket=bracket,
                              amp_label=f"AMP, n = {cfg.n}, {len(cfg.seeds)} seeds (95% bootstrap)")
    io.save_figure(fig, Path(claim_dir) / "specialization.png")
    numbers = {
        "alpha_spec": alpha_spec, "alpha_tol": tol, "order": th["order"], "alpha_it": th["alpha_it"],
        "alpha_alg": th["alpha_alg"], "se_check": primary,
        "variants": {name: {"alpha": r["alpha"], "order": r["order"], "found": r["found"],
                            "alpha_minus_primary": None if r["alpha"] is None or alpha_spec is None
                            else r["alpha"] - alpha_spec} for name, r in found_by.items()},
        "binary_uninformed_alpha_spec": se.thresholds[BINARY]["alpha_spec"],
        "amp": {"n": cfg.n, "seeds": list(cfg.seeds), "bracket": bracket,
                "per_alpha": points.to_dict(orient="records"),
                "q_d_zero_below_alpha_spec": bool(len(below)) and bool((below["q_d_hi"] <= AMP_SPECIALIZED).all()),
                "q_d_positive_above_alpha_spec": bool(len(above)) and bool(above["specialized"].all()),
                "max_abs_q_d_minus_se": float((points["q_d_mean"] - points["se_q_d"]).abs().max()),
                "n_converged": int(amp.table["converged"].sum()), "n_runs": int(len(amp.table))},
        "n_not_converged_se": th["n_not_converged"],
    }
    if primary["found"]:
        reason = (f"State evolution (K = 2, Gaussian weights) leaves the permutation-symmetric fixed point at "
                  f"alpha_spec = {alpha_spec:.4f} ({th['order']} order; q_d = 0 at all {primary['n_below']} scan points "
                  f"below, q_d >= {primary['min_q_d_above']:.3f} at all {primary['n_above']} above), and AMP at n = "
                  f"{cfg.n} specializes " + (f"between alpha = {bracket[0]:g} and {bracket[1]:g}" if bracket
                                             else "without a clean bracket on its grid") + ".")
    else:
        reason = (f"State evolution (K = 2, Gaussian weights) shows no specialization transition on alpha <= "
                  f"{th['alpha_max']:g} (order {th['order']}, alpha_spec {alpha_spec}).")
    return Evidence(
        effect=alpha_spec,
        effect_label="alpha_spec: the q_d = 0 fixed point loses stability (SE, K = 2, Gaussian weights)",
        ci=None if alpha_spec is None else (alpha_spec - tol, alpha_spec + tol),
        null=None if bracket is None else 0.5 * (bracket[0] + bracket[1]),
        null_label=(f"AMP at n = {cfg.n}, {len(cfg.seeds)} seeds: q_d leaves 0 inside this alpha bracket "
                    "(midpoint; an independent finite-n estimate, not a null)"),
        null_ci=bracket, verdict="supported" if primary["found"] else "not supported", variants=tuple(variants),
        numbers=numbers, figure="specialization.png", reason=reason,
    )


# --------------------------------------------------------------------------------------------------
# aubin-gap


@dataclass(frozen=True)
class GapTest:
    """AMP runs classified against SE's thresholds, and the tests of the gap claim.

    ``runs``: one row per AMP run with ``region`` ("gap", "can", "edge" — left out — or
    "unresolved": SE did not converge there), ``success``, ``eps_bo`` (SE equilibrium plug-in error),
    ``eps_se_amp`` (SE uninformed branch: SE's prediction for AMP). ``p_value``/``if_rejected``: the
    reported direction (see the module docstring); NaN when a side has no runs.
    """

    alpha_it: float | None
    alpha_alg: float | None
    has_gap: bool
    runs: Any
    k_gap: int
    n_gap: int
    k_can: int
    n_can: int
    p_fail_gap: float
    p_success_can: float
    p_contra: float
    p_value: float
    if_rejected: str
    excess: tuple[float, float, float]
    predicted_excess: float

    def numbers(self) -> dict[str, Any]:
        return {"alpha_it": self.alpha_it, "alpha_alg": self.alpha_alg, "has_gap": self.has_gap,
                "k_gap": self.k_gap, "n_gap": self.n_gap, "k_can": self.k_can, "n_can": self.n_can,
                "p_fail_gap": self.p_fail_gap, "p_success_can": self.p_success_can, "p_contra": self.p_contra,
                "p_value": self.p_value, "if_rejected": self.if_rejected,
                "excess_error": self.excess[0], "excess_error_ci": list(self.excess[1:]),
                "predicted_excess_error": self.predicted_excess,
                "n_left_out": int((self.runs["region"] == "edge").sum()),
                "n_unresolved": int((self.runs["region"] == "unresolved").sum())}


def _region(alpha: float, th: dict[str, Any], margin: float) -> str:
    it, alg, spec = th.get("alpha_it"), th.get("alpha_alg"), th.get("alpha_spec")
    if it is not None and (alg is None or it < alg):
        upper = math.inf if alg is None else alg
        if it < alpha < upper:
            return "gap"
        return "edge" if upper <= alpha < upper + margin else "can"
    if th.get("order") == "second" and spec is not None and abs(alpha - spec) < margin:
        return "edge"
    return "can"


def gap_test(thresholds: dict[str, Any], table, runs, *, tau: float = TAU, margin: float = MARGIN) -> GapTest:
    """Classify AMP ``runs`` (columns of ``contract.amp_job``) by SE's ``thresholds`` and equilibrium
    ``table`` (``SEPhaseDiagram.tables``), and test the gap claim (module docstring)."""
    import numpy as np
    import pandas as pd
    from scipy.stats import binom

    table = _se_table(table)
    rows = []
    for run in runs.itertuples():
        eq, un = _se_at(table, run.alpha, equilibrium=True), _se_at(table, run.alpha, equilibrium=False)
        resolved = eq is not None and un is not None and np.isfinite([eq["q_diag"], un["eps_plugin"]]).all()
        region = _region(run.alpha, thresholds, margin) if resolved else "unresolved"
        q_bo = float(eq["q_diag"]) if resolved else math.nan
        rows.append({"alpha": run.alpha, "seed": run.seed, "region": region, "q_diag": run.q_diag, "q_diag_bo": q_bo,
                     "success": bool(resolved and abs(run.q_diag - q_bo) <= tau), "eps_test": run.eps_test,
                     "eps_bo": float(eq["eps_plugin"]) if resolved else math.nan,
                     "eps_se_amp": float(un["eps_plugin"]) if resolved else math.nan})
    frame = pd.DataFrame(rows)
    gap, can = frame[frame["region"] == "gap"], frame[frame["region"] == "can"]
    k_gap, n_gap, k_can, n_can = int(gap["success"].sum()), len(gap), int(can["success"].sum()), len(can)
    p_fail = float(binom.cdf(k_gap, n_gap, 0.5)) if n_gap else math.nan
    p_can = float(binom.sf(k_can - 1, n_can, 0.5)) if n_can else math.nan
    p_contra = float(binom.sf(k_gap - 1, n_gap, 0.5)) if n_gap else math.nan
    it, alg = thresholds.get("alpha_it"), thresholds.get("alpha_alg")
    has_gap = it is not None and (alg is None or it < alg)
    if not has_gap:  # nothing for AMP to fail: only "AMP reaches Bayes-optimal where SE says it can"
        p_value, if_rejected = p_can, "supported"
    elif not (n_gap and n_can):  # a side without runs: not testable
        p_value, if_rejected = math.nan, "supported"
    elif p_contra < max(p_fail, p_can):
        p_value, if_rejected = min(1.0, 2.0 * p_contra), "contradicted"
    else:
        p_value, if_rejected = min(1.0, 2.0 * max(p_fail, p_can)), "supported"
    inside = gap if has_gap else can
    excess = _mean_ci([(g["eps_test"] - g["eps_bo"]).to_numpy() for _, g in inside.groupby("alpha")])
    predicted = float((inside["eps_se_amp"] - inside["eps_bo"]).mean()) if len(inside) else math.nan
    return GapTest(alpha_it=it, alpha_alg=alg, has_gap=has_gap,
                   runs=frame, k_gap=k_gap, n_gap=n_gap, k_can=k_can, n_can=n_can, p_fail_gap=p_fail,
                   p_success_can=p_can, p_contra=p_contra, p_value=p_value, if_rejected=if_rejected,
                   excess=excess, predicted_excess=predicted)


def _gap_variant(choice: str, test: GapTest) -> Variant:
    if not math.isfinite(test.p_value):
        return Variant(f"{choice} (not testable: {test.n_gap} runs in the gap, {test.n_can} outside)",
                       verdict="inconclusive")
    return Variant(choice, effect=test.excess[0], p_value=test.p_value, if_rejected=test.if_rejected,
                   if_not_rejected="not supported")


def evaluate_gap(preset: str, pieces: dict[str, Path], claim_dir: Path) -> Evidence:
    """aubin-gap (see the module docstring); writes ``gap.png``."""
    from thermolens import io
    from thermolens.report.claims_committee import plot_gap

    the_plan = plan(preset)
    names = the_plan.names()
    se = _load(SE_STUDY, pieces, names["se"])
    amp = _load(AMP_STUDY, pieces, names["amp_binary"])
    th, table = se.thresholds[BINARY], se.tables[BINARY]
    main = gap_test(th, table, amp.table)

    tests: dict[str, GapTest] = {}
    for tau in TAU_VARIANTS:
        tests[f"success: overlap within {tau:g} of Bayes-optimal (default {TAU:g})"] = gap_test(
            th, table, amp.table, tau=tau)
    for margin in MARGIN_VARIANTS:
        tests[f"runs within {margin:g} above alpha_alg left out (default {MARGIN:g})"] = gap_test(
            th, table, amp.table, margin=margin)
    other_n = _load(AMP_STUDY, pieces, names["amp_binary_n"])
    tests[f"AMP at n = {other_n.config.n} (default {amp.config.n})"] = gap_test(th, table, other_n.table)
    damped = _load(AMP_STUDY, pieces, names["amp_binary_damped"])
    tests[f"AMP damping {damped.config.damping:g}, max_iter {damped.config.max_iter} (default 0, "
          f"{amp.config.max_iter})"] = gap_test(th, table, damped.table)
    gauss = _load(AMP_STUDY, pieces, names["amp_gaussian"])
    tests["Gaussian weights (SE: no gap, continuous specialization): AMP reaches the Bayes-optimal overlap "
          "at every alpha"] = gap_test(se.thresholds[GAUSSIAN], se.tables[GAUSSIAN], gauss.table)
    if BINARY_FINE in se.thresholds:
        tests["SE thresholds at quadrature step 0.05, 300 prior nodes per dimension (default 0.1, 200)"] = gap_test(
            se.thresholds[BINARY_FINE], se.tables[BINARY_FINE], amp.table)
    variants = tuple(_gap_variant(choice, test) for choice, test in tests.items())

    cfg = amp.config
    runs = main.runs
    points = _per_alpha(runs, ("eps_test", "q_diag"))
    success = runs.groupby("alpha")["success"].agg(["sum", "count"]).reset_index()
    points = points.assign(n_success=success["sum"].astype(int).to_numpy())
    fig = plot_gap(_se_table(table), runs, points, th, tau=TAU,
                   amp_label=f"AMP, n = {cfg.n}, {len(cfg.seeds)} seeds (95% bootstrap)")
    io.save_figure(fig, Path(claim_dir) / "gap.png")

    numbers = {
        **main.numbers(), "alpha_spec_uninformed": th["alpha_spec"], "order": th["order"], "alpha_tol": th["alpha_tol"],
        "tau": TAU, "margin": MARGIN, "n": cfg.n, "seeds": list(cfg.seeds), "alphas": list(cfg.alphas),
        "per_alpha": points.assign(region=[_region(a, th, MARGIN) for a in points["alpha"]]).to_dict("records"),
        "n_converged": int(amp.table["converged"].sum()), "n_runs": int(len(amp.table)),
        "variants": {choice: test.numbers() for choice, test in tests.items()},
        "n_not_converged_se": th["n_not_converged"],
    }
    label = "AMP test error above SE's Bayes-optimal error inside the gap (alpha_IT, alpha_alg), mean over runs"
    null_label = "the excess SE predicts for AMP there (uninformed branch minus equilibrium)"
    it, alg = th["alpha_it"], th["alpha_alg"]
    if not main.has_gap:
        return Evidence(
            effect=None, effect_label=label, null=None, null_label=null_label, verdict="not supported",
            variants=variants, numbers=numbers, figure="gap.png",
            reason=f"State evolution finds no computational gap on the scan (alpha_IT = {it}, alpha_alg = {alg}).")
    upper = "beyond the scan" if alg is None else f"{alg:.3f}"
    if not math.isfinite(main.p_value):
        return Evidence(
            effect=main.excess[0], effect_label=label, null=main.predicted_excess, null_label=null_label,
            verdict="inconclusive", variants=variants, numbers=numbers, figure="gap.png",
            reason=(f"SE puts alpha_IT = {it:.3f} below alpha_alg = {upper}, but the AMP grid has {main.n_gap} runs "
                    f"inside the gap and {main.n_can} outside it: one side cannot be tested."))
    decision = Decision(
        test=(f"exact binomial tests over AMP runs (alpha x seed; success = tr(Q)/K within {TAU:g} of SE's "
              f"Bayes-optimal overlap), intersection-union of H0a 'P(success in ({it:.3f}, {upper})) >= 1/2' and "
              f"H0b 'P(success outside, >= {MARGIN:g} from alpha_alg) <= 1/2'; against 'AMP succeeds in the gap' "
              "by the other tail; the smaller p of the two directions, doubled"),
        p_value=main.p_value, if_rejected=main.if_rejected, if_not_rejected="not supported")
    needs_full = None
    if preset == "quick" and min(main.n_gap, main.n_can) < MIN_RUNS:
        needs_full = (f"only {main.n_gap} quick AMP runs inside the gap and {main.n_can} outside; the full preset runs "
                      f"n = 10^4 with 10 seeds on 27 alphas (about 2 h on 2 cores)")
    reason = (f"SE puts alpha_IT = {it:.3f} below alpha_alg = {upper}; AMP from a random start (n = {cfg.n}) reached "
              f"the Bayes-optimal overlap in {main.k_gap}/{main.n_gap} runs inside the gap and {main.k_can}/{main.n_can} "
              f"outside it, with a test error {main.excess[0]:.3f} above Bayes-optimal inside (SE predicts "
              f"{main.predicted_excess:.3f}).")
    return Evidence(
        effect=main.excess[0], effect_label=label, ci=main.excess[1:], null=main.predicted_excess,
        null_label=null_label, decision=decision, variants=variants, numbers=numbers, figure="gap.png",
        needs_full=needs_full, reason=reason,
    )


# --------------------------------------------------------------------------------------------------
# the claims


def _pieces(keys: tuple[str, ...]):
    def pieces(preset: str) -> list[Piece]:
        the_plan = plan(preset)
        return [the_plan.piece(key) for key in keys]

    return pieces


def _seeds(config) -> str:
    return ",".join(str(s) for s in config.seeds)


def _command_specialization(preset: str) -> str:
    # phase-diagram draws its AMP test sets with 20 000 samples; the claim reads only q_d and the Gibbs
    # error at the overlaps, which do not depend on the test set
    p = plan(preset)
    g, s = p.amp_gaussian, p.se_setting(GAUSSIAN)
    return (f"thermolens committee phase-diagram --K 2 --prior gaussian --alpha-max {s.alpha_max:g} --step {s.step:g} "
            f"--amp-alpha {','.join(f'{a:g}' for a in g.alphas)} --n {g.n} --seeds {_seeds(g)} "
            f"--out runs/committee-k2-gaussian --json")


def _command_gap(preset: str) -> str:
    p = plan(preset)
    b = p.amp_binary
    s = p.se_setting(BINARY)
    return (f"thermolens committee thresholds --K 2 --prior binary --alpha-min {s.alpha_min:g} --alpha-max "
            f"{s.alpha_max:g} --step {s.step:g} --alpha-tol {s.alpha_tol:g} --json && "
            f"for a in {' '.join(f'{a:g}' for a in b.alphas)}; do thermolens committee amp --K 2 --prior binary "
            f"--n {b.n} --alpha $a --seeds {_seeds(b)} --n-test {b.n_test} --json; done")


CLAIMS: tuple[Claim, ...] = (
    Claim(
        id="aubin-specialization", source=SOURCE,
        statement=("For K = 2 the committee machine's hidden units specialize: the overlaps leave the "
                   "permutation-symmetric fixed point (q_d = 0) for a specialized one at a threshold alpha_spec "
                   "(state evolution; AMP at finite n follows)."),
        pieces=_pieces(("se", "amp_gaussian")), evaluate=evaluate_specialization, command=_command_specialization,
    ),
    Claim(
        id="aubin-gap", source=SOURCE,
        statement=("With binary weights (K = 2) the information-theoretic threshold alpha_IT lies below the "
                   "algorithmic one alpha_alg, and AMP reaches the Bayes-optimal error exactly where state "
                   "evolution says it can: not inside (alpha_IT, alpha_alg), yes outside."),
        pieces=_pieces(("se", "amp_binary", "amp_binary_n", "amp_binary_damped", "amp_gaussian")),
        evaluate=evaluate_gap, command=_command_gap,
    ),
)
