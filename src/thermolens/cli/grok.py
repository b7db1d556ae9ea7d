"""``thermolens grok``: grokking on modular arithmetic with a specific-heat thermometer."""

from __future__ import annotations

import shutil
from pathlib import Path

import typer

from thermolens.cli._common import EXIT_FAILURE, console, fail, handle_errors, parse_ints, print_json

#: CLI options that set the study's configuration (option name -> config key)
_CONFIG_OPTIONS = {
    "p": "ps", "seed": "seeds", "seeds": "seeds", "train_fraction": "train_fractions",
    "fraction_for": "fraction_overrides", "weight_decay": "weight_decays", "op": "op", "lr": "lr",
    "max_steps": "max_steps", "every": "every", "sweep_every": "sweep_every", "stop_acc": "stop_acc",
    "stop_window": "stop_window", "checkpoint_every": "checkpoint_every", "grokfast": "grokfast",
    "grokfast_alpha": "grokfast_alpha", "grokfast_lamb": "grokfast_lamb", "snapshot_every": "snapshot_every",
}


def _floats(text: str, name: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"cannot read {name} '{text}'; give numbers separated by commas, e.g. 0.3,0.5") from None
    if not values:
        raise ValueError(f"{name} '{text}' is empty")
    return values


def _overrides(items: list[str]) -> tuple[tuple[int, float], ...]:
    pairs = []
    for item in items:
        p, sep, frac = item.partition("=")
        try:
            if not sep:
                raise ValueError
            pairs.append((int(p), float(frac)))
        except ValueError:
            raise ValueError(f"cannot read --fraction-for '{item}'; write P=FRACTION, e.g. 19=0.6") from None
    return tuple(pairs)


def _options_to_values(opts: dict) -> dict:
    """Parsed values of the configuration options, keyed like the config."""
    seeds = parse_ints(opts["seeds"], name="--seeds") if opts["seeds"] is not None else [opts["seed"]]
    return {
        "ps": tuple(parse_ints(opts["p"], name="--p")), "seeds": tuple(seeds),
        "train_fractions": _floats(opts["train_fraction"], "--train-fraction"),
        "fraction_overrides": _overrides(opts["fraction_for"]),
        "weight_decays": _floats(opts["weight_decay"], "--weight-decay"),
        **{key: opts[key] for key in ("op", "lr", "max_steps", "every", "sweep_every", "stop_acc", "stop_window",
                                      "checkpoint_every", "grokfast", "grokfast_alpha", "grokfast_lamb",
                                      "snapshot_every")},
    }


def _build(values: dict):
    import dataclasses

    from thermolens.experiments.grokking.train import GrokConfig
    from thermolens.experiments.grokking.study import StudyConfig

    grid = ("ps", "seeds", "train_fractions", "weight_decays", "fraction_overrides")
    base = dataclasses.replace(GrokConfig(), **{k: v for k, v in values.items() if k not in grid})
    return StudyConfig(**{k: values[k] for k in grid}, base=base)


def _stored_values(stored) -> dict:
    base = stored.base
    return {
        "ps": stored.ps, "seeds": stored.seeds, "train_fractions": stored.train_fractions,
        "fraction_overrides": stored.fraction_overrides, "weight_decays": stored.weight_decays,
        **{key: getattr(base, key) for key in ("op", "lr", "max_steps", "every", "sweep_every", "stop_acc",
                                               "stop_window", "checkpoint_every", "grokfast", "grokfast_alpha",
                                               "grokfast_lamb", "snapshot_every")},
    }


def grok(
    ctx: typer.Context,
    p: str = typer.Option("113", "--p", help="Modulus, or moduli separated by commas (a study), e.g. 19,31,59,113."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split and the initial weights (one run)."),
    seeds: str = typer.Option(None, "--seeds", help="Several seeds, '0,1,2' or '0:3' (replaces --seed)."),
    op: str = typer.Option("add", "--op", help="Operation mod p: add, sub, mul or div (div needs prime p)."),
    train_fraction: str = typer.Option("0.3", "--train-fraction", help="Training fraction in (0, 1); several separated by commas."),
    fraction_for: list[str] = typer.Option([], "--fraction-for", help="Training fraction for one modulus, P=F (repeatable), e.g. 19=0.6."),
    weight_decay: str = typer.Option("1.0", "--weight-decay", help="AdamW weight decay; several separated by commas."),
    lr: float = typer.Option(1e-3, "--lr", help="AdamW learning rate (10-step linear warm-up)."),
    max_steps: int = typer.Option(20000, "--max-steps", help="Cap on full-batch training steps per run."),
    every: int = typer.Option(100, "--every", help="Thermometer cadence: read C, S, F, loss, accuracy every N steps."),
    sweep_every: int = typer.Option(1000, "--sweep-every", help="Temperature sweep C(T) every N steps (0: off)."),
    stop_acc: float = typer.Option(0.99, "--stop-acc", help="Early stop: test accuracy level ..."),
    stop_window: int = typer.Option(2000, "--stop-window", help="... held for this many steps (0: never stop early)."),
    checkpoint_every: int = typer.Option(1000, "--checkpoint-every", help="Checkpoint cadence (steps)."),
    grokfast: bool = typer.Option(False, "--grokfast/--no-grokfast", help="Grokfast-EMA gradient filter (arXiv:2405.20233); changes the dynamics, marked in every output."),
    grokfast_alpha: float = typer.Option(0.98, "--grokfast-alpha", help="Grokfast EMA decay."),
    grokfast_lamb: float = typer.Option(2.0, "--grokfast-lamb", help="Grokfast amplification."),
    snapshot_every: int = typer.Option(0, "--snapshot-every", help="Save the model's weights every N steps, at step 0 and at the last step, as runs/<run>/snapshots/step-NNNNNNN.safetensors (for `thermolens dynamics`); default 0: no snapshots."),
    workers: int = typer.Option(2, "--workers", help="Runs trained at once (processes, one core each)."),
    retries: int = typer.Option(0, "--retries", help="Retry a failed run this many times, from its last checkpoint."),
    out: Path = typer.Option(None, "--out", help="Run directory (default: runs/grok)."),
    resume: Path = typer.Option(None, "--resume", help="Continue the study in this directory; other settings must match."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start over in an existing --out."),
    figures: bool = typer.Option(True, "--figures/--no-figures", help="Write PNG figures."),
    json_out: bool = typer.Option(False, "--json", help="Print the headline numbers as one JSON object on stdout."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Train Nanda et al.'s one-layer transformer on a + b mod p and follow the specific heat of its
    attention (Kim, arXiv:2602.08216): does C peak before the model generalizes?"""
    explicit = {name for name in _CONFIG_OPTIONS if getattr(ctx.get_parameter_source(name), "name", "") == "COMMANDLINE"}
    _run({k: v for k, v in locals().items() if k != "ctx"} | {"explicit": explicit})


@handle_errors
def _run(opts: dict) -> None:
    from thermolens import io
    from thermolens.experiments.grokking.study import StudyConfig, differing_keys

    if opts["resume"] is not None:
        run_dir = Path(opts["resume"])
        if not io.is_run_dir(run_dir, "grok"):
            raise ValueError(f"{run_dir} is not a `grok` run directory (no grok manifest.json); check the path")
        if opts["out"] is not None and Path(opts["out"]) != run_dir:
            raise ValueError("--resume continues in its own directory; drop --out (or give the same path)")
        stored = StudyConfig.from_dict(io.read_json(run_dir / io.MANIFEST)["config"]["study"])
        values = _stored_values(stored)
        parsed = _options_to_values(opts)
        for name in opts["explicit"]:
            values[_CONFIG_OPTIONS[name]] = parsed[_CONFIG_OPTIONS[name]]
        config = _build(values)
        differ = differing_keys(stored.to_dict(), config.to_dict())
        if differ:
            raise ValueError(
                f"{run_dir} holds a study with a different configuration ({', '.join(differ)} differ); "
                "drop those options to resume it, or start a new study with another --out"
            )
    else:
        config = _build(_options_to_values(opts))
        run_dir = Path(opts["out"] or "runs/grok")
        if io.is_run_dir(run_dir, "grok") and not opts["overwrite"]:
            raise ValueError(
                f"{run_dir} already holds a grok study; continue it with --resume {run_dir} "
                "or start over with --overwrite"
            )
        io.prepare_run_dir(run_dir, kind="grok", overwrite=opts["overwrite"])
        if opts["overwrite"] and (run_dir / "runs").is_dir():
            shutil.rmtree(run_dir / "runs")
    from thermolens.experiments.grokking.study import RunsFailed

    try:
        result = _execute(config, run_dir, opts)
    except (OSError, RunsFailed) as exc:
        raise fail(f"{exc}", EXIT_FAILURE) from None

    rows = result.runs.to_dict(orient="records")
    if opts["json_out"]:
        print_json(rows[0] if len(rows) == 1 else {"runs": rows, "summary": result.summary.to_dict(orient="records")})
    _print_human(result, run_dir)


def _execute(config, run_dir: Path, opts: dict):
    import time

    from thermolens import io
    from thermolens.experiments.grokking.study import run_study

    if opts["workers"] < 1:
        raise ValueError(f"--workers {opts['workers']} must be >= 1")
    if opts["retries"] < 0:
        raise ValueError(f"--retries {opts['retries']} must be >= 0")
    n_runs = len(config.runs())
    workers = min(int(opts["workers"]), n_runs)
    recorder = io.RunRecorder(
        run_dir=run_dir, kind="grok", command=io.command_line(),
        config={"study": config.to_dict(), "workers": workers}, seed=config.seeds[0],
    )
    with recorder, _progress(opts["quiet"]) as bar:
        start = time.perf_counter()
        if n_runs == 1:
            task = bar.add_task(f"grok p={config.ps[0]}", total=config.base.max_steps) if bar else None
            step_cb = (lambda step, total, reading: bar.update(task, completed=step)) if bar else None
            result = run_study(config, run_dir, workers=1, retries=opts["retries"], progress=step_cb)
        else:
            task = bar.add_task(f"grok study ({n_runs} runs, {workers} at once)", total=n_runs) if bar else None
            done_cb = (lambda summary: bar.advance(task)) if bar else None
            result = run_study(config, run_dir, workers=workers, retries=opts["retries"], on_run_done=done_cb)
        recorder.timings["study_s"] = time.perf_counter() - start
        io.write_table(run_dir / "runs.parquet", result.runs)
        io.write_table(run_dir / "summary.parquet", result.summary)
        if opts["figures"]:
            _figures(result, run_dir)
        recorder.summary = {"n_runs": n_runs, "grokfast": config.base.grokfast,
                            "summary": result.summary.to_dict(orient="records")}
    return result


def _progress(quiet: bool):
    import contextlib

    if quiet:
        return contextlib.nullcontext(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=console)


def _figures(result, run_dir: Path) -> None:
    from thermolens import io
    from thermolens.experiments.grokking.train import critical_temperatures
    from thermolens.experiments.grokking.study import load_run_tables
    from thermolens.models.hooked import nanda2023
    from thermolens.report import grokking as report

    histories = {}
    for row in result.runs.to_dict(orient="records"):
        history, sweep = load_run_tables(result.run_dirs[row["run"]])
        histories[row["run"]] = history
        io.save_figure(report.plot_run(history, row).figure, result.run_dirs[row["run"]] / "grok.png")
        if len(sweep):
            io.save_figure(report.plot_sweep(sweep).figure, result.run_dirs[row["run"]] / "sweep.png")
            tstar = critical_temperatures(sweep, nanda2023(row["p"]).d_head)
            io.save_figure(report.plot_tstar(tstar).figure, result.run_dirs[row["run"]] / "tstar.png")
    io.save_figure(report.plot_study(histories, result.runs), run_dir / "study.png")
    if len(result.runs) > 1:
        io.save_figure(report.plot_lead_vs_p(result.runs).figure, run_dir / "lead_vs_p.png")


def _print_human(result, run_dir: Path) -> None:
    def fmt(x) -> str:
        return "—" if x is None or x != x else f"{x:.0f}"

    for row in result.runs.to_dict(orient="records"):
        flag = " [grokfast]" if row["grokfast"] else ""
        console.print(
            f"{row['run']}{flag}: onset {fmt(row['onset_step'])}, C peak {fmt(row['peak_step'])}, "
            f"lead {fmt(row['lead_steps'])} steps (null-corrected: peak {fmt(row['peak_corr_step'])}, "
            f"lead {fmt(row['lead_corr_steps'])}); final test acc {row['final_test_acc']:.3f}"
        )
    if len(result.runs) > 1:
        for row in result.summary.to_dict(orient="records"):
            console.print(
                f"p={row['p']} frac={row['train_fraction']:g}: grokked {row['n_grokked']}/{row['n_runs']}, "
                f"peak precedes onset in {row['C_n_precedes']}/{row['C_n_detected']} "
                f"(95% CI {row['C_ci_low']:.2f}–{row['C_ci_high']:.2f}), median lead {fmt(row['C_median_lead'])}"
            )
    console.print(f"wrote {run_dir}")
