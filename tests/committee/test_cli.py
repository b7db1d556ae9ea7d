"""The `thermolens committee` commands: JSON output, run directories, bad input -> exit 2."""

import json

import numpy as np
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
    out = _json(runner.invoke(app, ["committee", "amp", "--K", "1", "--n", "600", "--alpha", "1,2", "--seeds", "0,1",
                                    "--n-test", "2000", "--json", "--quiet"]))
    assert out["seeds"] == [0, 1] and out["alpha"] == [1.0, 2.0] and out["converged_random"] == [2, 2]
    assert all(0.0 < e < 0.5 for e in out["eps_test_random"]) and len(out["success_informed"]) == 2
    # the Gaussian perceptron has no transition: both SE branches coincide, and AMP from either start agrees
    for key in ("q_d", "eps_plugin"):
        np.testing.assert_allclose(out["se"]["uninformed"][key], out["se"]["informed"][key], atol=1e-6)
    np.testing.assert_allclose(out["q_d_random"], out["se"]["uninformed"]["q_d"], atol=0.08)
    np.testing.assert_allclose(out["q_d_informed"], out["q_d_random"], atol=0.03)


def test_gap_writes_figure_and_tables(tmp_path):
    res = runner.invoke(app, ["committee", "gap", "--K", "2", "--prior", "binary", "--alpha", "1.4,2.4",
                              "--n", "200,400", "--seeds", "0:2", "--learners", "none", "--n-test", "1000",
                              "--out", str(tmp_path / "g"), "--json", "--quiet"])
    out = _json(res)
    for name in ("manifest.json", "amp.parquet", "se.parquet", "gap.json", "gap.png"):
        assert (tmp_path / "g" / name).is_file()
    assert set(out["by_n"]) == {"200", "400"} and out["n"] == 400
    # alpha = 2.4 is above alpha_alg = 1.977 (SE): both SE branches are at perfect learning there
    assert out["se"]["uninformed"]["eps_plugin"][1] == 0.0 and out["se"]["informed"]["eps_plugin"][1] == 0.0
    assert out["thresholds"]["alpha_alg"] == 2.4 and set(out["crossover"]) == {"random", "informed"}


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
    (["amp", "--K", "1", "--n", "5"], "n >= 10"),
    (["amp", "--alpha", "-2"], "alpha"),
    (["amp", "--K", "0"], "K=0"),
    (["amp", "--K", "4"], "needs odd K"),
    (["amp", "--K", "13"], "odd K <= 11"),
    (["amp", "--n", "20", "--alpha", "0.01"], "fewer than 1 sample"),
    (["amp", "--prior", "laplace"], "unknown prior"),
    (["gap", "--activation", "relu"], "unknown activation"),
    (["gap", "--learners", "sgd"], "learners"),
    (["gap", "--start", "warm"], "starts"),
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
