"""``thermolens committee``: state evolution, thresholds, AMP and the phase diagram of the committee
machine (Aubin et al. 2018, arXiv:1806.05451). Thin: parse -> config -> one library call -> save."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import typer

from thermolens.cli._common import console, handle_errors, parse_grid, parse_ints, print_json, track

app = typer.Typer(help="Committee machine: state evolution, thresholds, AMP, phase diagram.", no_args_is_help=True)

_K = typer.Option(2, "--K", help="Number of hidden units: 1, 2 (exact SE); odd 3..11 (committee-symmetric SE, "
                  "both priors).")
_PRIOR = typer.Option("gaussian", "--prior", help="Teacher weight prior: gaussian or binary (Rademacher).")
_ACT = typer.Option("sign", "--activation", help="Hidden and output activation (the sign committee).")
_JSON = typer.Option(False, "--json", help="Print one JSON object with the headline numbers to stdout.")
_QUIET = typer.Option(False, "--quiet", help="No progress bar.")
_OVERWRITE = typer.Option(False, "--overwrite", help="Allow writing into a non-empty directory of another kind.")


def _record(out: Path | None, kind: str, config: dict, seed: int | None = None):
    """A RunRecorder when ``--out`` is given, else a do-nothing context."""
    import contextlib

    from thermolens import io

    if out is None:
        return contextlib.nullcontext(None)
    run_dir = io.prepare_run_dir(out, kind=kind, overwrite=config.get("overwrite", False))
    return io.RunRecorder(run_dir, kind, io.command_line(), config, seed=seed)


def _se_payload(curve) -> dict:
    return {
        "alpha": curve.alpha,
        "q": curve.q,
        "q_d": [None if p is None else p.q_d for p in curve.equilibrium_points()],
        "q_a": [None if p is None else p.q_a for p in curve.equilibrium_points()],
        "eps_g": curve.eps_g,
        "free_entropy": curve.free_entropy,
        "equilibrium": list(curve.equilibrium),
        "branches": {
            name: {"eps_g": [p.eps_g for p in curve.branch(name)],
                   "free_entropy": [p.free_entropy for p in curve.branch(name)],
                   "q_d": [p.q_d for p in curve.branch(name)],
                   "q_a": [p.q_a for p in curve.branch(name)],
                   "residual": [p.residual for p in curve.branch(name)],
                   "converged": [p.converged for p in curve.branch(name)]}
            for name in ("uninformed", "informed")
        },
        "n_not_converged": curve.n_failed,
    }


def _warn_failures(curve) -> None:
    for name in ("uninformed", "informed"):
        for p in curve.branch(name):
            if not p.converged and p.n_iter > 0:
                console.print(f"[yellow]warning:[/] {name} fixed point at alpha={p.alpha:.4g} did not converge "
                              f"(residual {p.residual:.2e} after {p.n_iter} iterations); reported as null")


@app.command("se")
@handle_errors
def se(
    K: int = _K,
    prior: str = _PRIOR,
    activation: str = _ACT,
    alpha: str = typer.Option("0.1:4:40", "--alpha", help="alpha grid: start:stop:count or a,b,c (>= 0)."),
    tol: float = typer.Option(1e-9, "--tol", help="Fixed-point residual max|F(Q) - Q| accepted."),
    max_iter: int = typer.Option(4000, "--max-iter", help="Iterations per fixed point before giving up."),
    out: Path | None = typer.Option(None, "--out", help="Write a run directory (manifest, se.parquet)."),
    overwrite: bool = _OVERWRITE,
    json_out: bool = _JSON,
    quiet: bool = _QUIET,
) -> None:
    """Replica free entropy and state evolution, both branches (uninformed / informed)."""
    from thermolens import io
    from thermolens.committee import SEConfig, SymmetricConfig, state_evolution, symmetric_state_evolution

    alphas = parse_grid(alpha, name="alpha", minimum=0.0)
    if K >= 3:  # committee-symmetric ansatz (odd K <= 11; binary prior K = 3); K = 1, 2 exact
        config = SymmetricConfig(K=K, prior=prior, activation=activation, tol=tol, max_iter=min(max_iter, 300))
        solver = symmetric_state_evolution
    else:
        config = SEConfig(K=K, prior=prior, activation=activation, tol=tol, max_iter=max_iter)
        solver = state_evolution
    with _record(out, "committee-se", {"config": config, "alpha": alphas, "overwrite": overwrite}) as rec:
        start = time.perf_counter()
        curve = solver(
            alphas, config, progress=lambda it: track(it, total=2 * len(alphas), description="state evolution", quiet=quiet)
        )
        if rec is not None:
            rec.timings["state_evolution"] = time.perf_counter() - start
            io.write_table(rec.run_dir / "se.parquet", curve.to_frame())
            rec.summary.update(n_alpha=len(alphas), n_not_converged=curve.n_failed)
    _warn_failures(curve)
    if json_out:
        print_json(_se_payload(curve))
    else:
        console.print(f"state evolution K={K} {prior}: {len(alphas)} alphas, {curve.n_failed} fixed points not converged")


@app.command("thresholds")
@handle_errors
def thresholds(
    K: int = _K,
    prior: str = _PRIOR,
    activation: str = _ACT,
    alpha_max: float = typer.Option(3.0, "--alpha-max", help="Upper end of the alpha scan."),
    alpha_min: float = typer.Option(0.0, "--alpha-min", help="The scan starts one step above this."),
    step: float = typer.Option(0.1, "--step", help="Grid step of the bracketing scan."),
    alpha_tol: float = typer.Option(1e-4, "--alpha-tol", help="Precision of the refined thresholds."),
    out: Path | None = typer.Option(None, "--out", help="Write a run directory (manifest, scan.parquet)."),
    overwrite: bool = _OVERWRITE,
    json_out: bool = _JSON,
    quiet: bool = _QUIET,
) -> None:
    """Specialization, information-theoretic and algorithmic thresholds and the order of the transition."""
    from thermolens import io
    from thermolens.committee import SEConfig, SymmetricConfig, find_thresholds

    config = (SymmetricConfig if K >= 3 else SEConfig)(K=K, prior=prior, activation=activation)
    n_grid = max(1, int(round((alpha_max - alpha_min) / step))) if step > 0 else 1
    with _record(out, "committee-thresholds", {"config": config, "alpha_min": alpha_min, "alpha_max": alpha_max,
                                               "step": step,
                                               "alpha_tol": alpha_tol, "overwrite": overwrite}) as rec:
        start = time.perf_counter()
        result = find_thresholds(
            config, alpha_min=alpha_min, alpha_max=alpha_max, step=step, alpha_tol=alpha_tol,
            progress=lambda it: track(it, total=2 * n_grid, description="scan", quiet=quiet),
        )
        if rec is not None:
            rec.timings["thresholds"] = time.perf_counter() - start
            io.write_table(rec.run_dir / "scan.parquet", result.scan.to_frame())
            rec.summary.update(result.summary())
    _warn_failures(result.scan)
    if json_out:
        print_json(result.summary())
    else:
        s = result.summary()
        console.print(", ".join(f"{k}={s[k]}" for k in ("alpha_spec", "alpha_it", "alpha_alg", "order")))


_STARTS = typer.Option("random,informed", "--start", help="AMP starts: random (uninformed), informed (planted at "
                       "overlap 0.99 with the teacher), or both.")
_SUCCESS = typer.Option(0.5, "--success-q", help="A run succeeds when its aligned q_d ends >= this.")
_K_AMP = typer.Option(2, "--K", help="Hidden units: 1, 2 (exact channel) or odd 3..11 (committee-symmetric).")
_MAX_ITER = typer.Option(300, "--max-iter", help="AMP iterations at most.")
_DAMPING = typer.Option(0.0, "--damping", help="Fraction of the old estimate kept per iteration.")
_N_TEST = typer.Option(20000, "--n-test", help="Fresh samples for the test error.")
_SE = typer.Option(True, "--se/--no-se", help="Solve state evolution from the same starts at every alpha.")
_SEEDS = "One instance per seed: 'a,b,c' or 'start:stop'."


def _gap_config(K, prior, activation, alpha, n, seeds, start, max_iter, damping, n_test, success_q, se, **extra):
    from thermolens.committee import AMPConfig
    from thermolens.committee.gap import GapConfig

    amp = AMPConfig(K=K, prior=prior, activation=activation, max_iter=max_iter,
                    damping=damping, n_test=n_test)
    return GapConfig(K=K, prior=prior, alphas=tuple(parse_grid(alpha, name="alpha", positive=True)),
                     ns=tuple(parse_ints(n, name="n")), seeds=tuple(parse_ints(seeds, name="seeds")),
                     starts=tuple(x.strip() for x in start.split(",") if x.strip()), success_q=success_q,
                     amp=amp, se=se, **extra)


def _run_gap(config, out: Path | None, kind: str, overwrite: bool, quiet: bool, figure: bool):
    from thermolens import io
    from thermolens.committee.gap import gap_study

    def progress(it, total, description):
        return track(it, total=total, description=description, quiet=quiet)

    with _record(out, kind, {"config": config, "overwrite": overwrite}, seed=config.seeds[0]) as rec:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            study = gap_study(config, progress=progress)
        for w in sorted({str(w.message) for w in caught}):
            console.print(f"[yellow]warning:[/] {w}")
        summary = study.summary()
        if rec is not None:
            rec.timings.update(study.seconds)
            io.write_table(rec.run_dir / "amp.parquet", study.amp)
            if len(study.se):
                io.write_table(rec.run_dir / "se.parquet", study.se)
            if len(study.learners):
                io.write_table(rec.run_dir / "learners.parquet", study.learners)
            io.write_json(rec.run_dir / "gap.json", summary)
            if figure:
                from thermolens.report.committee import gap_figure

                io.save_figure(gap_figure(study), rec.run_dir / "gap.png")
            rec.summary.update({k: summary[k] for k in ("thresholds", "crossover")})
            summary["run_dir"] = str(rec.run_dir)
    return study, summary


def _print_gap(study, summary) -> None:
    c = study.config
    console.print(f"committee K={c.K} {c.prior}, n={summary['n']}, {len(c.seeds)} seeds "
                  f"(success: q_d >= {c.success_q:g})")
    for j, a in enumerate(c.alphas):
        parts = [f"alpha={a:.4g}"]
        for start in c.starts:
            parts.append(f"{start}: success {summary[f'success_{start}'][j]:.2f}, "
                         f"eps {summary[f'eps_test_{start}'][j]:.4f}")
        for branch in ("uninformed", "informed"):
            if branch in summary.get("se", {}):
                v = summary["se"][branch]["eps_plugin"][j]
                parts.append(f"SE {branch} eps_plugin " + ("nan" if v is None else f"{v:.4f}"))
        console.print("  " + "; ".join(parts))
    th = summary["thresholds"]
    marks = [f"{k}{'<=' if k == 'alpha_it' and th.get('alpha_it_upper_bound') else '='}{th[k]:.4g}"
             for k in ("alpha_it", "alpha_alg", "alpha_spinodal") if th.get(k) is not None]
    if marks:
        console.print("  SE on the grid: " + ", ".join(marks))


@app.command("amp")
@handle_errors
def amp(
    K: int = _K_AMP,
    prior: str = _PRIOR,
    activation: str = _ACT,
    n: str = typer.Option("2000", "--n", help="Input dimension, or a ladder 'n1,n2,...'."),
    alpha: str = typer.Option("2.5", "--alpha", help="alpha grid: start:stop:count or a,b,c (> 0), m = alpha n."),
    seeds: str = typer.Option("0,1,2", "--seeds", help=_SEEDS),
    start: str = _STARTS,
    max_iter: int = _MAX_ITER,
    damping: float = _DAMPING,
    n_test: int = _N_TEST,
    success_q: float = _SUCCESS,
    se: bool = _SE,
    out: Path | None = typer.Option(None, "--out", help="Write a run directory (manifest, amp/se parquet, gap.json)."),
    overwrite: bool = _OVERWRITE,
    json_out: bool = _JSON,
    quiet: bool = _QUIET,
) -> None:
    """AMP on finite instances from random and informed starts, over alpha, n and seeds, beside state evolution
    from the same starts."""
    config = _gap_config(K, prior, activation, alpha, n, seeds, start, max_iter, damping, n_test, success_q, se)
    study, summary = _run_gap(config, out, "committee-amp", overwrite, quiet, figure=False)
    if json_out:
        print_json(summary)
    else:
        _print_gap(study, summary)


@app.command("gap")
@handle_errors
def gap(
    K: int = _K_AMP,
    prior: str = typer.Option("binary", "--prior", help="Teacher weight prior: gaussian or binary (Rademacher)."),
    activation: str = _ACT,
    n: str = typer.Option("1000,2000", "--n", help="Input dimension, or a ladder 'n1,n2,...'."),
    alpha: str = typer.Option("1.4:2.4:6", "--alpha", help="alpha grid: start:stop:count or a,b,c (> 0)."),
    seeds: str = typer.Option("0:10", "--seeds", help=_SEEDS),
    start: str = _STARTS,
    max_iter: int = _MAX_ITER,
    damping: float = _DAMPING,
    n_test: int = _N_TEST,
    success_q: float = _SUCCESS,
    learners: str = typer.Option("adam", "--learners", help="Gradient learners on the same instances: adam, gd, "
                                 "both ('adam,gd') or 'none'."),
    learner_seeds: int = typer.Option(3, "--learner-seeds", help="Learners run on the first this many seeds."),
    learner_n: int | None = typer.Option(None, "--learner-n", help="n of the learners' instances (default: smallest)."),
    learner_alpha: str | None = typer.Option(None, "--learner-alpha", help="alphas (on the grid) where the learners "
                                             "run, 'a,b,c' (default: all)."),
    se: bool = _SE,
    out: Path = typer.Option(Path("runs/gap"), "--out", help="Run directory (gap.png, gap.json, parquet tables)."),
    overwrite: bool = _OVERWRITE,
    json_out: bool = _JSON,
    quiet: bool = _QUIET,
) -> None:
    """The computational gap on one figure: SE (both branches), AMP from random and informed starts on an n
    ladder with the finite-size crossover, and gradient learners on the same instances."""
    methods = () if learners.strip() == "none" else tuple(x.strip() for x in learners.split(",") if x.strip())
    config = _gap_config(K, prior, activation, alpha, n, seeds, start, max_iter, damping, n_test, success_q, se,
                         learners=methods, learner_seeds=learner_seeds, learner_n=learner_n,
                         learner_alphas=None if learner_alpha is None else tuple(
                             parse_grid(learner_alpha, name="learner-alpha", positive=True)))
    study, summary = _run_gap(config, out, "committee-gap", overwrite, quiet, figure=True)
    if json_out:
        print_json(summary)
    else:
        _print_gap(study, summary)
        console.print(f"wrote {out}/gap.png")


@app.command("phase-diagram")
@handle_errors
def phase_diagram(
    K: int = _K,
    prior: str = _PRIOR,
    activation: str = _ACT,
    alpha_max: float = typer.Option(4.0, "--alpha-max", help="SE scan from --step to this alpha."),
    step: float = typer.Option(0.1, "--step", help="SE grid step (also brackets the thresholds)."),
    amp_alpha: str = typer.Option("0.5,1,1.5,3,4", "--amp-alpha", help="alphas at which AMP is run."),
    n: int = typer.Option(2000, "--n", help="AMP input dimension."),
    seeds: str = typer.Option("0,1,2", "--seeds", help="AMP seeds per alpha."),
    large_k_alpha: str = typer.Option("0.5:12:24", "--large-k-alpha", help="alpha/K grid of the large-K panel "
                                      "(Gaussian prior only)."),
    out: Path = typer.Option(Path("runs/committee"), "--out", help="Run directory."),
    overwrite: bool = _OVERWRITE,
    json_out: bool = _JSON,
    quiet: bool = _QUIET,
) -> None:
    """State evolution (both branches, thresholds marked) and AMP points on one figure; overlaps; large K."""
    import pandas as pd

    from thermolens import io
    from thermolens.committee import (
        AMPConfig, SEConfig, amp_over_seeds, find_thresholds, large_k_state_evolution,
    )
    from thermolens.report.committee import phase_diagram_figure

    amp_alphas = parse_grid(amp_alpha, name="amp-alpha", positive=True)
    seed_list = parse_ints(seeds, name="seeds")
    lk_alphas = parse_grid(large_k_alpha, name="large-k-alpha", minimum=0.0) if prior == "gaussian" else []
    se_config = SEConfig(K=K, prior=prior, activation=activation)
    amp_config = AMPConfig(K=K, prior=prior, activation=activation)
    config = {"se": se_config, "amp": amp_config, "alpha_max": alpha_max, "step": step, "amp_alpha": amp_alphas, "n": n,
              "seeds": seed_list, "large_k_alpha": lk_alphas, "overwrite": overwrite}
    with _record(out, "committee-phase-diagram", config, seed=seed_list[0]) as rec:
        t0 = time.perf_counter()
        n_grid = max(1, int(round(alpha_max / step))) if step > 0 else 1
        th = find_thresholds(se_config, alpha_max=alpha_max, step=step,
                             progress=lambda it: track(it, total=2 * n_grid, description="SE", quiet=quiet))
        curve = th.scan
        rec.timings["state_evolution"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        amps = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for a in track(amp_alphas, total=len(amp_alphas), description="AMP", quiet=quiet):
                amps.append(amp_over_seeds(a, n, seed_list, amp_config))
        rec.timings["amp"] = time.perf_counter() - t0
        large_k = large_k_state_evolution(lk_alphas) if lk_alphas else None
        io.write_table(rec.run_dir / "se.parquet", curve.to_frame())
        io.write_table(rec.run_dir / "amp.parquet", pd.concat([s.to_frame() for s in amps], ignore_index=True))
        if large_k is not None:
            io.write_table(rec.run_dir / "large_k.parquet", large_k.to_frame())
        io.save_figure(phase_diagram_figure(curve, amps, th, large_k), rec.run_dir / "phase_diagram.png")
        rec.summary.update(th.summary())
        headline = {**th.summary(), "run_dir": str(rec.run_dir),
                    "amp": [{"alpha": s.alpha, "eps_test": s.eps_test[0], "eps_test_err": s.eps_test[1],
                             "q_d": s.q_d[0], "q_a": s.q_a[0]} for s in amps]}
    _warn_failures(curve)
    if json_out:
        print_json(headline)
    else:
        console.print(f"wrote {out}/phase_diagram.png")
