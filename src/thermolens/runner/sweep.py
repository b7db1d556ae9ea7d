"""A sweep runner: many independent jobs, each a pure function of its config writing one directory.

A :class:`Job` names a function ``fn(config: dict, run_dir: Path) -> dict`` (``"module:function"``,
importable in the worker) and its config. :func:`run_sweep` runs every job under
``root/<job name>/``::

    root/<name>/job.json      the job (name, fn, config), written before the first attempt
    root/<name>/...           whatever fn writes
    root/<name>/error.txt     traceback of the last failed attempt (removed once the job succeeds)
    root/<name>/result.json   fn's returned summary, written atomically by the runner; its
                              presence marks the job finished

Contract:

* **Resumable.** A job whose ``result.json`` exists is never run again; its stored summary is
  returned (``skipped`` says so). A finished job whose stored config differs from the one given is
  refused with the differing keys — a stale result is never passed off as a new one.
* **Retried, then reported.** A job that raises (or whose worker process dies) is run again up to
  ``retries`` more times, then listed in ``failed`` with its last error; the sweep goes on.
* **Executors.** ``"local"``: long-lived worker processes (``spawn``), ``workers`` of them
  (default: every core), one job each at a time; a worker that dies is replaced, and the death is
  charged to exactly the job it was running. ``"ray"``: the same on Ray (``address`` ``None`` or
  ``"local"`` starts a local instance; ``"auto"`` or ``host:port`` connects to a cluster; an
  address that does not answer fails within 30 s naming it). ``"inline"``: in this process, one
  after another (debugging, and step-level progress bars). Scripts using ``"local"`` call
  ``run_sweep`` under ``if __name__ == "__main__":`` (spawned workers import the main module).
  Every executor runs torch on one
  thread per job: CPU reductions are then bitwise reproducible, so a job gives the same summary
  whichever executor ran it. Worker processes (local, and a Ray instance this runner starts) also
  start with one BLAS/OpenMP thread (``ONE_THREAD_ENV``): numpy-heavy jobs on every core would
  otherwise oversubscribe it several times over.
* Summaries are normalized to JSON values (NaN -> ``None``, tuples -> lists), identically for a
  job run now and one read back from disk.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import os
import socket
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thermolens import io

__all__ = [
    "EXECUTORS", "ONE_THREAD_ENV", "Job", "SweepResult", "differing_keys", "one_torch_thread", "run_sweep", "scoped_environ",
]

EXECUTORS = ("local", "ray", "inline")
RESULT = "result.json"
JOB = "job.json"
ERROR = "error.txt"
RAY_CONNECT_TIMEOUT_S = 30.0
RAY_OBJECT_STORE_BYTES = 256 * 1024**2

JobFn = Callable[[dict, Path], dict]


@dataclass(frozen=True)
class Job:
    """One run: ``fn(config, run_dir)`` returns a JSON-able summary dict.

    ``fn`` is ``"module:function"``; a callable is also accepted (it must be importable by
    reference — a module-level function — for the process executors).
    """

    name: str
    fn: str | JobFn
    config: dict

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or self.name in (".", "..") or any(
            c in self.name for c in "/\\\0"
        ):
            raise ValueError(f"job name {self.name!r} must be a non-empty directory name (no slashes)")
        if isinstance(self.fn, str):
            module, sep, func = self.fn.partition(":")
            if not sep or not module or not func:
                raise ValueError(f"job fn {self.fn!r} must read 'module:function', e.g. 'thermolens.experiments.family.lm:run'")
        elif not callable(self.fn):
            raise ValueError(f"job fn must be 'module:function' or a callable, got {self.fn!r}")
        if not isinstance(self.config, dict):
            raise ValueError(f"job config must be a dict, got {type(self.config).__name__}")

    @property
    def fn_name(self) -> str:
        if isinstance(self.fn, str):
            return self.fn
        fn = self.fn.func if isinstance(self.fn, functools.partial) else self.fn
        return f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', type(fn).__name__)}"


@dataclass(frozen=True)
class SweepResult:
    """``done``: summary of every finished job (run now or earlier); ``failed``: last error of the
    jobs that failed every attempt; ``skipped``: jobs not run because they had finished earlier
    (name -> reason); ``wall_s``: seconds spent in :func:`run_sweep`."""

    done: dict[str, dict]
    failed: dict[str, str]
    skipped: dict[str, str]
    wall_s: float

    def to_frame(self):
        """One row per finished job: ``job`` and the summary's fields."""
        import pandas as pd

        return pd.DataFrame([{"job": name, **summary} for name, summary in self.done.items()])


# --------------------------------------------------------------------------------------------------
# small pieces


def differing_keys(stored: dict[str, Any], given: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the settings that differ between two configuration dicts."""
    keys = []
    for key in sorted(set(stored) | set(given)):
        a, b = stored.get(key), given.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += differing_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            keys.append(f"{prefix}{key}")
    return keys


def _jsonable(obj: Any) -> Any:
    """The value as it reads back from JSON (NaN -> None, tuples -> lists, numpy -> Python)."""
    return json.loads(io.dumps_json(obj, indent=None))


#: worker processes get one BLAS/OpenMP thread: the libraries read these at import, before any job code runs
ONE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@contextlib.contextmanager
def scoped_environ(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables inside the block only (for processes started there); restore them after."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run torch on one thread: CPU reductions are then bitwise reproducible (two threads differ at
    ~1e-4 after a few dozen training steps), so a job gives the same numbers wherever it runs."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _resolve(fn: str | JobFn) -> JobFn:
    if callable(fn):
        return fn
    module, _, name = fn.partition(":")
    try:
        target = importlib.import_module(module)
        for part in name.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot import job fn {fn!r}: {exc}") from None
    if not callable(target):
        raise ValueError(f"job fn {fn!r} is not callable")
    return target


def _call(fn: str | JobFn, config: dict, run_dir: str) -> dict:
    """Run one attempt on one torch thread; the summary comes back as JSON values."""
    with one_torch_thread():
        summary = _resolve(fn)(dict(config), Path(run_dir))
    if not isinstance(summary, dict):
        raise TypeError(f"job fn returned {type(summary).__name__}; it must return a dict (the summary)")
    return _jsonable(summary)


def _attempt(fn: str | JobFn, config: dict, run_dir: str) -> tuple[str, Any, str]:
    """``("ok", summary, "")`` or ``("error", message, traceback)`` — exceptions never escape."""
    try:
        return "ok", _call(fn, config, run_dir), ""
    except Exception as exc:  # noqa: BLE001 - reported per job; the sweep goes on
        return "error", f"{type(exc).__name__}: {exc}", traceback.format_exc()


# --------------------------------------------------------------------------------------------------
# bookkeeping shared by the executors


class _Book:
    """Attempts, results and failures of one sweep; writes result.json / error.txt."""

    def __init__(self, root: Path, retries: int, on_done, progress, total: int):
        self.root, self.retries, self.on_done, self.progress, self.total = root, retries, on_done, progress, total
        self.done: dict[str, dict] = {}
        self.failed: dict[str, str] = {}
        self.attempts: dict[str, int] = {}

    def run_dir(self, job: Job) -> Path:
        return self.root / job.name

    def finish(self, job: Job, summary: dict) -> None:
        io.write_json(self.run_dir(job) / RESULT, summary)
        (self.run_dir(job) / ERROR).unlink(missing_ok=True)
        self.record(job.name, summary)

    def record(self, name: str, summary: dict) -> None:
        self.done[name] = summary
        if self.on_done is not None:
            self.on_done(name, summary)
        if self.progress is not None:
            self.progress(len(self.done) + len(self.failed), self.total)

    def error(self, job: Job, message: str, trace: str) -> bool:
        """Record a failed attempt; True when the job should be tried again."""
        self.attempts[job.name] = self.attempts.get(job.name, 0) + 1
        io.write_text(self.run_dir(job) / ERROR, f"attempt {self.attempts[job.name]}: {message}\n\n{trace}")
        if self.attempts[job.name] <= self.retries:
            return True
        self.failed[job.name] = message
        if self.progress is not None:
            self.progress(len(self.done) + len(self.failed), self.total)
        return False


def _stored(job: Job, run_dir: Path) -> dict | None:
    """The stored summary of a finished job (None if unfinished); refuses a different config."""
    result = run_dir / RESULT
    if not result.is_file():
        return None
    if (run_dir / JOB).is_file():
        stored = io.read_json(run_dir / JOB)
        differ = differing_keys(stored.get("config", {}), _jsonable(job.config))
        if differ:
            raise ValueError(
                f"{run_dir} holds job {job.name!r} finished with a different configuration "
                f"({', '.join(differ)} differ); use another root or delete that directory to redo it"
            )
    return io.read_json(result)


# --------------------------------------------------------------------------------------------------
# executors


def _run_inline(queue: deque[Job], book: _Book) -> None:
    while queue:
        job = queue.popleft()
        status, value, trace = _attempt(job.fn, job.config, str(book.run_dir(job)))
        if status == "ok":
            book.finish(job, value)
        elif book.error(job, value, trace):
            queue.append(job)


def _worker_main(conn) -> None:  # pragma: no cover - runs in the worker processes
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        conn.send(_attempt(*message))


class _Worker:
    def __init__(self, ctx):
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child,), daemon=True)
        self.process.start()
        child.close()
        self.job: Job | None = None

    def stop(self) -> None:
        """Ask an idle worker to exit; a busy one (the sweep was interrupted) is terminated."""
        if self.job is None:
            with contextlib.suppress(OSError):
                self.conn.send(None)
            self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=5)
        self.conn.close()


def _run_local(queue: deque[Job], book: _Book, workers: int) -> None:
    import multiprocessing
    from multiprocessing.connection import wait

    ctx = multiprocessing.get_context("spawn")
    with scoped_environ(ONE_THREAD_ENV):  # inherited by every worker, replacements included
        _serve_local(queue, book, workers, ctx, wait)


def _serve_local(queue: deque[Job], book: _Book, workers: int, ctx, wait) -> None:
    pool = [_Worker(ctx) for _ in range(min(workers, len(queue)))]
    try:
        while queue or any(w.job is not None for w in pool):
            for worker in pool:
                while worker.job is None and queue:
                    job = queue.popleft()
                    try:
                        worker.conn.send((job.fn, job.config, str(book.run_dir(job))))
                    except Exception as exc:  # noqa: BLE001 - e.g. a fn or config that cannot be pickled
                        if book.error(job, f"cannot send the job to a worker: {type(exc).__name__}: {exc}", ""):
                            queue.append(job)
                        continue
                    worker.job = job
            busy = [w for w in pool if w.job is not None]
            if not busy:
                continue
            ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
            for i, worker in enumerate(pool):
                if worker.job is None or (worker.conn not in ready and worker.process.sentinel not in ready):
                    continue
                job, worker.job = worker.job, None
                try:
                    status, value, trace = worker.conn.recv()
                except (EOFError, OSError):
                    worker.process.join(timeout=5)
                    status, value, trace = "error", f"worker process died (exit code {worker.process.exitcode})", ""
                    worker.conn.close()
                    pool[i] = _Worker(ctx)
                if status == "ok":
                    book.finish(job, value)
                elif book.error(job, value, trace):
                    queue.append(job)
    finally:
        for worker in pool:
            worker.stop()


def _ray_attempt(fn, config, run_dir):  # pragma: no cover - runs in Ray workers
    os.environ["OMP_NUM_THREADS"] = "1"
    return _attempt(fn, config, run_dir)


def _check_address(address: str) -> None:
    """A ``host:port`` that accepts no TCP connection within the timeout is refused, naming it."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=RAY_CONNECT_TIMEOUT_S / 3):
            pass
    except OSError as exc:
        raise ValueError(
            f"Ray address {address} does not answer ({exc.strerror or exc}); start the cluster "
            "(`ray start --head`) or check --address"
        ) from None


@contextlib.contextmanager
def _ray_session(address: str | None, workers: int | None) -> Iterator[Any]:
    try:
        import ray
    except ImportError:
        raise ValueError("the Ray executor needs Ray: pip install 'thermolens[ray]'") from None
    if ray.is_initialized():  # the caller's own session: use it, leave it running
        yield ray
        return
    if address in (None, "local"):
        # workers inherit this environment: one OpenMP thread, and this process's import path
        # (the thermolens in use, and the modules the job functions live in)
        package_root = str(Path(__file__).resolve().parents[2])
        paths = [package_root] + [str(Path(p).resolve()) for p in sys.path if p and Path(p).is_dir()]
        with scoped_environ({**ONE_THREAD_ENV, "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}):
            # summaries are small: a modest object store keeps the instance light on a shared machine
            ray.init(num_cpus=workers or os.cpu_count(), include_dashboard=False, log_to_driver=False,
                     configure_logging=False, object_store_memory=RAY_OBJECT_STORE_BYTES)
    else:
        _check_address(address)
        import concurrent.futures

        connect = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        future = connect.submit(ray.init, address=address, log_to_driver=False, configure_logging=False)
        try:
            future.result(timeout=RAY_CONNECT_TIMEOUT_S)
        except concurrent.futures.TimeoutError:
            raise ValueError(f"Ray address {address} did not answer within {RAY_CONNECT_TIMEOUT_S:.0f} s") from None
        except Exception as exc:  # noqa: BLE001 - ray raises ConnectionError, RuntimeError, ...
            raise ValueError(f"cannot connect to Ray at {address}: {str(exc).splitlines()[0]}") from None
        finally:
            connect.shutdown(wait=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def _run_ray(queue: deque[Job], book: _Book, workers: int | None, address: str | None) -> None:
    with _ray_session(address, workers) as ray:
        remote = ray.remote(num_cpus=1, max_retries=0)(_ray_attempt)
        limit = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        in_flight: dict[Any, Job] = {}
        while queue or in_flight:
            while queue and len(in_flight) < limit:
                job = queue.popleft()
                in_flight[remote.remote(job.fn, job.config, str(book.run_dir(job)))] = job
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in ready:
                job = in_flight.pop(ref)
                try:
                    status, value, trace = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - a worker crash surfaces here
                    status, value, trace = "error", f"Ray worker failed: {type(exc).__name__}: {exc}", ""
                if status == "ok":
                    book.finish(job, value)
                elif book.error(job, value, trace):
                    queue.append(job)


# --------------------------------------------------------------------------------------------------
# the sweep


def run_sweep(
    jobs: list[Job],
    root: str | Path,
    *,
    executor: str = "local",
    workers: int | None = None,
    address: str | None = None,
    retries: int = 1,
    on_done: Callable[[str, dict], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SweepResult:
    """Run (or finish) every job under ``root/<job.name>/``; see the module docstring.

    Jobs start in the order given. ``on_done(name, summary)`` is called for every finished job
    (first for those finished earlier); ``progress(n_finished_or_failed, n_jobs)`` after each.
    """
    start = time.perf_counter()
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {EXECUTORS}, got {executor!r}")
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers={workers!r} must be a positive integer (or None for every core)")
    if not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries={retries!r} must be a non-negative integer")
    names = [job.name for job in jobs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"job names must be unique; repeated: {', '.join(repeated)}")
    root = Path(root)
    book = _Book(root, retries, on_done, progress, len(jobs))
    skipped: dict[str, str] = {}
    queue: deque[Job] = deque()
    for job in jobs:
        run_dir = book.run_dir(job)
        summary = _stored(job, run_dir)
        if summary is not None:
            skipped[job.name] = f"finished earlier ({run_dir / RESULT})"
            book.record(job.name, summary)
            continue
        run_dir.mkdir(parents=True, exist_ok=True)
        io.write_json(run_dir / JOB, {"name": job.name, "fn": job.fn_name, "config": job.config})
        queue.append(job)

    if queue:
        if executor == "inline":
            _run_inline(queue, book)
        elif executor == "local":
            _run_local(queue, book, workers or os.cpu_count() or 1)
        else:
            _run_ray(queue, book, workers, address)
    order = {name: i for i, name in enumerate(names)}
    return SweepResult(
        done=dict(sorted(book.done.items(), key=lambda kv: order[kv[0]])),
        failed=dict(sorted(book.failed.items(), key=lambda kv: order[kv[0]])),
        skipped=skipped,
        wall_s=time.perf_counter() - start,
    )
