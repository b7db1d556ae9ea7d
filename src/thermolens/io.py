"""Run directories, manifests and atomic writes.

Every command that computes writes one run directory::

    manifest.json   command, full config, seed, package versions, git commit, timings, status
    *.parquet       tables
    *.png           figures
    report.html     where a report fits

Every file is written to a temporary name in the same directory and renamed into place, so an
interrupted command leaves either a finished file or none. ``manifest.json`` carries ``status``:
``"running"`` while a command works, ``"complete"`` once everything it promised is on disk.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"

_VERSIONED_PACKAGES = ("thermolens", "numpy", "scipy", "pandas", "torch", "transformers", "matplotlib")


# --------------------------------------------------------------------------------------------------
# atomic writes


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``, else delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def to_jsonable(obj: Any) -> Any:
    """Convert dataclasses, numpy scalars/arrays, paths and non-finite floats into plain JSON values.

    Non-finite floats become ``null``: JSON has no NaN, and a reader should see "no value", not a
    string it might parse as a number.
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, int):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if hasattr(obj, "tolist"):  # numpy arrays and scalars, torch tensors
        return to_jsonable(obj.tolist())
    return str(obj)


def dumps_json(obj: Any, *, indent: int | None = 2) -> str:
    return json.dumps(to_jsonable(obj), indent=indent, allow_nan=False)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, dumps_json(obj) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_table(path: str | os.PathLike, frame) -> Path:
    """Write a pandas DataFrame as Parquet, atomically."""
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
    return Path(path)


def read_table(path: str | os.PathLike):
    import pandas as pd

    return pd.read_parquet(path)


def save_figure(fig, path: str | os.PathLike, *, dpi: int = 130) -> Path:
    """Save a matplotlib figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


# --------------------------------------------------------------------------------------------------
# provenance


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in _VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit() -> str | None:
    """The commit of the thermolens source tree, when it is a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------------------------------
# run directories


def is_run_dir(path: str | os.PathLike, kind: str | None = None) -> bool:
    """True when ``path`` holds a thermolens manifest (of command ``kind``, if given)."""
    manifest = Path(path) / MANIFEST
    if not manifest.is_file():
        return False
    try:
        data = read_json(manifest)
    except (OSError, ValueError):
        return False
    return kind is None or data.get("kind") == kind


def check_run_dir(path: str | os.PathLike, *, kind: str, overwrite: bool = False) -> Path:
    """Check, without creating anything, that ``path`` may receive a run of command ``kind``.

    A missing or empty directory, or a previous run of the same kind, is accepted. Anything else is
    refused with a ``ValueError`` unless ``overwrite`` is set: a run never silently mixes its files
    with somebody else's.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"output path {path} exists and is a file; choose another --out")
    if path.is_dir() and any(path.iterdir()) and not overwrite and not is_run_dir(path, kind):
        raise ValueError(
            f"output directory {path} exists and is not a previous `{kind}` run; "
            "choose another --out or pass --overwrite"
        )
    return path


def prepare_run_dir(path: str | os.PathLike, *, kind: str, overwrite: bool = False) -> Path:
    """``check_run_dir``, then create the directory."""
    path = check_run_dir(path, kind=kind, overwrite=overwrite)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"terminated by signal {signum}")


@dataclasses.dataclass
class RunRecorder:
    """Writes ``manifest.json`` for one command: ``running`` at start, final status at the end.

    Use as a context manager; an exception marks the run ``failed`` and is re-raised. Ctrl-C
    (SIGINT) and SIGTERM mark it ``interrupted``: inside the block SIGTERM raises
    ``KeyboardInterrupt`` in the main thread, so a terminated command unwinds and never leaves its
    manifest ``running``. (Only ``kill -9`` can; commands that resume simply start over the manifest.)
    """

    run_dir: Path
    kind: str
    command: list[str]
    config: Any
    seed: int | None = None
    started: str = dataclasses.field(default_factory=now_iso)
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    summary: dict[str, Any] = dataclasses.field(default_factory=dict)
    _previous_sigterm: Any = dataclasses.field(default=None, repr=False)

    def _write(self, status: str, error: str | None = None) -> None:
        write_json(
            Path(self.run_dir) / MANIFEST,
            {
                "kind": self.kind,
                "status": status,
                "command": self.command,
                "config": self.config,
                "seed": self.seed,
                "started": self.started,
                "finished": None if status == "running" else now_iso(),
                "timings_s": self.timings,
                "summary": self.summary,
                "error": error,
                "versions": package_versions(),
                "git_commit": git_commit(),
                "platform": {"machine": platform.machine(), "system": platform.system()},
            },
        )

    def __enter__(self) -> RunRecorder:
        if threading.current_thread() is threading.main_thread():
            self._previous_sigterm = signal.signal(signal.SIGTERM, _raise_interrupt)
        self._write("running")
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)
        if exc_type is None:
            self._write("complete")
        elif issubclass(exc_type, KeyboardInterrupt):
            self._write("interrupted", str(exc) or "interrupted by the user")
        else:
            self._write("failed", f"{exc_type.__name__}: {exc}")
        return False


def command_line() -> list[str]:
    return [Path(sys.argv[0]).name, *sys.argv[1:]]
