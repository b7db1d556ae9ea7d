"""`thermolens fit powerlaw|branching`: JSON headline numbers, run directories, file parsing, bad input -> exit 2."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from thermolens import stats
from thermolens.cli import app
from thermolens.io import read_json, read_table

runner = CliRunner()


def _invoke(args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture()
def sizes_file(tmp_path):
    x = stats.sample_power_law(2.2, 3, 3000, discrete=True, seed=1)
    path = tmp_path / "sizes.txt"
    path.write_text("\n".join(str(int(v)) for v in x) + "\n")
    return path, x


def test_powerlaw_json_and_run_directory(sizes_file, tmp_path):
    path, x = sizes_file
    out = tmp_path / "run"
    res = _invoke(["fit", "powerlaw", path, "--discrete", "--bootstrap", 8, "--jobs", 1, "--quiet",
                   "--compare", "exponential,truncated_power_law", "--json", "--out", out])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    fit = stats.fit_power_law(x, discrete=True)
    assert data["alpha"] == pytest.approx(fit.alpha) and data["xmin"] == fit.xmin and data["n_tail"] == fit.n_tail
    assert 0 <= data["p_value"] <= 1 and data["n_boot"] == 8
    assert set(data["comparisons"]) == {"exponential", "truncated_power_law"}
    assert data["comparisons"]["truncated_power_law"]["nested"] is True
    manifest = read_json(out / "manifest.json")
    assert manifest["status"] == "complete" and manifest["kind"] == "fit-powerlaw"
    assert (out / "ccdf.png").stat().st_size > 0
    assert read_table(out / "fit.parquet")["alpha"][0] == pytest.approx(fit.alpha)
    assert len(read_table(out / "comparisons.parquet")) == 2


def test_header_and_columns_are_parsed(tmp_path):
    x = stats.sample_power_law(2.5, 1.0, 800, seed=2)
    path = tmp_path / "table.csv"
    path.write_text("id,size\n" + "\n".join(f"{i},{float(v)!r}" for i, v in enumerate(x)) + "\n")
    by_name = _invoke(["fit", "powerlaw", path, "--column", "size", "--json"])
    by_index = _invoke(["fit", "powerlaw", path, "--column", "1", "--json"])
    assert by_name.exit_code == 0, by_name.output
    assert json.loads(by_name.stdout)["alpha"] == pytest.approx(stats.fit_power_law(x).alpha)
    assert json.loads(by_index.stdout) == json.loads(by_name.stdout)
    res = _invoke(["fit", "powerlaw", path])
    assert res.exit_code == 2 and "choose one with --column" in res.output


def test_branching_json_and_run_directory(tmp_path):
    a = stats.simulate_branching(0.95, n_steps=20000, h=5.0, subsampling=0.1, seed=3)[0]
    path = tmp_path / "activity.txt"
    path.write_text("activity\n" + "\n".join(str(int(v)) for v in a) + "\n")
    out = tmp_path / "br"
    res = _invoke(["fit", "branching", path, "--kmax", 100, "--bootstrap", 20, "--json", "--out", out])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["m"] == pytest.approx(stats.branching_ratio(a, 100, n_boot=0).m)
    assert abs(data["m"] - 0.95) < 0.02 and data["m_conventional"] < data["m"]
    assert (out / "coefficients.png").exists() and len(read_table(out / "coefficients.parquet")) == 100


@pytest.mark.parametrize(
    "content, extra, message",
    [
        ("", [], "holds no numbers"),
        ("1\n2\nnan\n" * 40, [], "NaN"),
        ("1\n0\n2\n" * 40, [], "<= 0"),
        ("1.5\n2\n3\n" * 40, ["--discrete"], "integers"),
        ("4\n" * 100, [], "all 100 values"),
        ("\n".join(str(i) for i in range(1, 101)), ["--xmin", 90], "11 points in the tail"),
        ("\n".join(str(i) for i in range(1, 101)), ["--xmin", 1000], "above the largest"),
        ("1,2\n3\n", [], "columns"),
        ("1\nabc\n2\n", [], "not a number"),
        ("\n".join(str(i) for i in range(1, 101)), ["--bootstrap", 0], "at least 1 replicate"),
        ("\n".join(str(i) for i in range(1, 101)), ["--compare", "gamma"], "unknown --compare"),
        ("\n".join(str(i) for i in range(1, 101)), ["--column", "7"], "out of range"),
    ],
)
def test_powerlaw_bad_input_exits_2_with_one_line(tmp_path, content, extra, message):
    path = tmp_path / "x.txt"
    path.write_text(content)
    res = _invoke(["fit", "powerlaw", path, *extra])
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_missing_file_and_bad_branching_input(tmp_path):
    res = _invoke(["fit", "powerlaw", tmp_path / "nope.txt"])
    assert res.exit_code == 2 and "does not exist" in res.output
    path = tmp_path / "a.txt"
    path.write_text("\n".join("5" for _ in range(500)))
    res = _invoke(["fit", "branching", path, "--kmax", 10])
    assert res.exit_code == 2 and "constant" in res.output
    path.write_text("\n".join(str(v) for v in np.random.default_rng(0).poisson(5, 500)))
    res = _invoke(["fit", "branching", path, "--kmax", 10, "--bootstrap", 0])
    assert res.exit_code == 2 and "at least 1" in res.output
