import json

import numpy as np
import pandas as pd
import pytest

from thermolens import io


def test_atomic_write_leaves_no_temp_file_on_failure(tmp_path):
    target = tmp_path / "table.parquet"
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_table_roundtrip(tmp_path):
    frame = pd.DataFrame({"layer": [0, 1], "T_star": [0.5, np.nan]})
    io.write_table(tmp_path / "t.parquet", frame)
    pd.testing.assert_frame_equal(io.read_table(tmp_path / "t.parquet"), frame)


def test_json_turns_nonfinite_into_null(tmp_path):
    io.write_json(tmp_path / "x.json", {"a": np.float64("nan"), "b": np.arange(3), "c": float("inf")})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": None, "b": [0, 1, 2], "c": None}


def test_prepare_run_dir_refuses_foreign_directory(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="--overwrite"):
        io.prepare_run_dir(tmp_path, kind="scan")
    assert io.prepare_run_dir(tmp_path, kind="scan", overwrite=True) == tmp_path


def test_run_recorder_marks_status(tmp_path):
    with io.RunRecorder(tmp_path, kind="scan", command=["thermolens", "scan"], config={"x": 1}):
        assert io.read_json(tmp_path / io.MANIFEST)["status"] == "running"
    assert io.read_json(tmp_path / io.MANIFEST)["status"] == "complete"
    assert io.is_run_dir(tmp_path, "scan") and not io.is_run_dir(tmp_path, "grok")
    with pytest.raises(KeyboardInterrupt):
        with io.RunRecorder(tmp_path, kind="scan", command=[], config={}):
            raise KeyboardInterrupt
    assert io.read_json(tmp_path / io.MANIFEST)["status"] == "interrupted"
