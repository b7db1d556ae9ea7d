"""`thermolens optimize compare|diagnose`: JSON output, run directories, resume, bad input (exit 2)."""

import json

import pytest
from typer.testing import CliRunner

from thermolens import io
from thermolens.cli import app

runner = CliRunner()
GROK = ["--task", "grokking", "--p", "7", "--train-fraction", "0.5", "--max-steps", "20", "--every", "4",
        "--sharpness-every", "8", "--stop-window", "0", "--quiet"]


def _invoke(*args):
    return runner.invoke(app, ["optimize", *args])


def test_grokking_compare_then_diagnose(tmp_path):
    out = tmp_path / "opt"
    args = [*GROK, "--seeds", "0,1", "--optimizers", "adamw,critical", "--out", str(out)]
    result = _invoke("compare", *args, "--json")
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)
    assert row["task"] == "grokking" and [r["optimizer"] for r in row["summary"]] == ["adamw", "critical"]
    assert all(r["n_runs"] == 2 for r in row["summary"]) and "AdamW" in row["verdict"]
    for name in ("runs.parquet", "summary.parquet", "verdict.txt", "curves.png"):
        assert (out / name).is_file(), name
    for run in ("adamw-default-seed0", "critical-default-seed1"):
        for name in ("result.json", "history.parquet", "temperature.parquet", "checkpoint.pt"):
            assert (out / "runs" / run / name).is_file(), (run, name)
    assert io.read_json(out / io.MANIFEST)["status"] == "complete"
    controlled = io.read_table(out / "runs" / "critical-default-seed0" / "temperature.parquet")
    assert len(controlled) > 0 and (controlled["T"] > 0).all()

    again = _invoke("compare", *args, "--json")  # finished runs are read back, not redone
    assert again.exit_code == 0 and json.loads(again.stdout)["summary"] == row["summary"]
    other = _invoke("compare", *args, "--lr", "0.01")
    assert other.exit_code == 2 and "other settings" in other.output

    diag = _invoke("diagnose", str(out), "--json", "--quiet")
    assert diag.exit_code == 0, diag.output
    runs = json.loads(diag.stdout)["runs"]
    assert len(runs) == 4
    for name in ("sharpness.parquet", "temperature.parquet", "spectra.parquet", "sharpness.png", "temperature.png",
                 "spectra.png"):
        assert (out / "diagnose" / name).is_file(), name
    sharp = io.read_table(out / "diagnose" / "sharpness.parquet")
    assert (sharp["gd_threshold"] == 2 / 1e-3).all() and (sharp["sharpness"] > 0).all()


def test_lm_compare_on_a_markov_source(tmp_path):
    out = tmp_path / "lm"
    result = _invoke("compare", "--task", "lm", "--source", "markov:h=1.5,vocab=8", "--steps", "12", "--seq-len", "8",
                     "--batch-size", "4", "--seeds", "0", "--optimizers", "adamw,kfac", "--out", str(out), "--json",
                     "--quiet", "--no-figures")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)["summary"]
    assert {r["optimizer"] for r in summary} == {"adamw", "kfac"}
    assert all(r["val_loss_at_12_mean"] > 0 for r in summary)


@pytest.mark.parametrize("args, words", [
    (["--optimizers", "adamw,lion"], "lion"),
    (["--task", "vision"], "task"),
    (["--init", "warm"], "warm"),
    (["--optimizer-kwargs", "{oops"], "not JSON"),
    (["--optimizers", "critical", "--optimizer-kwargs", '{"critical": {"damping": 0}}'], "damping"),
    (["--optimizers", "critical", "--optimizer-kwargs", '{"critical": {"temperature_kwargs": {"target": -1}}}'], ""),
])
def test_bad_input_exits_2_with_one_line(tmp_path, args, words):
    result = _invoke("compare", *GROK, "--seeds", "0", "--out", str(tmp_path / "bad"), *args)
    assert result.exit_code == 2, result.output
    assert words in result.output and "Traceback" not in result.output


def test_diagnose_of_something_else_exits_2(tmp_path):
    assert _invoke("diagnose", str(tmp_path / "missing")).exit_code == 2
    result = _invoke("diagnose", str(tmp_path))
    assert result.exit_code == 2 and "optimize compare" in result.output
