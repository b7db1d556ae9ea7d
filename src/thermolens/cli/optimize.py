"""``thermolens optimize compare|diagnose``: does the criticality-aware optimizer beat AdamW?"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from thermolens.cli._common import console, handle_errors, parse_ints, print_json, resolve_device

app = typer.Typer(help="Criticality-aware training: compare optimizers, diagnose sharpness, T vs T*, Fisher spectra.",
                  no_args_is_help=True)

KIND = "optimize-compare"
KIND_DIAGNOSE = "optimize-diagnose"


def _names(text: str, what: str) -> tuple[str, ...]:
    names = tuple(v.strip() for v in text.split(",") if v.strip())
    if not names:
        raise ValueError(f"{what} '{text}' is empty; give names separated by commas")
    return names


def _source(corpus: str | None, source: str | None) -> str:
    if source:
        return source
    if corpus in (None, "builtin"):
        return "text:builtin"
    if not Path(corpus).exists():
        raise ValueError(f"--corpus {corpus} is neither 'builtin' nor an existing file or directory")
    return f"text:{corpus}"


@app.command("compare")
def compare(
    task: str = typer.Option("grokking", "--task", help="grokking (modular addition) or lm (causal LM)."),
    optimizers: str = typer.Option("adamw,critical", "--optimizers",
                                   help="Comma list from adamw, critical, kfac, diag-fisher, soap."),
    seeds: str = typer.Option("0,1,2", "--seeds", help="Seeds, '0,1,2' or '0:3'."),
    init: str = typer.Option("default", "--init", help="Initializations, comma list of default, critical."),
    lr: float = typer.Option(None, "--lr", help="Learning rate for every optimizer (default: grokking 1e-3, lm 3e-3)."),
    weight_decay: float = typer.Option(None, "--weight-decay", help="Weight decay (default: grokking 1.0, lm 0.01)."),
    optimizer_kwargs: str = typer.Option("{}", "--optimizer-kwargs",
                                         help='JSON {optimizer: {keyword: value}}, e.g. \'{"critical": {"damping": 0.01}}\'.'),
    p: int = typer.Option(113, "--p", help="grokking: modulus."),
    train_fraction: float = typer.Option(0.3, "--train-fraction", help="grokking: training fraction."),
    max_steps: int = typer.Option(20000, "--max-steps", help="grokking: step cap per run."),
    every: int = typer.Option(100, "--every", help="grokking: thermometer cadence (steps)."),
    stop_window: int = typer.Option(1000, "--stop-window", help="grokking: stop after this many steps at >= 99% test accuracy."),
    sharpness_every: int = typer.Option(1000, "--sharpness-every", help="grokking: sharpness cadence (0: off)."),
    corpus: str = typer.Option("builtin", "--corpus", help="lm: 'builtin' (the pydoc text) or a text file/directory."),
    source: str = typer.Option(None, "--source", help="lm: a source spec instead, e.g. 'markov:h=1.5,vocab=16'."),
    steps: int = typer.Option(3000, "--steps", help="lm: training steps per run."),
    seq_len: int = typer.Option(64, "--seq-len", help="lm: context length."),
    batch_size: int = typer.Option(32, "--batch-size", help="lm: windows per step."),
    device: str = typer.Option("cpu", "--device", help="grokking: cpu, cuda or auto (the lm loop runs on CPU)."),
    workers: int = typer.Option(1, "--workers", help="Runs trained at once (processes, one core each)."),
    out: Path = typer.Option(Path("runs/opt"), "--out", help="Run directory; an unfinished comparison there continues."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start over in an existing --out."),
    figures: bool = typer.Option(True, "--figures/--no-figures", help="Write PNG figures."),
    json_out: bool = typer.Option(False, "--json", help="Print the headline numbers as one JSON object on stdout."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress output."),
) -> None:
    """Train every optimizer x init x seed with the same model, data and budget and compare:
    steps and wall time to generalization (grokking), loss at fixed steps and wall time (lm)."""
    _compare(locals())


@handle_errors
def _compare(o: dict) -> None:
    import shutil

    from thermolens import io
    from thermolens.experiments.optimize.compare import CompareConfig, run_compare

    try:
        kwargs = json.loads(o["optimizer_kwargs"])
    except json.JSONDecodeError as exc:
        raise ValueError(f"--optimizer-kwargs is not JSON ({exc.msg}); e.g. '{{\"critical\": {{\"damping\": 0.01}}}}'") from None
    if not isinstance(kwargs, dict) or not all(isinstance(v, dict) for v in kwargs.values()):
        raise ValueError("--optimizer-kwargs must be a JSON object of objects: {optimizer: {keyword: value}}")
    config = CompareConfig(
        task=o["task"], optimizers=_names(o["optimizers"], "--optimizers"),
        seeds=tuple(parse_ints(o["seeds"], name="--seeds")), inits=_names(o["init"], "--init"),
        lr=o["lr"], weight_decay=o["weight_decay"], optimizer_kwargs=kwargs, device=resolve_device(o["device"]),
        p=o["p"], train_fraction=o["train_fraction"], max_steps=o["max_steps"], every=o["every"],
        sweep_every=10 * o["every"], stop_window=o["stop_window"], sharpness_every=o["sharpness_every"],
        source=_source(o["corpus"], o["source"]), steps=o["steps"], seq_len=o["seq_len"], batch_size=o["batch_size"],
    )
    run_dir = Path(o["out"])
    if io.is_run_dir(run_dir, KIND) and not o["overwrite"]:
        stored = io.read_json(run_dir / io.MANIFEST)["config"]
        if stored != config.to_dict():
            raise ValueError(f"{run_dir} holds a comparison with other settings; use another --out or --overwrite")
    io.prepare_run_dir(run_dir, kind=KIND, overwrite=o["overwrite"])
    if o["overwrite"] and (run_dir / "runs").is_dir():
        shutil.rmtree(run_dir / "runs")
    n_runs = len(config.runs())

    def done(summary: dict) -> None:
        if not o["quiet"]:
            console.print(f"finished {summary['run']} ({len(finished_names) + 1}/{n_runs})")
        finished_names.append(summary["run"])

    finished_names: list[str] = []
    with io.RunRecorder(run_dir, KIND, io.command_line(), config.to_dict()) as recorder:
        result = run_compare(config, run_dir, workers=o["workers"], on_done=done)
        io.write_table(run_dir / "runs.parquet", result.runs)
        io.write_table(run_dir / "summary.parquet", result.summary)
        io.write_text(run_dir / "verdict.txt", result.verdict + "\n")
        if o["figures"]:
            from thermolens.report.optimize import plot_curves

            histories = {name: io.read_table(run_dir / "runs" / name / "history.parquet") for name in result.runs["run"]}
            io.save_figure(plot_curves(config.task, result.runs, histories), run_dir / "curves.png")
        recorder.summary = {"verdict": result.verdict, "summary": result.summary.to_dict(orient="records")}
    if not o["quiet"]:
        console.print(result.verdict)
    if o["json_out"]:
        print_json({"task": config.task, "out": str(run_dir), "verdict": result.verdict,
                    "summary": result.summary.to_dict(orient="records")})


@app.command("diagnose")
def diagnose(
    run_dir: Path = typer.Argument(..., help="A directory written by `thermolens optimize compare`."),
    figures: bool = typer.Option(True, "--figures/--no-figures", help="Write PNG figures."),
    json_out: bool = typer.Option(False, "--json", help="Print the headline numbers as one JSON object on stdout."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress output."),
) -> None:
    """Sharpness vs 2/lr and vs Adam's preconditioned threshold, per-head T vs T*, K-FAC factor
    spectra of the final models; written to RUN_DIR/diagnose."""
    _diagnose(locals())


@handle_errors
def _diagnose(o: dict) -> None:
    from thermolens import io
    from thermolens.experiments.optimize.compare import diagnose as run_diagnose

    root = Path(o["run_dir"])
    if not root.is_dir():
        raise ValueError(f"{root} is not a directory; give the --out of `thermolens optimize compare`")
    out = io.prepare_run_dir(root / "diagnose", kind=KIND_DIAGNOSE, overwrite=True)
    with io.RunRecorder(out, KIND_DIAGNOSE, io.command_line(), {"run_dir": str(root)}) as recorder:
        if not o["quiet"]:
            console.print(f"diagnosing {root} ...")
        result = run_diagnose(root)
        for name in ("sharpness", "temperature", "spectra", "headline"):
            io.write_table(out / f"{name}.parquet", getattr(result, name))
        if o["figures"]:
            from thermolens.report import optimize as figs

            io.save_figure(figs.plot_sharpness(result.sharpness), out / "sharpness.png")
            io.save_figure(figs.plot_temperature(result.temperature), out / "temperature.png")
            io.save_figure(figs.plot_spectra(result.spectra), out / "spectra.png")
        recorder.summary = {"runs": result.headline.to_dict(orient="records")}
    if not o["quiet"]:
        console.print(result.headline.to_string(index=False))
    if o["json_out"]:
        print_json({"task": result.task, "out": str(out), "runs": result.headline.to_dict(orient="records")})
