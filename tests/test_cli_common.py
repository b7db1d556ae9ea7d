import pytest
from typer.testing import CliRunner

from thermolens.cli import app
from thermolens.cli._common import parse_grid, parse_ints


def test_grid_forms():
    assert parse_grid("1:3:3", name="T") == [1.0, 2.0, 3.0]
    assert parse_grid("1:100:3", name="T", spacing="log") == pytest.approx([1.0, 10.0, 100.0])
    assert parse_grid("0.5,1,2", name="T") == [0.5, 1.0, 2.0]
    assert parse_ints("0,1,2", name="seeds") == [0, 1, 2]
    assert parse_ints("0:3", name="seeds") == [0, 1, 2]


@pytest.mark.parametrize(
    "text, message",
    [("", "empty"), ("2,1", "ascending"), ("-1:2:4", "positive"), ("a:b", "cannot read"), ("1:2:0", "at least 1")],
)
def test_grid_rejects_bad_input(text, message):
    with pytest.raises(ValueError, match=message):
        parse_grid(text, name="temperature", positive=True)


def test_version_and_help():
    runner = CliRunner()
    assert runner.invoke(app, ["--version"]).output.startswith("thermolens ")
    assert runner.invoke(app, ["--help"]).exit_code == 0
