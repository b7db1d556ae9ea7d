"""``thermolens scan``: attention thermodynamics of every head of a model."""

from __future__ import annotations

from pathlib import Path

import typer

from thermolens.cli._common import (
    console, handle_errors, parse_grid, parse_ints, print_json, read_text_files, resolve_device, resolve_dtype,
    with_progress,
)

KIND = "scan"


@handle_errors
def scan(
    model: str = typer.Option(None, "--model", help="Local model directory or Hugging Face name (a name needs a network). Default: the bundled all-MiniLM-L6-v2."),
    text: list[Path] = typer.Option(None, "--text", help="Text file or directory of text files (repeatable). Default: the built-in English corpus (pydoc_data.topics)."),
    max_tokens: int = typer.Option(16384, "--max-tokens", help="Real tokens to read from the corpus."),
    seq_len: int = typer.Option(128, "--seq-len", help="Tokens per sequence, special tokens included."),
    batch_size: int = typer.Option(16, "--batch-size", help="Sequences per forward pass."),
    temperatures: str = typer.Option("0.05:25.6:64", "--temperatures", help="Temperature grid: 'start:stop:count' (log-spaced) or 'T1,T2,...' ascending. Octave-aligned grids (a whole number of points per factor 2, like the default: 7) run fastest."),
    mode: str = typer.Option("quenched", "--mode", help="'quenched' (logits captured once, all T from them) or 'propagated' (T applied inside the forward pass; downstream layers feel it)."),
    layers: str = typer.Option(None, "--layers", help="Layers to scan (and heat, in propagated mode), e.g. '0,1' or '0:3'. Default: all."),
    heads: str = typer.Option(None, "--heads", help="Heads to scan (and heat), e.g. '0,5'. Default: all."),
    bootstrap: int = typer.Option(200, "--bootstrap", help="Bootstrap resamples of sequences for the CI of T*."),
    bootstrap_blocks: int = typer.Option(512, "--bootstrap-blocks", help="Most bootstrap units: beyond this many sequences, contiguous runs of sequences are summed into this many blocks, so memory stays flat in corpus length (T* and the curves do not change)."),
    null_sequences: int = typer.Option(4, "--null-sequences", help="Sequences used to draw the null ensembles (4 x 128 tokens: 512 rows per head)."),
    power_law: bool = typer.Option(False, "--power-law/--no-power-law", help="Also run the seed paper's power-law check (Clauset bootstrap) on each head's attention weights at T*."),
    seed: int = typer.Option(0, "--seed", help="Seed for the null ensembles and the bootstrap."),
    device: str = typer.Option("auto", "--device", help="'auto', 'cpu', 'cuda', 'cuda:1', ..."),
    dtype: str = typer.Option("float32", "--dtype", help="Precision of the model's forward pass: 'float32', 'bfloat16' (CUDA needs compute capability >= 8.0) or 'float16'. Captured logits are computed in float32 from the model's q and k either way."),
    device_map: str = typer.Option(None, "--device-map", help="Shard a model too large for one device over the GPUs and the CPU: 'auto', 'balanced', 'balanced_low_0' or 'sequential' (needs pip install 'thermolens[accelerate]'). Replaces --device. Default: the whole model on --device."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Allow a model's own Python code to run (never by default)."),
    out: Path = typer.Option(Path("runs/scan"), "--out", help="Run directory to write."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into --out even if it holds something that is not a previous scan."),
    report: bool = typer.Option(True, "--report/--no-report", help="Draw the figures and report.html."),
    json_out: bool = typer.Option(False, "--json", help="Print the headline numbers as one JSON object on stdout."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Thermodynamics of every attention head: F, U, S, C, xi, chi against T; T* per head with a bootstrap CI, beside matched null ensembles."""
    from thermolens import io
    from thermolens.experiments.scan.heads import ScanConfig

    config = ScanConfig(
        temperatures=tuple(parse_grid(temperatures, name="temperature", spacing="log", positive=True)),
        mode=mode,  # type: ignore[arg-type]
        seq_len=seq_len,
        max_tokens=max_tokens,
        batch_size=batch_size,
        layers=tuple(parse_ints(layers, name="--layers")) if layers else None,
        heads=tuple(parse_ints(heads, name="--heads")) if heads else None,
        n_boot=bootstrap,
        null_sequences=null_sequences,
        bootstrap_blocks=bootstrap_blocks,
        seed=seed,
    )
    texts = read_text_files(text)
    io.check_run_dir(out, kind=KIND, overwrite=overwrite)
    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device, device_map)

    from thermolens import models
    from thermolens.experiments.scan.critical import detect_critical_point
    from thermolens.experiments.scan.heads import scan as run_scan

    # Everything that can be refused is checked before the run directory is created.
    loaded = models.load_model(model, device=device, dtype=torch_dtype, device_map=device_map,
                               trust_remote_code=trust_remote_code)
    run_dir = io.prepare_run_dir(out, kind=KIND, overwrite=overwrite)
    run_config = {**config.to_dict(), "dtype": str(torch_dtype).removeprefix("torch."), "device_map": device_map}
    recorder = io.RunRecorder(run_dir, kind=KIND, command=io.command_line(), config=run_config, seed=seed)
    with recorder:
        result = with_progress(
            lambda progress: run_scan(loaded, texts, config=config, device=device, progress=progress), quiet, "scan"
        )
        result.save(run_dir)
        summary = result.summary()
        if power_law:
            critical = with_progress(
                lambda progress: detect_critical_point(result, loaded, texts, seed=seed, progress=progress), quiet,
                "power-law check",
            )
            io.write_table(run_dir / "critical_points.parquet", critical)
            summary["n_power_law_heads"] = int(critical["is_power_law"].sum())
        if report:
            from thermolens.report.scan import write_report

            write_report(result, run_dir)
        recorder.timings.update(result.timings)
        recorder.summary.update({k: v for k, v in summary.items() if k != "heads"})
    _print_human(result, run_dir)
    if json_out:
        print_json({**summary, "out": str(run_dir)})


def _print_human(result, run_dir: Path) -> None:
    heads = result.heads
    console.print(
        f"[bold]{result.model_name}[/]: {len(heads)} heads, {result.n_tokens} tokens, mode {result.config.mode}; "
        f"median T* = {heads['T_star'].median():.3g} (Gaussian null {heads['T_star_null_gauss'].median():.3g}); "
        f"{int(heads['differs_from_null'].sum())} heads differ from both nulls, {int(heads['at_edge'].sum())} peak at the grid edge."
    )
    if result.losses is not None:
        best = result.losses.loc[result.losses["loss"].idxmin()]
        console.print(f"lowest loss {best['loss']:.4g} at T = {best['T']:.3g}")
    console.print(f"wrote {run_dir}")
