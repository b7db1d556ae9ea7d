"""Shared pieces of the command line: error handling, JSON output, grids, progress bars.

Conventions (DESIGN.md §3): human output goes to stderr, ``--json`` prints one JSON object to
stdout; exit code 0 on success, 2 on bad input or usage (one line saying what to fix), 1 on an
unexpected failure. Library code signals bad input with ``ValueError`` (or ``FileNotFoundError``).
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import typer
from rich.console import Console

console = Console(stderr=True, highlight=False, soft_wrap=True)  # long lines stay whole when piped

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

EXIT_BAD_INPUT = 2
EXIT_FAILURE = 1


def fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    """Print a one-line error to stderr and return the ``typer.Exit`` to raise."""
    console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    return typer.Exit(code)


def handle_errors(fn: F) -> F:
    """Turn library exceptions into the exit-code contract.

    ``ValueError``/``FileNotFoundError`` -> one line, exit 2. Ctrl-C -> one line, exit 2 (files are
    written atomically, so nothing half-written is left). Anything else -> exit 1 with the message;
    set ``THERMOLENS_DEBUG=1`` for the traceback.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            if os.environ.get("THERMOLENS_DEBUG"):
                raise
            raise fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
        except KeyboardInterrupt:
            raise fail("interrupted; finished files were kept, nothing half-written was left") from None
        except Exception as exc:  # noqa: BLE001 - the CLI's last line of defence
            if os.environ.get("THERMOLENS_DEBUG"):
                raise
            raise fail(
                f"unexpected {type(exc).__name__}: {exc} (set THERMOLENS_DEBUG=1 for the traceback)",
                EXIT_FAILURE,
            ) from None

    return wrapper  # type: ignore[return-value]


def print_json(obj: Any) -> None:
    """Print one JSON object to stdout (the machine-readable channel)."""
    from thermolens.io import dumps_json

    sys.stdout.write(dumps_json(obj, indent=None) + "\n")
    sys.stdout.flush()


def parse_grid(
    text: str, *, name: str, spacing: str = "linear", positive: bool = False, minimum: float | None = None
) -> list[float]:
    """Parse a grid: ``"a:b:n"`` (n points from a to b), ``"x,y,z"`` (explicit, ascending) or ``"x"``.

    ``spacing`` is ``"linear"`` or ``"log"`` for the ``a:b:n`` form. Raises ``ValueError`` naming
    ``name`` when the grid is empty, unsorted, or violates ``positive``/``minimum``.
    """
    import numpy as np

    text = text.strip()
    if not text:
        raise ValueError(f"{name} grid is empty; give 'start:stop:count' or 'x,y,z'")
    try:
        if ":" in text:
            parts = text.split(":")
            if len(parts) != 3:
                raise ValueError
            start, stop, count = float(parts[0]), float(parts[1]), int(parts[2])
            if count < 1:
                raise ValueError(f"{name} grid '{text}' asks for {count} points; need at least 1")
            if stop < start:
                raise ValueError(f"{name} grid '{text}' is not ascending; write it as start:stop:count with start <= stop")
            if spacing == "log":
                if start <= 0:
                    raise ValueError(f"{name} grid '{text}' must be positive for log spacing")
                values = np.geomspace(start, stop, count)
            else:
                values = np.linspace(start, stop, count)
        else:
            values = np.array([float(v) for v in text.split(",") if v.strip()])
    except ValueError as exc:
        if str(exc):
            raise
        raise ValueError(f"cannot read {name} grid '{text}'; give 'start:stop:count' or 'x,y,z'") from None
    if values.size == 0:
        raise ValueError(f"{name} grid is empty; give 'start:stop:count' or 'x,y,z'")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} grid '{text}' has non-finite values")
    if np.any(np.diff(values) <= 0) and values.size > 1:
        raise ValueError(f"{name} grid '{text}' must be strictly ascending")
    if positive and np.any(values <= 0):
        raise ValueError(f"{name} grid '{text}' must be positive")
    if minimum is not None and np.any(values < minimum):
        raise ValueError(f"{name} grid '{text}' must be >= {minimum}")
    return [float(v) for v in values]


def parse_ints(text: str, *, name: str) -> list[int]:
    """Parse ``"0,1,2"`` or ``"0:3"`` (a half-open range) into a list of ints."""
    text = text.strip()
    try:
        if ":" in text:
            lo, hi = (int(v) for v in text.split(":"))
            values = list(range(lo, hi))
        else:
            values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"cannot read {name} '{text}'; give 'a,b,c' or 'start:stop'") from None
    if not values:
        raise ValueError(f"{name} '{text}' is empty")
    return values


def track(iterable: Iterable[T], *, total: int | None, description: str, quiet: bool) -> Iterator[T]:
    """A rich progress bar on stderr around ``iterable`` (silent with ``quiet``)."""
    if quiet:
        yield from iterable
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(description, total=total)
        for item in iterable:
            yield item
            progress.advance(task)


def with_progress(fn: Callable[[Any], T], quiet: bool, label: str) -> T:
    """Call ``fn(progress)`` with a callback drawing a rich progress bar on stderr (none when quiet)."""
    if quiet:
        return fn(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console) as bar:
        task = bar.add_task(label, total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return fn(progress)


def read_text_files(paths: list[Any] | None) -> list[str] | None:
    """The texts of ``--text`` files or directories, or None (the built-in corpus) when none is given."""
    if not paths:
        return None
    from thermolens.data.corpus import read_texts

    return read_texts(paths)


def resolve_device(device: str) -> str:
    """Resolve ``--device auto`` once, at the edge: CUDA when available, else CPU."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(dtype: str, device: str, device_map: str | None = None) -> Any:
    """Check ``--dtype`` against the resolved ``--device`` at the edge: the torch dtype, or ``ValueError``
    saying the device cannot run it and which dtype it can. With ``--device-map`` the devices of the map
    are checked when the model loads."""
    from thermolens.models.loading import check_device
    from thermolens.models.loading import resolve_dtype as as_torch_dtype

    torch_dtype = as_torch_dtype(dtype)
    if device_map is None:
        check_device(device, torch_dtype)
    return torch_dtype
