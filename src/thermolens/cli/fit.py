"""``thermolens fit powerlaw FILE`` and ``thermolens fit branching FILE``."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from thermolens.cli._common import console, handle_errors, print_json

if TYPE_CHECKING:
    import numpy as np

app = typer.Typer(help="Fit power laws (with goodness of fit and model comparison) and branching ratios.", no_args_is_help=True)

_SPLIT = re.compile(r"[,;\s]+")


def read_values(path: Path, column: str | None) -> np.ndarray:
    """The numbers in FILE as a 1-D array, by suffix: ``.npy`` (memory-mapped, not loaded), ``.parquet``
    (only the chosen column is read) or text (``read_column``). Refuses, with a message saying what to do:
    non-numeric, boolean or complex data, arrays that are not 1-D (a 2-D ``.npy`` needs ``--column``, a
    0-based column index), empty files, and NaN/inf or missing values (how many and the first row)."""
    import numpy as np

    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; pass a .npy, .parquet or text file")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        values, where = _read_npy(path, column)
    elif suffix in (".parquet", ".pq"):
        values, where = _read_parquet(path, column)
    else:
        values = np.asarray(read_column(path, column), dtype=np.float64)
        where = f"{path}" if column is None else f"column {column} of {path}"
    _check_finite(values, where)
    return values


def _check_finite(values: np.ndarray, where: str) -> None:
    """Raise when ``values`` hold NaN or inf, with their count and the first row (block by block: no copy)."""
    import numpy as np

    step = 1 << 22
    count, first = 0, -1
    for lo in range(0, values.size, step):
        bad = ~np.isfinite(values[lo : lo + step])
        k = int(np.count_nonzero(bad))
        if k and first < 0:
            first = lo + int(np.argmax(bad))
        count += k
    if count:
        raise ValueError(
            f"{where} has {count} NaN or infinite values (first at row {first}, 0-based); remove them"
        )


def _numeric_kind(dtype: np.dtype) -> bool:
    return dtype.kind in "iuf"  # integers and floats; not bool, complex, strings, objects, dates or records


def _read_npy(path: Path, column: str | None) -> tuple[np.ndarray, str]:
    """A 1-D view of the .npy file (memory-mapped) and how to name it in messages."""
    import numpy as np

    try:
        with path.open("rb") as f:
            np.lib.format.read_magic(f)  # raises unless the file starts as an .npy file does
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Python objects" in str(exc):
            raise ValueError(f"{path} holds Python objects (dtype object); save a numeric array, "
                             "e.g. np.save(path, x.astype(float))") from None
        raise ValueError(f"{path} is not a readable .npy file ({exc})") from None
    except (OSError, EOFError) as exc:
        raise ValueError(f"{path} is not a readable .npy file ({exc})") from None
    if not isinstance(arr, np.ndarray):
        # a ValueError, not a TypeError: the command line turns it into exit code 2 and this one line
        message = f"{path} is not a single array (an .npz archive?); save one array with np.save"
        raise ValueError(message)  # noqa: TRY004
    if not _numeric_kind(arr.dtype):
        raise ValueError(f"{path} has dtype {arr.dtype}, not real numbers; save an integer or float array")
    if arr.ndim == 2:
        if column is None:
            raise ValueError(f"{path} is a 2-D array of shape {arr.shape}; choose a column with --column "
                             f"(0..{arr.shape[1] - 1}) or save a 1-D array")
        if not column.isdigit() or int(column) >= arr.shape[1]:
            raise ValueError(f"--column {column} is not a column of {path} (shape {arr.shape}); "
                             f"give a 0-based index 0..{arr.shape[1] - 1}")
        arr, where = arr[:, int(column)], f"column {column} of {path}"
    elif arr.ndim == 1:
        if column is not None:
            raise ValueError(f"{path} is a 1-D array; --column picks a column of a 2-D array, leave it out")
        where = f"{path}"
    else:
        raise ValueError(f"{path} is a {arr.ndim}-D array of shape {arr.shape}; save a 1-D array "
                         "(or a 2-D one and pick a column with --column)")
    if arr.size == 0:
        raise ValueError(f"{path} holds no numbers (shape {arr.shape})")
    return arr, where


def _read_parquet(path: Path, column: str | None) -> tuple[np.ndarray, str]:
    """One numeric column of the Parquet file (only that column is read) and how to name it in messages."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as exc:
        raise ValueError(f"{path} is not a readable Parquet file ({exc})") from None
    numeric = [f.name for f in schema if pa.types.is_integer(f.type) or pa.types.is_floating(f.type)]
    if column is None:
        if len(numeric) != 1:
            found = "no numeric column"
            if numeric:
                found = f"{len(numeric)} numeric columns ({', '.join(numeric)})"
            raise ValueError(f"{path} has {found} among {', '.join(schema.names)}; choose one with --column")
        name = numeric[0]
    elif column in schema.names:
        name = column
    elif column.isdigit() and int(column) < len(schema.names):
        name = schema.names[int(column)]
    else:
        raise ValueError(f"column {column!r} not found in {path} ({', '.join(schema.names)}); "
                         "give a column name or a 0-based index")
    if name not in numeric:
        raise ValueError(f"column {name!r} of {path} has type {schema.field(name).type}, not real numbers; "
                         "pick an integer or float column")
    values = pq.read_table(path, columns=[name]).column(0)
    where = f"column {name!r} of {path}"
    if values.null_count:
        first = int(np.argmax(pc.is_null(values).to_numpy(zero_copy_only=False)))
        raise ValueError(f"{where} has {values.null_count} missing (null) values "
                         f"(first at row {first}, 0-based); drop them before fitting")
    if len(values) == 0:
        raise ValueError(f"{path} holds no numbers ({where} is empty)")
    return values.to_numpy(), where


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
    file: Path = typer.Argument(
        ..., help="Values to fit: .npy array, .parquet table, or text (one value per line, or columns)."
    ),
    column: str = typer.Option(
        None, "--column", help="Column to fit: 0-based index or header/column name (index only for 2-D .npy)."
    ),
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
    import numpy as np

    from thermolens import io, stats

    if bootstrap is not None and bootstrap < 1:
        raise ValueError(f"--bootstrap {bootstrap}: give at least 1 replicate (2500 for p to +-0.01), or leave it out")
    names = [c.strip() for c in compare.split(",") if c.strip()] if compare else []
    unknown = [c for c in names if c not in stats.ALTERNATIVES]
    if unknown:
        raise ValueError(f"unknown --compare {', '.join(unknown)}; choose from {', '.join(stats.ALTERNATIVES)}")
    # one sorted float64 copy, made once: every fit below then uses it as it is (a memory-mapped .npy is
    # released here, so a file of 1e8 values costs 800 MB, not twice that)
    x = np.array(read_values(file, column), dtype=np.float64)
    x.sort()
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
    file: Path = typer.Argument(
        ...,
        help="Activity (counts per time step): .npy array, .parquet table, or text (one per line or columns).",
    ),
    column: str = typer.Option(
        None, "--column", help="Column to use: 0-based index or header/column name (index only for 2-D .npy)."
    ),
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
    activity = read_values(file, column)
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
