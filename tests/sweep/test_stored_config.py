"""check_stored_config: a study resumes only with its own settings; fields added later count as defaults."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from thermolens import io
from thermolens.runner.study import check_stored_config


@dataclass(frozen=True)
class _Inner:
    a: int = 1
    added_later: int = 0


@dataclass(frozen=True)
class _Config:
    name: str = "x"
    inner: _Inner = _Inner()


def test_first_run_records_and_same_config_resumes(tmp_path):
    check_stored_config(_Config(), tmp_path, "test")
    assert io.read_json(tmp_path / "study.json") == {"name": "x", "inner": {"a": 1, "added_later": 0}}
    check_stored_config(_Config(), tmp_path, "test")


def test_a_field_added_after_the_run_counts_as_its_default(tmp_path):
    io.write_json(tmp_path / "study.json", {"name": "x", "inner": {"a": 1}})  # written before added_later existed
    check_stored_config(_Config(), tmp_path, "test")
    with pytest.raises(ValueError, match="inner.added_later|added_later"):
        check_stored_config(_Config(inner=_Inner(added_later=5)), tmp_path, "test")


def test_another_config_is_refused_naming_the_keys(tmp_path):
    check_stored_config(_Config(), tmp_path, "test")
    with pytest.raises(ValueError, match="name"):
        check_stored_config(_Config(name="y"), tmp_path, "test")
    io.write_json(tmp_path / "study.json", {"name": "x", "unknown": 1})  # not readable as this config
    with pytest.raises(ValueError, match="unknown"):
        check_stored_config(_Config(), tmp_path, "test")
