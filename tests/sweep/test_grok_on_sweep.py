"""The grokking study on the sweep runner: `thermolens grok --retries` continues a failed run from
its last intact checkpoint."""

from __future__ import annotations

import errno
import json

import torch
from typer.testing import CliRunner

from thermolens import io
from thermolens.cli import app

runner = CliRunner()
FAST = ["--max-steps", "30", "--every", "5", "--sweep-every", "15", "--checkpoint-every", "10", "--quiet"]


def test_retry_resumes_from_the_intact_checkpoint(tmp_path, monkeypatch):
    real_save = torch.save
    calls = {"n": 0}

    def failing_save(obj, path, *a, **k):  # the second checkpoint write hits a full disk, once
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, path, *a, **k)

    monkeypatch.setattr(torch, "save", failing_save)
    out = tmp_path / "retry"
    result = runner.invoke(app, ["grok", "--p", "7", "--train-fraction", "0.5", *FAST, "--retries", "1",
                                 "--out", str(out), "--no-figures", "--json"])
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)
    assert row["steps"] == 30
    run_dir = out / "runs" / "p7-seed0-frac0.5-wd1"
    assert io.read_json(run_dir / "result.json")["steps"] == 30
    assert not (run_dir / "error.txt").exists()  # removed once the retry succeeded
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["step"] == 30
    assert io.read_json(out / io.MANIFEST)["status"] == "complete"


def test_negative_retries_exit_2(tmp_path):
    result = runner.invoke(app, ["grok", "--p", "7", *FAST, "--retries", "-1", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "--retries -1 must be >= 0" in result.output
