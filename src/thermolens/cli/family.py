"""``thermolens family train``: train a family of small causal LMs over widths, heads, context lengths
and sources (issue 8), resumably, on local cores or a Ray cluster."""

from __future__ import annotations

from pathlib import Path

import typer

from thermolens.cli._common import EXIT_FAILURE, console, fail, handle_errors, parse_ints, print_json, with_progress

app = typer.Typer(help="Train a model family for the scaling analyses (`thermolens scaling`).", no_args_is_help=True)

KIND = "family"

#: FamilyConfig fields whose change would mix members trained differently in one directory (not
#: snapshot_every: snapshots change no number of a member, and finished members keep theirs)
_SHARED = ("n_layers", "mlp_ratio", "act", "budget_tokens", "batch_tokens", "lr", "weight_decay", "warmup_steps",
           "eval_every", "eval_batches", "scan_sequences", "n_boot")


@app.command("train")
def train(
    quick: bool = typer.Option(False, "--quick", help="Start from the quick preset (72 tiny members, a few minutes)."),
    widths: str = typer.Option(None, "--widths", help="Widths d = d_model, e.g. 32,64,128,256 (default preset: 32,64,128,256)."),
    heads: str = typer.Option(None, "--heads", help="Head counts N, e.g. 1,2,4,8; d % N != 0 combinations are skipped."),
    seq_len: str = typer.Option(None, "--seq-len", help="Context lengths L, e.g. 64,128,256."),
    source: list[str] = typer.Option(None, "--source", help="Source spec (repeatable), e.g. markov:h=1.5 or text:builtin."),
    seeds: str = typer.Option(None, "--seeds", help="Seeds per grid point, '0,1' or '0:2'."),
    layers: int = typer.Option(None, "--layers", help="Transformer layers per member (preset: 1)."),
    budget_tokens: int = typer.Option(None, "--budget-tokens", help="Predicted tokens per member (preset: 786432 = 3 x 2^18; quick: 2^17)."),
    batch_tokens: int = typer.Option(None, "--batch-tokens", help="Tokens per step; batch = batch_tokens // L windows (preset: 2048; quick: 512)."),
    lr: float = typer.Option(None, "--lr", help="Peak AdamW learning rate (both presets: 1e-2)."),
    snapshot_every: int = typer.Option(None, "--snapshot-every", help="Save each member's weights every N steps, at step 0 and at the last step, as <member>/snapshots/step-NNNNNNN.safetensors (for `thermolens dynamics`); default 0: no snapshots. Members finished earlier are kept as they are."),
    executor: str = typer.Option("local", "--executor", help="local (worker processes), ray, or inline (this process, for debugging)."),
    workers: int = typer.Option(None, "--workers", help="Members trained at once (default: all cores)."),
    address: str = typer.Option(None, "--address", help="Ray address: auto, host:port (default: a local Ray instance)."),
    retries: int = typer.Option(1, "--retries", help="Attempts after a member's first failure before it is reported."),
    out: Path = typer.Option(Path("runs/family"), "--out", help="Family directory; rerunning continues it."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Accept an --out that holds something else."),
    json_out: bool = typer.Option(False, "--json", help="Print the headline numbers as one JSON object on stdout."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Train every member of the grid (widths x heads x context lengths x sources x seeds) to the same
    token budget, scan each member's heads (T* with CI and nulls) and save them under --out."""
    _train(locals())


def _config(opts: dict):
    import dataclasses

    from thermolens.experiments.family import train as family

    base = family.quick() if opts["quick"] else family.default()
    changes: dict = {}
    for option, field in (("widths", "widths"), ("heads", "heads"), ("seq_len", "seq_lens"), ("seeds", "seeds")):
        if opts[option] is not None:
            changes[field] = tuple(parse_ints(opts[option], name=f"--{option.replace('_', '-')}"))
    if opts["source"]:
        changes["sources"] = tuple(_canonical(s) for s in opts["source"])
    for option, field in (("layers", "n_layers"), ("budget_tokens", "budget_tokens"),
                          ("batch_tokens", "batch_tokens"), ("lr", "lr"), ("snapshot_every", "snapshot_every")):
        if opts[option] is not None:
            changes[field] = opts[option]
    return dataclasses.replace(base, **changes)


def _canonical(spec: str) -> str:
    """The source's canonical spec (defaults written out), so equal sources name equal members."""
    from thermolens.data.sources import parse_source

    return parse_source(spec).spec


@handle_errors
def _train(opts: dict) -> None:
    import warnings

    from thermolens import io
    from thermolens.experiments.family import train as family

    if opts["executor"] not in ("local", "ray", "inline"):
        raise ValueError(f"--executor {opts['executor']!r} is unknown; choose local, ray or inline")
    if opts["workers"] is not None and opts["workers"] < 1:
        raise ValueError(f"--workers {opts['workers']} must be >= 1")
    config = _config(opts)
    root = Path(opts["out"])
    stored = root / family.FAMILY_JSON
    if stored.is_file():
        previous = io.read_json(stored)["config"]
        differ = [k for k in _SHARED if previous.get(k) != io.to_jsonable(getattr(config, k))]
        if differ:
            raise ValueError(f"{root} holds a family trained with other settings ({', '.join(differ)} differ); "
                             "use another --out or the same settings")
    run_dir = io.prepare_run_dir(root, kind=KIND, overwrite=opts["overwrite"])
    plan = config.plan()
    for name, reason in plan.skipped:
        console.print(f"[yellow]skipped[/] {name}: {reason}")
    recorder = io.RunRecorder(run_dir, kind=KIND, command=io.command_line(),
                              config={"family": config.to_dict(), "executor": opts["executor"],
                                      "workers": opts["workers"], "address": opts["address"],
                                      "retries": opts["retries"]})
    with recorder:
        result = with_progress(
            lambda progress: family.train_family(config, run_dir, executor=opts["executor"], workers=opts["workers"],
                                                 address=opts["address"], retries=opts["retries"],
                                                 progress=progress),
            opts["quiet"], f"family ({len(plan.members)} members)",
        )
        io.write_table(run_dir / "members.parquet", result.members)
        recorder.timings["wall_s"] = result.wall_s
        recorder.summary = result.summary()
    mixed = False
    if len(result.members):  # the code-version check over every member now in the directory
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            mixed = family.load_family(run_dir).mixed_versions
        for w in caught:
            console.print(f"[yellow]warning:[/] {w.message}", soft_wrap=True)
    summary = {**result.summary(), "out": str(run_dir), "mixed_versions": mixed}
    if opts["json_out"]:
        print_json(summary)
    console.print(f"{summary['n_members']} members finished ({summary['n_failed']} failed, {summary['n_skipped']} "
                  f"skipped as d % N != 0) in {result.wall_s:.0f} s; wrote {run_dir}")
    for name, message in result.failed.items():
        console.print(f"[red]failed[/] {name}: {message.strip().splitlines()[-1] if message.strip() else message}")
    if result.failed:
        raise fail(f"{len(result.failed)} member(s) failed every attempt (tracebacks in their error.txt); rerun the same "
                   "command to retry them", EXIT_FAILURE)
