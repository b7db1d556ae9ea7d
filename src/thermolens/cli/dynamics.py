"""``thermolens dynamics``: token clustering through depth, and where a model sits on the mean-field diagram."""

from __future__ import annotations

from pathlib import Path

import typer

from thermolens.cli._common import (
    console, handle_errors, parse_grid, print_json, read_text_files, resolve_device, track,
)

KIND = "dynamics"


@handle_errors
def dynamics(
    model: str = typer.Option(None, "--model", help="Local model directory or Hugging Face name (a name needs a network). Default: the bundled all-MiniLM-L6-v2."),
    text: list[Path] = typer.Option(None, "--text", help="Text file or directory of text files (repeatable). Default: the built-in English corpus (pydoc_data.topics)."),
    seq_len: int = typer.Option(128, "--seq-len", help="Tokens per sequence (the particles of one system), special tokens included."),
    sequences: int = typer.Option(None, "--sequences", help="Sequences (independent systems; the bootstrap resamples them). Default: 40; with --simulate, particle systems, default 4."),
    batch_size: int = typer.Option(8, "--batch-size", help="Sequences per forward pass."),
    temperatures: str = typer.Option(None, "--temperatures", help="Attention temperatures of the sweep, 'start:stop:count' (log-spaced) or 'T1,T2,...'; every head of every layer is heated inside the forward pass. Default: T = 1 only."),
    checkpoints: list[Path] = typer.Option(None, "--checkpoints", help="A grokking run or family member directory with weight snapshots (repeatable): measure at every snapshot, against training step."),
    max_snapshots: int = typer.Option(40, "--max-snapshots", help="With --checkpoints: at most this many snapshots, spread evenly over training."),
    simulate: str = typer.Option(None, "--simulate", help="Run the particle model instead of a transformer: 'noisy-transformer' (the only kernel with token dynamics)."),
    beta: str = typer.Option("1,3", "--beta", help="With --simulate: inverse temperatures of the particles, e.g. '1,3' (circle: continuous below beta_* = 2.4469, discontinuous above)."),
    coupling: float = typer.Option(1.5, "--K", help="With --simulate: coupling of the depth run in units of K_#(beta, d)."),
    dim: int = typer.Option(2, "--dim", help="With --simulate: dimension d of the space (2: the circle, with the fast Fourier drift; a model's width to match it)."),
    particles: int = typer.Option(10_000, "--particles", help="With --simulate: particles (tokens) per system."),
    layers: int = typer.Option(6, "--layers", help="With --simulate: recorded steps after the start (the 'layers')."),
    layer_time: float = typer.Option(2.0, "--layer-time", help="With --simulate: time tau between recorded steps."),
    anneal: str = typer.Option("0.8:1.2:9", "--anneal", help="With --simulate: K/K_# ladder of the heating/cooling run for hysteresis, 2 systems of 2000 particles, 10 tau per rung ('' for none)."),
    cluster_cosine: float = typer.Option(0.5, "--cluster-cosine", help="Cluster count: average linkage stops merging below this mean cosine."),
    bootstrap: int = typer.Option(500, "--bootstrap", help="Bootstrap resamples of sequences for every interval."),
    seed: int = typer.Option(0, "--seed", help="Seed for the null's directions, the bootstrap and the particles."),
    device: str = typer.Option("auto", "--device", help="'auto', 'cpu', 'cuda', 'cuda:1', ..."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Allow a model's own Python code to run (never by default)."),
    out: Path = typer.Option(Path("runs/dynamics"), "--out", help="Run directory to write."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into --out even if it holds something that is not a previous dynamics run."),
    report: bool = typer.Option(True, "--report/--no-report", help="Draw the figures and report.html."),
    json_out: bool = typer.Option(False, "--json", help="Print the headline numbers as one JSON object on stdout."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Token clustering through depth (r_1, r_2, pairwise cosines, clusters, beside a null), the order parameter
    against attention temperature, and the model's beta_eff and K_eff on the mean-field (beta, K) diagram."""
    from thermolens import io
    from thermolens.experiments.dynamics.measure import MeasureConfig

    measure = MeasureConfig(cluster_cosine=cluster_cosine, n_boot=bootstrap, seed=seed)
    if sum(x is not None and x != [] for x in (simulate, checkpoints)) > 1:
        raise ValueError("--simulate and --checkpoints are separate jobs; give one")

    def progress_for(label: str):
        return lambda items: track(items, total=len(items), description=label, quiet=quiet)

    if simulate is not None:
        from thermolens.experiments.dynamics.simulate import SimulationConfig, run_simulation

        config = SimulationConfig(
            kernel=simulate, betas=tuple(parse_grid(beta, name="beta", positive=True)), K_ratio=coupling, d=dim,
            n_particles=particles, n_sequences=sequences or 4, n_layers=layers,
            tau_layer=layer_time,
            anneal_ratios=tuple(parse_grid(anneal, name="anneal", minimum=0.0)) if anneal.strip() else (),
            measure=measure,
        )
        io.check_run_dir(out, kind=KIND, overwrite=overwrite)
        run_dir, result, summary = _recorded(
            out, overwrite, config.to_dict(), seed,
            lambda: run_simulation(config, progress=None if quiet else progress_for("particles")),
            "write_simulation_report" if report else None,
        )
        for run in summary["runs"]:
            console.print(
                f"beta={run['beta']:g} ({run['transition']}, K_#={run['K_sharp']:.4g}, K_c={run['K_c']:.4g}): mean cosine "
                + " ".join(f"{v:.3f}" for v in run["mean_cosine"])
                + f"; K_eff {run['K_eff'][-1]:.4g} vs K {run['K_true']:.4g}"
                + (f"; heating/cooling loop width {run['loop_width']:.3f} at K/K_#={run['loop_at_K_ratio']:g}"
                   if "loop_width" in run else "")
            )
        console.print(f"wrote {run_dir}")
        if json_out:
            print_json({**summary, "out": str(run_dir)})
        return

    if checkpoints:
        from thermolens.experiments.dynamics.training import training_dynamics

        for path in checkpoints:  # refuse a bad directory before anything is written
            if not Path(path).is_dir():
                raise ValueError(f"--checkpoints {path}: not a directory")
        io.check_run_dir(out, kind=KIND, overwrite=overwrite)
        run_dir = io.prepare_run_dir(out, kind=KIND, overwrite=overwrite)
        config = {"checkpoints": [str(p) for p in checkpoints], "max_snapshots": max_snapshots, **measure.__dict__}
        results = []
        with io.RunRecorder(run_dir, kind=KIND, command=io.command_line(), config=config, seed=seed) as rec:
            for i, path in enumerate(checkpoints):
                res = training_dynamics(path, measure, max_snapshots=max_snapshots,
                                        progress=None if quiet else progress_for(f"snapshots of {Path(path).name}"))
                res.save(run_dir, prefix=f"run{i}_")
                results.append(res)
            if report:
                from thermolens.report.dynamics import write_training_report

                write_training_report(results, run_dir)
            summary = {"runs": [r.summary() for r in results]}
            rec.summary.update(summary)
        for res in results:
            console.print(f"{res.label}: last-layer r1 against step is {res.shape['shape']} "
                          f"(largest step {res.shape['largest_step']:+.3f} between steps {res.shape['at'][0]:g} "
                          f"and {res.shape['at'][1]:g})")
        console.print(f"wrote {run_dir}")
        if json_out:
            print_json({**summary, "out": str(run_dir)})
        return

    from thermolens.experiments.dynamics.study import DynamicsConfig, run_dynamics
    from thermolens.experiments.dynamics.study import sequences as read_sequences

    config = DynamicsConfig(
        seq_len=seq_len, n_sequences=sequences or 40, batch_size=batch_size,
        temperatures=tuple(parse_grid(temperatures, name="temperature", spacing="log", positive=True))
        if temperatures else None,
        measure=measure,
    )
    texts = read_text_files(text)
    io.check_run_dir(out, kind=KIND, overwrite=overwrite)
    from thermolens import models

    loaded = models.load_model(model, device=resolve_device(device), trust_remote_code=trust_remote_code)
    tokens, special = read_sequences(loaded, texts, config)
    run_dir, result, summary = _recorded(
        out, overwrite, config.to_dict(), seed,
        lambda: run_dynamics(loaded, tokens, config, name=loaded.name, special=special,
                             progress=None if quiet else progress_for("temperatures")),
        "write_report" if report else None,
    )
    _print_model(result, summary)
    console.print(f"wrote {run_dir}")
    if json_out:
        print_json({**summary, "out": str(run_dir)})


def _recorded(out: Path, overwrite: bool, config: dict, seed: int, run, report: str | None):
    """Create the run directory, run the job under its manifest, save its tables and (``report``: the name of
    a ``thermolens.report.dynamics`` writer) its report; ``(run_dir, result, summary)``."""
    from thermolens import io

    run_dir = io.prepare_run_dir(out, kind=KIND, overwrite=overwrite)
    with io.RunRecorder(run_dir, kind=KIND, command=io.command_line(), config=config, seed=seed) as rec:
        result = run()
        result.save(run_dir)
        summary = result.summary()
        if report is not None:
            from thermolens.report import dynamics as figures

            getattr(figures, report)(result, run_dir)
        rec.timings.update(result.timings)
        rec.summary.update(summary)
    return run_dir, result, summary


def _print_model(result, summary: dict) -> None:
    def row(values):
        return " ".join(f"{v:6.3f}" for v in values)

    console.print(f"[bold]{result.name}[/]: {result.n_sequences} sequences x {result.n_tokens} tokens, d = {result.d}")
    lines = {f"mean cosine (embeddings, layers 1-{result.n_layers})": summary["mean_cosine"],
             "  null (same norms, random directions)": summary["null"]["mean_cosine"],
             **{f"  {name.replace('_', ' ')}": values for name, values in summary["components"].items()}}
    for label, values in lines.items():
        console.print(f"{label:<42} {row(values)}")
    console.print(f"beta_eff per layer: {row(summary['beta_eff'])}")
    console.print(f"K_eff / K_#(beta_eff, d): {row(summary['K_ratio'])}; beta_*(d={result.d}) = {summary['beta_star_d']:.4f}")
    if result.shape is not None:
        shape = result.shape
        console.print(f"last-layer r1 against beta = 1/T: {shape['shape']} (largest step {shape['largest_step']:+.3f} "
                      f"between beta {shape['at'][0]:.3g} and {shape['at'][1]:.3g}); hysteresis {shape['hysteresis']}")
        crossings = "; ".join(f"layer {c['layer']} at T={c['T']:.3g} (beta_eff {c['beta_eff']:.3g}, {c['order']})"
                              for c in shape["crossings"]) or "none"
        console.print(f"mean field predicts: {shape['mean_field']} (K_eff/K_# = 1 crossings: {crossings}); "
                      f"{'agrees' if shape['agrees'] else 'disagrees'} with the measured shape")
