"""``thermolens claims``: every claim of the seed papers tested in one command, with Holm-controlled verdicts."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import typer

from thermolens.cli._common import console, handle_errors, print_json

KIND = "claims"

app = typer.Typer(
    help="Test every claim of the seed papers in one command: verdicts with CIs, nulls, sensitivity, Holm control.",
    invoke_without_command=True,
    no_args_is_help=False,
)


@app.callback()
@handle_errors
def claims(
    ctx: typer.Context,
    preset: str = typer.Option("quick", "--preset", help="'quick' (every claim, < 30 min on 2 CPU cores; rows that need more say so) or 'full' (evidence grade, hours; resumable)."),
    only: str = typer.Option(None, "--only", help="Comma-separated claim ids (see `thermolens claims list`). Default: all."),
    out: Path = typer.Option(Path("runs/claims"), "--out", help="Report directory. An earlier report there is continued: finished pieces are reused, stale ones recomputed."),
    executor: str = typer.Option("inline", "--executor", help="How pieces run: 'inline' (one after another, each on every core), 'local' (worker processes), 'ray' (a Ray cluster)."),
    address: str = typer.Option(None, "--address", help="Ray address ('auto', 'host:port'); default: a local Ray instance."),
    workers: int = typer.Option(None, "--workers", help="Pieces at once with --executor local/ray (default: every core)."),
    alpha: float = typer.Option(0.05, "--alpha", help="Family-wise error level (Holm) over the report's tests."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan (pieces, estimated time and memory, stale runs) and stop."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Delete an earlier report in --out and start over."),
    json_out: bool = typer.Option(False, "--json", help="Print the verdict table as one JSON object on stdout."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Run the claims report into --out: report.html, claims.json and one directory per piece and claim."""
    if ctx.invoked_subcommand is not None:
        return
    from thermolens import io
    from thermolens.claims.run import QUICK_BUDGET_S, ClaimsConfig, make_plan, stale_runs

    config = ClaimsConfig(
        preset=preset, only=tuple(s.strip() for s in only.split(",") if s.strip()) if only else (),
        executor=executor, address=address, workers=workers, alpha=alpha,
    )
    io.check_run_dir(out, kind=KIND, overwrite=overwrite)
    plan = make_plan(config)
    _check_memory(plan.est_gib)
    stale = {} if overwrite else stale_runs(plan, config.preset, out)
    _print_plan(plan, config, stale, out)
    if plan.est_s > QUICK_BUDGET_S and config.preset == "quick":
        console.print(f"[yellow]warning:[/] the quick preset is estimated at {plan.est_s / 60:.0f} min, over its "
                      f"{QUICK_BUDGET_S / 60:.0f}-minute budget on 2 cores")
    if dry_run:
        return
    if overwrite and out.is_dir():
        shutil.rmtree(out)
    io.prepare_run_dir(out, kind=KIND)
    report = _run(config, out, quiet)
    if json_out:
        data = report.to_dict()
        data.pop("rows")
        print_json(data)
    _print_table(report, out)
    if report.failed:
        raise typer.Exit(1)


def _check_memory(est_gib: float) -> None:
    import os

    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    if est_gib > 0.9 * total:
        raise ValueError(
            f"the plan needs about {est_gib:.1f} GiB at once but this machine has {total:.1f} GiB; "
            "use --executor inline (one piece at a time), fewer --workers, or a bigger machine"
        )


def _print_plan(plan, config, stale: dict[str, list[str]], out: Path) -> None:
    finished = {p.name for p in plan.pieces
                if (out / "pieces" / p.name / "result.json").is_file() and f"pieces/{p.name}" not in stale}
    left_s = plan.est_s * sum(p.est_s for p in plan.pieces if p.name not in finished) / max(
        sum(p.est_s for p in plan.pieces), 1e-9)
    console.print(
        f"[bold]claims[/] preset={config.preset}: {len(plan.claims)} claims, {len(plan.pieces)} pieces "
        f"({len(finished)} finished earlier), estimated {_duration(left_s)} on 2 cores, peak ~{plan.est_gib:.1f} GiB",
        soft_wrap=True,
    )
    for piece in plan.pieces:
        state = "finished" if piece.name in finished else f"~{_duration(piece.est_s)}, ~{piece.est_gib:.1f} GiB"
        console.print(f"  piece {piece.name}: {state} ({piece.study})", soft_wrap=True)
    if stale:
        console.print(f"[yellow]{out} holds runs from another version or configuration; these will be recomputed:[/]")
        for key, differ in stale.items():
            console.print(f"  {key} ({', '.join(differ)} differ)")


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"


def _run(config, out: Path, quiet: bool):
    from thermolens import io
    from thermolens.claims.run import run_claims
    from thermolens.report.claims import render_html

    recorder = io.RunRecorder(run_dir=out, kind=KIND, command=io.command_line(), config=config.to_dict())
    with recorder:
        start = time.perf_counter()
        if quiet:
            report = run_claims(config, out)
        else:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                          console=console) as bar:
                tasks = {"pieces": bar.add_task("pieces (study runs)", total=None),
                         "claims": bar.add_task("claims (evaluations)", total=None)}
                report = run_claims(config, out, progress=lambda stage, done, total: bar.update(
                    tasks[stage], completed=done, total=total))
        recorder.timings["total_s"] = time.perf_counter() - start
        io.write_text(out / "report.html", render_html(
            report.to_dict(), command=" ".join(io.command_line()), timings=recorder.timings))
        recorder.summary = {"verdicts": {r.id: r.verdict for r in report.rows}, "failed": report.failed}
    return report


def _print_table(report, out: Path) -> None:
    from rich.table import Table

    table = Table(title=f"claims ({report.preset}; Holm over {report.n_tests} tests at alpha={report.alpha})")
    for col in ("claim", "verdict", "effect [CI]", "null", "p (Holm)"):
        table.add_column(col)
    for r in report.rows:
        ci = "" if not r.ci else f" [{_num(r.ci[0])}, {_num(r.ci[1])}]"
        p = "" if r.p_value is None else f"{r.p_value:.3g} ({_num(r.p_adjusted)})"
        table.add_row(r.id, r.verdict, f"{_num(r.effect)}{ci}", _num(r.null), p)
    console.print(table)
    for key, err in report.failed.items():
        console.print(f"[red]failed[/] {key}: {err}")
    console.print(f"report: {out / 'report.html'}")


def _num(x) -> str:
    return "–" if x is None else f"{x:.3g}"


@app.command("list")
@handle_errors
def list_claims(json_out: bool = typer.Option(False, "--json", help="Print the list as JSON on stdout.")) -> None:
    """The claim ids, their sources and one-line statements."""
    from thermolens.claims.registry import all_claims

    claims = all_claims()
    if json_out:
        print_json({"claims": [{"id": c.id, "source": c.source, "statement": c.statement} for c in claims.values()]})
        return
    for c in claims.values():
        console.print(f"[bold]{c.id}[/] ({c.source}): {c.statement}", soft_wrap=True)
