"""`thermolens grok`: JSON output, run directory, resume rules, bad input (exit 2)."""

import errno
import json

import pytest
import torch
from typer.testing import CliRunner

from thermolens import io
from thermolens.cli import app

runner = CliRunner()
FAST = ["--max-steps", "30", "--every", "5", "--sweep-every", "15", "--checkpoint-every", "10", "--quiet"]


def _invoke(*args):
    return runner.invoke(app, ["grok", *args])


def test_single_run_json_and_run_directory(tmp_path):
    out = tmp_path / "one"
    result = _invoke("--p", "7", "--seed", "1", "--train-fraction", "0.5", *FAST, "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)
    for key in ("p", "seed", "onset_step", "peak_step", "lead_steps"):
        assert key in row
    assert row["p"] == 7 and row["seed"] == 1
    manifest = io.read_json(out / io.MANIFEST)
    assert manifest["status"] == "complete" and manifest["kind"] == "grok"
    run_dir = out / "runs" / "p7-seed1-frac0.5-wd1"
    for name in ("history.parquet", "sweep.parquet", "tstar.parquet", "result.json", "checkpoint.pt", "grok.png",
                 "sweep.png", "tstar.png"):
        assert (run_dir / name).is_file(), name
    assert (out / "runs.parquet").is_file() and (out / "study.png").is_file()


def test_study_json_resume_and_refusals(tmp_path):
    out = tmp_path / "study"
    args = ["--p", "5,7", "--seeds", "0,1", "--train-fraction", "0.5", *FAST, "--workers", "1", "--no-figures"]
    result = _invoke(*args, "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert len(data["runs"]) == 4 and {r["p"] for r in data["summary"]} == {5, 7}

    again = _invoke("--resume", str(out), "--json", "--quiet", "--no-figures")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["runs"] == data["runs"]

    differ = _invoke("--resume", str(out), "--max-steps", "40", "--p", "5,7,11")
    assert differ.exit_code == 2
    assert "base.max_steps" in differ.output and "ps" in differ.output

    exists = _invoke(*args, "--out", str(out))
    assert exists.exit_code == 2 and "--resume" in exists.output


@pytest.mark.parametrize("args,words", [
    (["--p", "2"], "p=2"),
    (["--p", "15", "--op", "div"], "not prime"),
    (["--train-fraction", "1.5"], "between 0 and 1"),
    (["--train-fraction", "0"], "between 0 and 1"),
    (["--p", "x"], "cannot read --p"),
    (["--fraction-for", "19:0.5"], "P=FRACTION"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, args, words):
    result = _invoke(*args, *FAST, "--out", str(tmp_path / "bad"))
    assert result.exit_code == 2
    assert words in result.output
    assert "Traceback" not in result.output


def test_resume_of_a_directory_that_is_not_a_study(tmp_path):
    result = _invoke("--resume", str(tmp_path))
    assert result.exit_code == 2 and "not a `grok` run directory" in result.output


def test_disk_full_while_checkpointing_is_reported_and_previous_checkpoint_kept(tmp_path, monkeypatch):
    real_save = torch.save
    calls = {"n": 0}

    def failing_save(obj, path, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, path, *a, **k)

    monkeypatch.setattr(torch, "save", failing_save)
    out = tmp_path / "full"
    result = _invoke("--p", "7", "--train-fraction", "0.5", *FAST, "--out", str(out), "--no-figures")
    assert result.exit_code == 1
    assert "previous checkpoint is intact" in result.output
    state = torch.load(out / "runs" / "p7-seed0-frac0.5-wd1" / "checkpoint.pt", weights_only=True)
    assert state["step"] == 10
    assert io.read_json(out / io.MANIFEST)["status"] == "failed"
