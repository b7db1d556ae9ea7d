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


# One thin module per command (DESIGN.md §2); each imports its heavy dependencies inside the command.
from thermolens.cli import scan as _scan  # noqa: E402
from thermolens.cli.fit import app as _fit_app  # noqa: E402
from thermolens.cli.meanfield import app as _meanfield_app  # noqa: E402
from thermolens.cli.committee import app as _committee_app  # noqa: E402
from thermolens.cli import grok as _grok  # noqa: E402

app.command("scan")(_scan.scan)
app.add_typer(_fit_app, name="fit")
app.add_typer(_meanfield_app, name="meanfield")
app.add_typer(_committee_app, name="committee")
app.command("grok")(_grok.grok)
from thermolens.cli import avalanches as _avalanches  # noqa: E402

app.command("avalanches")(_avalanches.avalanches)
from thermolens.cli.family import app as _family_app  # noqa: E402
from thermolens.cli.scaling import app as _scaling_app  # noqa: E402

app.add_typer(_family_app, name="family")
app.add_typer(_scaling_app, name="scaling")

from thermolens.cli.optimize import app as _optimize_app  # noqa: E402

app.add_typer(_optimize_app, name="optimize")

from thermolens.cli.claims import app as _claims_app  # noqa: E402

app.add_typer(_claims_app, name="claims")


def main() -> None:
    app()

from thermolens.cli import dynamics as _dynamics  # noqa: E402

app.command("dynamics")(_dynamics.dynamics)
