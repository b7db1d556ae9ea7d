"""``thermolens scaling temperature|architecture``: the seed paper's Theorems 1 and 3 on a trained family."""

from __future__ import annotations

from pathlib import Path

import typer

from thermolens.cli._common import console, handle_errors, print_json

app = typer.Typer(help="Scaling laws of criticality on a family trained by `thermolens family train`.",
                  no_args_is_help=True)


def _load(family_dir: Path):
    """The family, with its code-version warning printed (one line) instead of raised."""
    import warnings

    from thermolens.experiments.family.train import load_family

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_family(family_dir)
    for w in caught:
        console.print(f"[yellow]warning:[/] {w.message}", soft_wrap=True)
    return data


def _record(run_dir: Path, kind: str, config: dict):
    from thermolens import io

    io.prepare_run_dir(run_dir, kind=kind, overwrite=True)
    return io.RunRecorder(run_dir, kind=kind, command=io.command_line(), config=config, seed=config.get("seed"))


@app.command("temperature")
def temperature(
    family_dir: Path = typer.Argument(..., help="Family directory (--out of `thermolens family train`)."),
    d0: float = typer.Option(64.0, "--d0", help="Reference width d_0: T_0 is T* at d = d_0 (and n = n_0)."),
    n0: float = typer.Option(64.0, "--n0", help="Reference context length n_0."),
    n_boot: int = typer.Option(1000, "--n-boot", help="Bootstrap resamples of members for the CIs."),
    ci: float = typer.Option(0.95, "--ci", help="Coverage of the intervals."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap."),
    out: Path = typer.Option(None, "--out", help="Output directory (default: FAMILY_DIR/scaling_temperature)."),
    figures: bool = typer.Option(True, "--figures/--no-figures", help="Write the PNG figure."),
    json_out: bool = typer.Option(False, "--json", help="Print alpha_k (with CIs), T_0 and the verdict as JSON."),
    quiet: bool = typer.Option(False, "--quiet", help="Less output on stderr."),
) -> None:
    """Theorem 1: T*(k) = T_0 (d/d_0)^(-alpha_k) per head index k and pooled, vs the null, and vs n."""
    _temperature(locals())


@handle_errors
def _temperature(opts: dict) -> None:
    from thermolens import io
    from thermolens.experiments.family.scaling import temperature_scaling

    data = _load(opts["family_dir"])
    result = temperature_scaling(data.heads, d0=opts["d0"], n0=opts["n0"], n_boot=opts["n_boot"], ci=opts["ci"],
                                 seed=opts["seed"])
    run_dir = Path(opts["out"] or Path(opts["family_dir"]) / "scaling_temperature")
    config = {k: opts[k] for k in ("d0", "n0", "n_boot", "ci", "seed")} | {"family_dir": str(opts["family_dir"])}
    with _record(run_dir, "scaling-temperature", config) as recorder:
        io.write_table(run_dir / "per_k.parquet", result.per_k)
        io.write_table(run_dir / "points.parquet", result.points)
        io.write_text(run_dir / "verdict.md", f"# Theorem 1\n\n{result.verdict}\n")
        if opts["figures"]:
            from thermolens.report.scaling import plot_context_scaling, plot_temperature_scaling

            io.save_figure(plot_temperature_scaling(result).figure, run_dir / "temperature_scaling.png")
            io.save_figure(plot_context_scaling(result).figure, run_dir / "context_scaling.png")
        recorder.summary = result.summary()
    if opts["json_out"]:
        print_json({**result.summary(), "mixed_versions": data.mixed_versions, "out": str(run_dir)})
    if not opts["quiet"]:
        for row in result.per_k.to_dict(orient="records"):
            console.print(f"k={row['k']}: alpha = {row['alpha']:.3g} [{row['alpha_lo']:.3g}, {row['alpha_hi']:.3g}], "
                          f"T_0 = {row['T0']:.3g}, null alpha = {row['alpha_null']:.3g} ({row['n_points']} heads)")
        console.print(result.verdict, soft_wrap=True)
        console.print(f"wrote {run_dir}")


@app.command("architecture")
def architecture(
    family_dir: Path = typer.Argument(..., help="Family directory (--out of `thermolens family train`)."),
    d0: float = typer.Option(64.0, "--d0", help="Reference width of the width term (C is the constant at d = d_0)."),
    n_boot: int = typer.Option(1000, "--n-boot", help="Bootstrap resamples (seeds within cells, and groups)."),
    ci: float = typer.Option(0.95, "--ci", help="Coverage of the intervals."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap."),
    out: Path = typer.Option(None, "--out", help="Output directory (default: FAMILY_DIR/scaling_architecture)."),
    figures: bool = typer.Option(True, "--figures/--no-figures", help="Write the PNG figure."),
    json_out: bool = typer.Option(False, "--json", help="Print the exponent (with CI), C and the verdict as JSON."),
    quiet: bool = typer.Option(False, "--quiet", help="Less output on stderr."),
) -> None:
    """Theorem 3: the loss-optimal N*d against L*H (claimed N d = C sqrt(L H))."""
    _architecture(locals())


@handle_errors
def _architecture(opts: dict) -> None:
    from thermolens import io
    from thermolens.experiments.family.scaling import architecture_scaling

    data = _load(opts["family_dir"])
    result = architecture_scaling(data.members, d0=opts["d0"], n_boot=opts["n_boot"], ci=opts["ci"], seed=opts["seed"])
    run_dir = Path(opts["out"] or Path(opts["family_dir"]) / "scaling_architecture")
    config = {k: opts[k] for k in ("d0", "n_boot", "ci", "seed")} | {"family_dir": str(opts["family_dir"])}
    with _record(run_dir, "scaling-architecture", config) as recorder:
        io.write_table(run_dir / "optimal.parquet", result.optimal)
        io.write_text(run_dir / "verdict.md", f"# Theorem 3\n\n{result.verdict}\n")
        if opts["figures"]:
            from thermolens.report.scaling import plot_architecture_scaling

            io.save_figure(plot_architecture_scaling(result).figure, run_dir / "architecture_scaling.png")
        recorder.summary = result.summary()
    if opts["json_out"]:
        print_json({**result.summary(), "mixed_versions": data.mixed_versions, "out": str(run_dir)})
    if not opts["quiet"]:
        console.print(f"exponent = {result.exponent:.3g} [{result.exponent_lo:.3g}, {result.exponent_hi:.3g}], "
                      f"C = {result.C:.3g} [{result.C_lo:.3g}, {result.C_hi:.3g}], width exponent g = "
                      f"{result.width_exponent:.3g} [{result.width_exponent_lo:.3g}, {result.width_exponent_hi:.3g}] "
                      "(claim: exponent 1/2, g = 0)")
        console.print(result.verdict, soft_wrap=True)
        console.print(f"wrote {run_dir}")
