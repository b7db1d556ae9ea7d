"""The ``thermolens`` command line. One thin module per command; heavy imports happen inside them."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="thermolens",
    help="A thermodynamic lens on transformers: phase transitions and criticality, measured honestly.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"thermolens {version('thermolens')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """thermolens: measure phase transitions and criticality in attention networks."""


from thermolens.cli.grok import grok as _grok  # noqa: E402

app.command("grok")(_grok)


def main() -> None:
    app()
