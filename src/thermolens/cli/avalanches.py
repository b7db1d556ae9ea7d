"""``thermolens avalanches``: activation cascades of a transformer, their exponents and branching, beside null models."""

from __future__ import annotations

from pathlib import Path

import typer

from thermolens.cli._common import (
    console, handle_errors, parse_grid, print_json, read_text_files, resolve_device, resolve_dtype,
    with_progress,
)

KIND = "avalanches"


@handle_errors
def avalanches(
    model: str = typer.Option(None, "--model", help="Local model directory or Hugging Face name (a name needs a network). Default: the bundled all-MiniLM-L6-v2."),
    text: list[Path] = typer.Option(None, "--text", help="Text file or directory of text files (repeatable). Default: the built-in English corpus (pydoc_data.topics)."),
    max_tokens: int = typer.Option(16384, "--max-tokens", help="Real tokens to read from the corpus."),
    seq_len: int = typer.Option(128, "--seq-len", help="Tokens per sequence, special tokens included."),
    batch_size: int = typer.Option(16, "--batch-size", help="Sequences per forward pass."),
    site: str = typer.Option("resid", "--site", help="Activation site: 'resid' (residual stream after each block), 'mlp' (MLP hidden units), 'attn' (attention output)."),
    threshold: float = typer.Option(3.0, "--threshold", help="Event threshold: a unit is active when |x - mean| > threshold * sd of its reference activations (with --baseline quantile: a quantile in (0, 1))."),
    baseline: str = typer.Option("zscore", "--baseline", help="'zscore' (mean and sd of each unit) or 'quantile' (the unit's own quantile of |x - median|)."),
    robustness: str = typer.Option(None, "--robustness", help="Further thresholds whose exponents are reported, e.g. '2,2.5,3.5,4'. Default: 2/3, 5/6, 7/6, 4/3 of --threshold."),
    lattice: str = typer.Option("token-layer", "--lattice", help="Cascade definition: 'token-layer' (clusters on the token x layer lattice, tokens as time) or 'layer-time' (runs of active layers per token, depth as time)."),
    temperatures: str = typer.Option(None, "--temperatures", help="Also run at these attention temperatures (applied inside the forward pass): 'start:stop:count' (log-spaced) or 'T1,T2,...'."),
    reference_sequences: int = typer.Option(16, "--reference-sequences", help="Sequences whose activations give every unit's baseline."),
    bootstrap: int = typer.Option(100, "--bootstrap", help="Clauset bootstrap replicates of the goodness of fit of each size distribution (0 skips it)."),
    seed: int = typer.Option(0, "--seed", help="Seed for the null models and the bootstraps."),
    device: str = typer.Option("auto", "--device", help="'auto', 'cpu', 'cuda', 'cuda:1', ..."),
    dtype: str = typer.Option("float32", "--dtype", help="Precision of the model's forward pass: 'float32', 'bfloat16' (CUDA needs compute capability >= 8.0) or 'float16'. Captured logits are computed in float32 from the model's q and k either way."),
    device_map: str = typer.Option(None, "--device-map", help="Shard a model too large for one device over the GPUs and the CPU: 'auto', 'balanced', 'balanced_low_0' or 'sequential' (needs pip install 'thermolens[accelerate]'). Replaces --device. Default: the whole model on --device."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Allow a model's own Python code to run (never by default)."),
    out: Path = typer.Option(Path("runs/avalanches"), "--out", help="Run directory to write."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into --out even if it holds something that is not a previous avalanches run."),
    report: bool = typer.Option(True, "--report/--no-report", help="Draw the figures and report.html."),
    json_out: bool = typer.Option(False, "--json", help="Print the headline numbers as one JSON object on stdout."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Activation avalanches: cascade sizes and durations, tau with goodness of fit, branching ratio per layer, beside a layer-shuffled and a rate-matched null."""
    from thermolens import io
    from thermolens.experiments.avalanches.measure import AvalancheConfig

    config = AvalancheConfig(
        site=site,
        lattice=lattice,
        threshold=threshold,
        baseline=baseline,
        robustness=tuple(parse_grid(robustness, name="robustness threshold", positive=True)) if robustness else None,
        seq_len=seq_len,
        max_tokens=max_tokens,
        batch_size=batch_size,
        reference_sequences=reference_sequences,
        n_boot=bootstrap,
        temperatures=tuple(parse_grid(temperatures, name="temperature", spacing="log", positive=True)) if temperatures else None,
        seed=seed,
    )
    texts = read_text_files(text)
    io.check_run_dir(out, kind=KIND, overwrite=overwrite)
    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device, device_map)

    from thermolens import models
    from thermolens.experiments.avalanches.measure import avalanches as run_avalanches

    # Everything that can be refused is checked before the run directory is created.
    loaded = models.load_model(model, device=device, dtype=torch_dtype, device_map=device_map,
                               trust_remote_code=trust_remote_code)
    run_dir = io.prepare_run_dir(out, kind=KIND, overwrite=overwrite)
    run_config = {**config.to_dict(), "dtype": str(torch_dtype).removeprefix("torch."), "device_map": device_map}
    recorder = io.RunRecorder(run_dir, kind=KIND, command=io.command_line(), config=run_config, seed=seed)
    with recorder:
        result = with_progress(
            lambda progress: run_avalanches(loaded, texts, config=config, device=device, progress=progress), quiet,
            "avalanches",
        )
        result.save(run_dir)
        summary = result.summary()
        if report:
            from thermolens.report.avalanches import write_report

            write_report(result, run_dir)
        recorder.timings.update(result.timings)
        recorder.summary.update({k: v for k, v in summary.items() if k not in ("thresholds", "temperatures")})
    _print_human(result, run_dir)
    if json_out:
        print_json({**summary, "out": str(run_dir)})


def _fmt(value: float, digits: int = 3) -> str:
    return "n/a" if value != value else f"{value:.{digits}g}"


def _print_human(result, run_dir: Path) -> None:
    m = result.model
    console.print(
        f"[bold]{result.model_name}[/]: site {result.config.site}, lattice {result.config.lattice}, threshold "
        f"{result.config.threshold:g}, {result.n_tokens} tokens; {m.n_avalanches} avalanches ({m.n_censored} censored)."
    )
    console.print(
        f"tau = {_fmt(m.tau)} +- {_fmt(m.tau_stderr, 2)} (xmin {_fmt(m.xmin)}, gof p {_fmt(m.gof_p, 2)}), "
        f"s_c = {_fmt(m.s_c)}, tau_duration = {_fmt(m.tau_duration)}, branching ratio = {_fmt(m.branching_ratio)} "
        f"(MR along tokens {_fmt(m.branching_ratio_mr)})"
    )
    for name, beaten in result.beats_nulls.items():
        n = result.fits[name]
        console.print(f"  null {name}: tau = {_fmt(n.tau)}, branching ratio = {_fmt(n.branching_ratio)}, "
                      f"{n.n_avalanches} avalanches, sizes vs the model's: KS p = {_fmt(n.ks_p_vs_model, 2)}; "
                      f"beaten: {beaten}")
    verdict = "a power law that beats both nulls" if result.power_law_beats_nulls else (
        "a power law, but not distinguishable from every null" if m.is_power_law else "not a power law")
    console.print(f"verdict: {verdict}")
    console.print(f"wrote {run_dir}")
