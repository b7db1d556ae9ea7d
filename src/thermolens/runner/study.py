"""The contract every study keeps, so that ``thermolens claims`` composes them without special cases.

A study is four things:

* a **config**: a frozen dataclass (nested dataclasses and tuples allowed) that round-trips through
  JSON with :func:`config_to_dict` / :func:`config_from_dict`;
* a **run** ``run(config, run_dir) -> result`` that computes and writes everything into ``run_dir``;
* a **load** ``load(run_dir) -> result`` that reads a finished run directory back, computing nothing;
* a **summary** ``summary(result) -> dict`` of JSON headline numbers.

Verdicts are functions of a loaded result; they live with the claims that use them
(``thermolens.claims``), because one study can answer several claims (the model family answers
Theorems 1 and 3).

A study is named by the import path of its :class:`Study` object (``"module:ATTRIBUTE"``), so this
module — infrastructure — never imports the science above it. :func:`run_piece` is the sweep-job
function (``thermolens.runner.sweep``) that runs any study from ``{"study": path, "config": {...}}``:
pieces of a claims report are therefore resumable, retried and dispatchable to Ray like any sweep job.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from thermolens import io

__all__ = [
    "INNER_EXECUTOR_ENV", "Study", "check_stored_config", "config_from_dict", "config_to_dict", "inner_executor", "load_piece", "read_stored_config", "resolve_study", "run_jobs",
    "run_piece",
]

INNER_EXECUTOR_ENV = "THERMOLENS_PIECE_EXECUTOR"

C = TypeVar("C")
R = TypeVar("R")


@dataclass(frozen=True)
class Study(Generic[C, R]):
    """One study: its config type and the functions that run it, load it back and summarize it."""

    name: str
    config_type: type[C]
    run: Callable[[C, Path], R]
    load: Callable[[Path], R]
    summary: Callable[[R], dict[str, Any]]

    def config(self, values: dict[str, Any] | None = None) -> C:
        """The study's config from a JSON dict (missing keys keep their defaults)."""
        return config_from_dict(self.config_type, values or {})


def config_to_dict(config: Any) -> dict[str, Any]:
    """A frozen config as JSON values (nested dataclasses become dicts, tuples lists)."""
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"a study config must be a dataclass instance, got {type(config).__name__}")
    return io.to_jsonable(dataclasses.asdict(config))


def _coerce(hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return config_from_dict(hint, value)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return value if value is None or len(args) != 1 else _coerce(args[0], value)
    if origin is tuple and isinstance(value, list):
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v) for v in value)
        if args and len(args) == len(value):
            return tuple(_coerce(a, v) for a, v in zip(args, value))
        return tuple(value)
    if isinstance(value, list):
        return tuple(_coerce(Any, v) for v in value)
    return value


def config_from_dict(config_type: type[C], values: dict[str, Any]) -> C:
    """Build ``config_type`` from JSON values: lists become tuples, dicts nested dataclasses.

    Unknown keys are refused (naming them) rather than dropped: a config read back must be the one
    that was written.
    """
    fields = {f.name for f in dataclasses.fields(config_type) if f.init}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ValueError(f"{config_type.__name__} has no field(s) {unknown}; valid: {sorted(fields)}")
    hints = typing.get_type_hints(config_type)
    return config_type(**{k: _coerce(hints.get(k, Any), v) for k, v in values.items()})


def resolve_study(path: str) -> Study:
    """The :class:`Study` named ``"module:ATTRIBUTE"``."""
    module, _, attr = path.partition(":")
    if not attr:
        raise ValueError(f"study {path!r} must read 'module:ATTRIBUTE', e.g. 'thermolens.experiments.scan:STUDY'")
    study = getattr(importlib.import_module(module), attr)
    if not isinstance(study, Study):
        raise TypeError(f"{path} is a {type(study).__name__}, not a Study")
    return study


def run_piece(config: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Sweep-job function: run the study ``config["study"]`` on ``config["config"]`` into ``run_dir``."""
    study = resolve_study(config["study"])
    result = study.run(study.config(config.get("config")), Path(run_dir))
    return study.summary(result)


def load_piece(study_path: str, run_dir: str | Path) -> Any:
    """A finished piece's result, read back by its study's ``load``."""
    return resolve_study(study_path).load(Path(run_dir))


def inner_executor() -> str:
    """The sweep executor a study should use for its own jobs when it runs as a piece.

    ``"local"`` (every core) when the pieces run one after another in one process, which sets
    ``THERMOLENS_PIECE_EXECUTOR``; ``"inline"`` otherwise (pieces already spread over Ray or worker
    processes, which must not each start their own pool).
    """
    value = os.environ.get(INNER_EXECUTOR_ENV, "inline")
    return value if value in ("local", "inline") else "inline"


def check_stored_config(config: Any, run_dir: Path, what: str, *, name: str = "study.json") -> None:
    """Record ``config`` in ``run_dir/name`` on a study's first run; refuse to continue another config.

    A study that resumes in its run directory calls this first, so a half-finished run is never
    finished with different settings (the differing keys are named). Fields added to the config after
    the run was recorded count as their defaults, so a new option left at its default resumes old runs.
    """
    from thermolens.runner.sweep import differing_keys

    path = Path(run_dir) / name
    if path.is_file():
        stored = io.read_json(path)
        try:
            stored = config_to_dict(config_from_dict(type(config), stored))
        except (TypeError, ValueError):
            pass  # not readable as this config: compare as written, which names the differing keys
        differ = differing_keys(stored, config_to_dict(config))
        if differ:
            raise ValueError(f"{run_dir} holds a {what} run with another config ({', '.join(differ)} differ); "
                             "give another run directory or the same config")
    else:
        io.write_json(path, config_to_dict(config))


def run_jobs(jobs: list, root: Path, *, executor: str | None = None) -> dict[str, dict[str, Any]]:
    """Run (or finish) a study's own sweep ``jobs`` under ``root``; their summaries by name.

    The executor defaults to :func:`inner_executor`. Raises ``RuntimeError`` naming the jobs that
    failed every attempt (their tracebacks stay in their ``error.txt``), so running the study again
    retries exactly those.
    """
    from thermolens.runner.sweep import run_sweep

    result = run_sweep(jobs, root, executor=executor or inner_executor())
    if result.failed:
        name, error = next(iter(result.failed.items()))
        raise RuntimeError(
            f"{len(result.failed)} job(s) failed every attempt, e.g. {name}: {error.strip()[-400:]}; "
            f"tracebacks in their error.txt under {root}; run again to retry them"
        )
    return result.done


def read_stored_config(config_type: type[C], run_dir: Path, what: str, *, name: str = "study.json") -> C:
    """The config a study recorded with :func:`check_stored_config`, for its ``load``."""
    path = Path(run_dir) / name
    if not path.is_file():
        raise ValueError(f"{run_dir} is not a {what} run (no {name}); run the study there first")
    return config_from_dict(config_type, io.read_json(path))
