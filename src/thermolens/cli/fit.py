"""``thermolens fit powerlaw FILE`` and ``thermolens fit branching FILE``."""

from __future__ import annotations

import re
import time
from pathlib import Path

import typer

from thermolens.cli._common import console, handle_errors, print_json

app = typer.Typer(help="Fit power laws (with goodness of fit and model comparison) and branching ratios.", no_args_is_help=True)

_SPLIT = re.compile(r"[,;\s]+")


def read_column(path: Path, column: str | None) -> list[float]:
    """Numbers from a text file: one value per line, or columns separated by commas/semicolons/whitespace,
    with an optional header line; ``#`` starts a comment. ``column`` is a 0-based index or a header name."""
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; pass a text file with one number per line")
    header: list[str] | None = None
    rows: list[list[str]] = []
    for lineno, raw in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = [f for f in _SPLIT.split(line) if f]
        if header is None and not rows:
            try:
                [float(f) for f in fields]
            except ValueError:
                header = fields
                continue
        if rows and len(fields) != len(rows[0]):
            raise ValueError(f"{path}:{lineno} has {len(fields)} columns but earlier lines have {len(rows[0])}")
        rows.append(fields)
    if not rows:
        raise ValueError(f"{path} holds no numbers; write one value per line (an optional header line is allowed)")
    n_cols = len(rows[0])
    if column is None:
        if n_cols > 1:
            names = ", ".join(header) if header else f"0..{n_cols - 1}"
            raise ValueError(f"{path} has {n_cols} columns ({names}); choose one with --column")
        index = 0
    elif column.isdigit():
        index = int(column)
    elif header is not None and column in header:
        index = header.index(column)
    else:
        known = ", ".join(header) if header else "no header"
        raise ValueError(f"column {column!r} not found in {path} ({known}); give a 0-based index or a header name")
    if index >= n_cols:
        raise ValueError(f"--column {index} is out of range: {path} has {n_cols} columns (0-based)")
    values = []
    for k, row in enumerate(rows):
        try:
            values.append(float(row[index]))
        except ValueError:
            raise ValueError(f"{path}: value {row[index]!r} in data row {k + 1} is not a number") from None
    return values


def _out_option():
    return typer.Option(None, "--out", help="Write a run directory (manifest, tables, figure) here.")


@app.command("powerlaw")
@handle_errors
def powerlaw(
    file: Path = typer.Argument(..., help="Text file: one value per line, or columns (pick with --column)."),
    column: str = typer.Option(None, "--column", help="Column to fit: 0-based index or header name."),
    discrete: bool = typer.Option(False, "--discrete", help="Integer data (Hurwitz-zeta normalisation)."),
    xmin: float = typer.Option(None, "--xmin", help="Fix xmin instead of searching every distinct value by KS."),
    xmax: float = typer.Option(None, "--xmax", help="Upper truncation (data above it are dropped)."),
    bootstrap: int = typer.Option(
        None, "--bootstrap", help="Bootstrap replicates for the goodness-of-fit p-value (2500 gives +-0.01)."
    ),
    compare: str = typer.Option(
        None,
        "--compare",
        help="Comma-separated alternatives: exponential,lognormal,truncated_power_law,stretched_exponential.",
    ),
    jobs: int = typer.Option(None, "--jobs", help="Processes for the bootstrap (default: all cores)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap."),
    out: Path = _out_option(),
    overwrite: bool = typer.Option(False, "--overwrite", help="Allow --out to replace a directory of another kind."),
    as_json: bool = typer.Option(False, "--json", help="Print the headline numbers as one JSON object on stdout."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Fit a power law to FILE (Clauset et al. 2009): alpha, xmin, KS; bootstrap p-value; likelihood ratios."""
    from thermolens import io, stats

    if bootstrap is not None and bootstrap < 1:
        raise ValueError(f"--bootstrap {bootstrap}: give at least 1 replicate (2500 for p to +-0.01), or leave it out")
    names = [c.strip() for c in compare.split(",") if c.strip()] if compare else []
    unknown = [c for c in names if c not in stats.ALTERNATIVES]
    if unknown:
        raise ValueError(f"unknown --compare {', '.join(unknown)}; choose from {', '.join(stats.ALTERNATIVES)}")
    x = read_column(file, column)
    config = {"file": str(file), "column": column, "discrete": discrete, "xmin": xmin, "xmax": xmax,
              "bootstrap": bootstrap, "compare": names, "seed": seed}
    run_dir = io.prepare_run_dir(out, kind="fit-powerlaw", overwrite=overwrite) if out else None
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    fit = stats.fit_power_law(x, discrete=discrete, xmin=xmin, xmax=xmax)
    timings["fit_s"] = time.perf_counter() - t0
    gof = None
    if bootstrap is not None:
        t0 = time.perf_counter()
        gof = _bootstrap(stats, fit, x, bootstrap, seed, jobs, quiet)
        timings["bootstrap_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    comparisons = [stats.compare(fit, x, name) for name in names]
    timings["compare_s"] = time.perf_counter() - t0
    summary = {
        "alpha": fit.alpha, "alpha_stderr": fit.alpha_stderr, "xmin": fit.xmin, "xmax": fit.xmax,
        "n": fit.n, "n_tail": fit.n_tail, "ks_distance": fit.ks_distance, "discrete": fit.discrete,
        "alpha_at_bound": fit.alpha_at_bound,
        "p_value": None if gof is None else gof.p_value,
        "p_stderr": None if gof is None else gof.p_stderr,
        "n_boot": None if gof is None else gof.n_boot,
        "comparisons": {
            c.alternative: {"R": c.loglikelihood_ratio, "normalized_R": c.normalized_ratio, "p": c.p_value,
                            "nested": c.nested, "favours": c.favours, "params": c.alternative_fit.params}
            for c in comparisons
        },
    }
    if run_dir is not None:
        _write_powerlaw_run(run_dir, config, seed, x, fit, gof, comparisons, timings, summary)
    console.print(
        f"alpha = {fit.alpha:.4f} ± {fit.alpha_stderr:.4f}, xmin = {fit.xmin:g}, n_tail = {fit.n_tail}/{fit.n}, "
        f"KS D = {fit.ks_distance:.4f}" + ("" if gof is None else f", p = {gof.p_value:.3f} ± {gof.p_stderr:.3f}")
    )
    for c in comparisons:
        console.print(f"  vs {c.alternative}: R = {c.loglikelihood_ratio:.3f}, p = {c.p_value:.3g} -> {c.favours}")
    if as_json:
        print_json(summary)


def _bootstrap(stats, fit, x, n_boot, seed, jobs, quiet):
    if quiet:
        return stats.goodness_of_fit(fit, x, n_boot=n_boot, seed=seed, n_jobs=jobs)
    from rich.progress import Progress

    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("bootstrap", total=n_boot)
        return stats.goodness_of_fit(
            fit, x, n_boot=n_boot, seed=seed, n_jobs=jobs, progress=lambda done: progress.update(task, completed=done)
        )


def _write_powerlaw_run(run_dir, config, seed, x, fit, gof, comparisons, timings, summary):
    import pandas as pd

    from thermolens import io
    from thermolens.report.stats import plot_ccdf

    with io.RunRecorder(run_dir, "fit-powerlaw", io.command_line(), config, seed=seed) as rec:
        io.write_table(run_dir / "fit.parquet", fit.to_frame())
        if comparisons:
            io.write_table(run_dir / "comparisons.parquet", pd.DataFrame([
                {"alternative": c.alternative, "R": c.loglikelihood_ratio, "normalized_R": c.normalized_ratio,
                 "p": c.p_value, "nested": c.nested, "favours": c.favours, "loglikelihood": c.alternative_fit.loglikelihood,
                 "params": io.dumps_json(c.alternative_fit.params, indent=None)} for c in comparisons
            ]))
        if gof is not None:
            io.write_table(run_dir / "bootstrap.parquet", pd.DataFrame({"ks_synthetic": gof.ks_synthetic}))
        ax = plot_ccdf(x, fit, comparisons)
        io.save_figure(ax.figure, run_dir / "ccdf.png")
        rec.timings.update(timings)
        rec.summary.update(summary)


@app.command("branching")
@handle_errors
def branching(
    file: Path = typer.Argument(..., help="Text file with the activity (counts per time step), one per line or in columns."),
    column: str = typer.Option(None, "--column", help="Column to use: 0-based index or header name."),
    kmax: int = typer.Option(..., "--kmax", help="Largest lag k of the coefficients r_k (a few autocorrelation times)."),
    kmin: int = typer.Option(1, "--kmin", help="Smallest lag k."),
    method: str = typer.Option("ts", "--method", help="Coefficients: ts (trial-separated) or sm (stationary mean)."),
    fit: str = typer.Option("exponential", "--fit", help="exponential (b m^k) or exponential_offset (b m^k + c)."),
    dt: float = typer.Option(1.0, "--dt", help="Time step; tau is reported in its units."),
    bootstrap: int = typer.Option(100, "--bootstrap", help="Bootstrap replicates (blocks of the series) for the CIs."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap."),
    out: Path = _out_option(),
    overwrite: bool = typer.Option(False, "--overwrite", help="Allow --out to replace a directory of another kind."),
    as_json: bool = typer.Option(False, "--json", help="Print the headline numbers as one JSON object on stdout."),
    quiet: bool = typer.Option(False, "--quiet", help="Accepted for uniformity (this command has no progress bar)."),
) -> None:
    """Branching ratio of an activity series by multistep regression (Wilting & Priesemann 2018)."""
    from thermolens import io, stats

    if bootstrap < 1:
        raise ValueError(f"--bootstrap {bootstrap}: give at least 1 replicate (100 is the default)")
    activity = read_column(file, column)
    config = {"file": str(file), "column": column, "kmax": kmax, "kmin": kmin, "method": method, "fit": fit,
              "dt": dt, "bootstrap": bootstrap, "seed": seed}
    run_dir = io.prepare_run_dir(out, kind="fit-branching", overwrite=overwrite) if out else None
    t0 = time.perf_counter()
    res = stats.branching_ratio(activity, kmax, kmin=kmin, method=method, fit=fit, dt=dt, n_boot=bootstrap, seed=seed)
    elapsed = time.perf_counter() - t0
    summary = {"m": res.m, "m_ci": list(res.m_ci), "tau": res.tau, "tau_ci": list(res.tau_ci),
               "m_conventional": res.m_conventional, "amplitude": res.amplitude, "offset": res.offset,
               "fit": res.fit, "method": res.method, "n_timesteps": res.n_timesteps, "confidence": res.confidence}
    if run_dir is not None:
        from thermolens.report.stats import plot_branching

        with io.RunRecorder(run_dir, "fit-branching", io.command_line(), config, seed=seed) as rec:
            io.write_table(run_dir / "coefficients.parquet", res.to_frame())
            io.save_figure(plot_branching(res).figure, run_dir / "coefficients.png")
            rec.timings["fit_s"] = elapsed
            rec.summary.update(summary)
    console.print(
        f"m = {res.m:.5f} [{res.m_ci[0]:.5f}, {res.m_ci[1]:.5f}], tau = {res.tau:.4g}, "
        f"conventional r_1 = {res.m_conventional:.5f}"
    )
    if as_json:
        print_json(summary)
