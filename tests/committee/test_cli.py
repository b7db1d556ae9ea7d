"""The `thermolens committee` commands: JSON output, run directories, bad input -> exit 2."""

import json

import pytest
from typer.testing import CliRunner

from thermolens.cli import app

runner = CliRunner()


def _json(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_se_json():
    out = _json(runner.invoke(app, ["committee", "se", "--K", "1", "--prior", "binary", "--alpha", "0.5,1,1.5",
                                    "--json", "--quiet"]))
    assert {"alpha", "q", "eps_g", "free_entropy", "branches"} <= set(out)
    assert out["alpha"] == [0.5, 1.0, 1.5]
    assert len(out["q"]) == 3 and out["q"][2] == [[1.0]]  # beyond alpha_alg = 1.493: perfect
    assert out["n_not_converged"] == 0


def test_se_run_directory(tmp_path):
    res = runner.invoke(app, ["committee", "se", "--K", "2", "--alpha", "0:0.5:2", "--out", str(tmp_path / "se"),
                              "--quiet"])
    assert res.exit_code == 0, res.output
    manifest = json.loads((tmp_path / "se" / "manifest.json").read_text())
    assert manifest["status"] == "complete" and (tmp_path / "se" / "se.parquet").is_file()


def test_thresholds_json_gaussian_perceptron_has_none():
    out = _json(runner.invoke(app, ["committee", "thresholds", "--K", "1", "--prior", "gaussian", "--alpha-max", "1",
                                    "--step", "0.5", "--json", "--quiet"]))
    assert out["alpha_spec"] is None and out["alpha_it"] is None and out["alpha_alg"] is None
    assert out["order"] is None


def test_amp_json():
    out = _json(runner.invoke(app, ["committee", "amp", "--K", "1", "--n", "600", "--alpha", "1", "--seeds", "0,1",
                                    "--n-test", "2000", "--json", "--quiet"]))
    assert out["seeds"] == [0, 1] and len(out["converged"]) == 2
    assert 0.0 < out["eps_test"] < 0.5 and out["se"]["converged"]


def test_phase_diagram_writes_figure(tmp_path):
    res = runner.invoke(app, ["committee", "phase-diagram", "--K", "1", "--prior", "gaussian", "--alpha-max", "1",
                              "--step", "0.5", "--amp-alpha", "1", "--n", "500", "--seeds", "0",
                              "--large-k-alpha", "1,8", "--out", str(tmp_path / "pd"), "--json", "--quiet"])
    out = _json(res)
    for name in ("manifest.json", "se.parquet", "amp.parquet", "large_k.parquet", "phase_diagram.png"):
        assert (tmp_path / "pd" / name).is_file()
    assert out["order"] is None and len(out["amp"]) == 1


@pytest.mark.parametrize("args, message", [
    (["se", "--K", "0"], "K=0"),
    (["se", "--prior", "laplace"], "unknown prior"),
    (["se", "--activation", "relu"], "unknown activation"),
    (["se", "--alpha=-1:2:3"], "must be >= 0"),
    (["se", "--K", "4"], "odd K"),
    (["se", "--K", "13", "--prior", "binary"], "odd K = 1, 3, ..., 11"),
    (["amp", "--K", "1", "--n", "5"], "too small"),
    (["amp", "--alpha", "-2"], "alpha"),
    (["thresholds", "--alpha-max", "0"], "alpha_max"),
    (["thresholds", "--alpha-min", "5", "--alpha-max", "3"], "alpha_min=5.0"),
    (["thresholds", "--alpha-min", "2", "--alpha-max", "3", "--step", "1.5"], "alpha_max - alpha_min"),
])
def test_bad_input_exits_2(args, message):
    res = runner.invoke(app, ["committee", *args, "--quiet"])
    assert res.exit_code == 2
    assert message in res.output


def test_thresholds_window_finds_binary_perceptron_transition():
    # a window around the transition: Gyorgyi (1990) alpha_IT = 1.245, Barbier et al. (2019) alpha_alg = 1.493
    out = _json(runner.invoke(app, ["committee", "thresholds", "--K", "1", "--prior", "binary", "--alpha-min", "1.1",
                                    "--alpha-max", "1.6", "--step", "0.1", "--alpha-tol", "1e-4", "--json", "--quiet"]))
    assert out["alpha_min"] == 1.1 and out["order"] == "first"
    assert out["alpha_it"] == pytest.approx(1.245, abs=1e-3) and out["alpha_alg"] == pytest.approx(1.493, abs=1e-3)
