"""The sweep runner: every job run once, resumable, retried then reported, same results everywhere."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from thermolens import io
from thermolens.runner.sweep import Job, SweepResult, run_sweep


def calls(run_dir: Path) -> int:
    path = run_dir / "calls.txt"
    return len(path.read_text().splitlines()) if path.is_file() else 0


def squares(n: int = 4) -> list[Job]:
    return [Job(name=f"sq{x}", fn="sweep_test_jobs:square", config={"x": x}) for x in range(1, n + 1)]


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_every_job_runs_once_and_leaves_its_result(tmp_path, executor):
    seen = []
    ticks = []
    result = run_sweep(squares(), tmp_path, executor=executor, workers=2,
                       on_done=lambda name, summary: seen.append(name), progress=lambda k, n: ticks.append((k, n)))
    assert isinstance(result, SweepResult) and result.failed == {} and result.skipped == {}
    assert list(result.done) == ["sq1", "sq2", "sq3", "sq4"]  # in job order whatever finished first
    # summaries are JSON values: NaN -> None, tuples -> lists
    assert result.done["sq3"] == {"x": 3, "y": 9, "missing": None, "pair": [1, 2]}
    for name in result.done:
        assert io.read_json(tmp_path / name / "result.json") == result.done[name]
        assert io.read_json(tmp_path / name / "job.json")["fn"] == "sweep_test_jobs:square"
        assert calls(tmp_path / name) == 1
    assert sorted(seen) == sorted(result.done) and ticks[-1] == (4, 4)
    assert list(result.to_frame()["job"]) == list(result.done)


def test_finished_jobs_are_never_redone(tmp_path):
    first = run_sweep(squares(), tmp_path, executor="local", workers=2)
    (tmp_path / "sq2" / "result.json").unlink()  # as if interrupted before sq2 finished
    seen = []
    second = run_sweep(squares(), tmp_path, executor="local", workers=2, on_done=lambda n, s: seen.append(n))
    assert [calls(tmp_path / f"sq{x}") for x in range(1, 5)] == [1, 2, 1, 1]
    assert set(second.skipped) == {"sq1", "sq3", "sq4"} and "finished earlier" in second.skipped["sq1"]
    assert second.done == first.done and sorted(seen) == ["sq1", "sq2", "sq3", "sq4"]
    third = run_sweep(squares(), tmp_path, executor="inline")
    assert [calls(tmp_path / f"sq{x}") for x in range(1, 5)] == [1, 2, 1, 1]
    assert third.done == first.done and len(third.skipped) == 4


def test_a_finished_job_with_another_config_is_refused(tmp_path):
    run_sweep(squares(1), tmp_path, executor="inline")
    changed = [Job(name="sq1", fn="sweep_test_jobs:square", config={"x": 7})]
    with pytest.raises(ValueError, match="different configuration \\(x differ"):
        run_sweep(changed, tmp_path, executor="inline")


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_a_failing_job_is_retried_once_then_reported_and_the_sweep_goes_on(tmp_path, executor):
    jobs = [
        Job(name="once", fn="sweep_test_jobs:flaky", config={"fail_times": 1}),
        Job(name="always", fn="sweep_test_jobs:flaky", config={"fail_times": 99}),
        *squares(2),
    ]
    result = run_sweep(jobs, tmp_path, executor=executor, workers=2, retries=1)
    assert result.done["once"] == {"calls": 2} and not (tmp_path / "once" / "error.txt").exists()
    assert result.failed == {"always": "RuntimeError: planned failure 2"}
    assert calls(tmp_path / "always") == 2 and not (tmp_path / "always" / "result.json").exists()
    assert "Traceback" in (tmp_path / "always" / "error.txt").read_text()
    assert set(result.done) == {"once", "sq1", "sq2"}
    # retries=0: one attempt only
    again = run_sweep([Job(name="zero", fn="sweep_test_jobs:flaky", config={"fail_times": 1})], tmp_path,
                      executor=executor, retries=0)
    assert list(again.failed) == ["zero"] and calls(tmp_path / "zero") == 1


def test_a_dying_worker_is_charged_to_its_own_job(tmp_path):
    jobs = [
        Job(name="dies-once", fn="sweep_test_jobs:die", config={"die_times": 1}),
        Job(name="dies-always", fn="sweep_test_jobs:die", config={"die_times": 99}),
        *squares(3),
    ]
    result = run_sweep(jobs, tmp_path, executor="local", workers=2, retries=1)
    assert result.done["dies-once"] == {"calls": 2}
    assert result.failed == {"dies-always": "worker process died (exit code 3)"}
    assert calls(tmp_path / "dies-always") == 2
    assert [calls(tmp_path / f"sq{x}") for x in (1, 2, 3)] == [1, 1, 1]  # bystanders ran exactly once


def test_jobs_run_on_one_torch_thread_with_identical_results(tmp_path):
    jobs = [Job(name=f"t{s}", fn="sweep_test_jobs:train_tiny", config={"seed": s, "steps": 30}) for s in (0, 1)]
    local = run_sweep(jobs, tmp_path / "local", executor="local", workers=2)
    inline = run_sweep(jobs, tmp_path / "inline", executor="inline")
    assert all(summary["threads"] == 1 for summary in local.done.values())
    assert local.done == inline.done  # bitwise: one thread, same seed


def test_an_unimportable_fn_fails_that_job_with_the_reason(tmp_path):
    result = run_sweep([Job(name="ghost", fn="sweep_test_jobs:no_such_fn", config={})], tmp_path,
                       executor="inline", retries=0)
    assert "cannot import job fn 'sweep_test_jobs:no_such_fn'" in result.failed["ghost"]


@pytest.mark.parametrize("kwargs, match", [
    (dict(executor="dask"), "executor must be one of"),
    (dict(workers=0), "workers=0"),
    (dict(retries=-1), "retries=-1"),
])
def test_bad_sweep_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        run_sweep(squares(1), tmp_path, **kwargs)


def test_bad_jobs():
    with pytest.raises(ValueError, match="unique"):
        run_sweep(squares(1) + squares(1), "unused")
    with pytest.raises(ValueError, match="directory name"):
        Job(name="a/b", fn="m:f", config={})
    with pytest.raises(ValueError, match="module:function"):
        Job(name="a", fn="no_colon", config={})
    with pytest.raises(ValueError, match="must be a dict"):
        Job(name="a", fn="m:f", config=[1])


# --------------------------------------------------------------------------------------------------
# Ray (optional extra): a local instance


def test_ray_gives_the_local_results_and_reports_failures(tmp_path):
    pytest.importorskip("ray")
    jobs = [
        *[Job(name=f"t{s}", fn="sweep_test_jobs:train_tiny", config={"seed": s, "steps": 30}) for s in (0, 1)],
        Job(name="once", fn="sweep_test_jobs:flaky", config={"fail_times": 1}),
        Job(name="always", fn="sweep_test_jobs:flaky", config={"fail_times": 99}),
        *squares(2),
    ]
    # the reference runs in this process: the local executor gives the same (tested above)
    reference = run_sweep(jobs, tmp_path / "inline", executor="inline")
    ray_result = run_sweep(jobs, tmp_path / "ray", executor="ray", workers=2)
    assert ray_result.done == reference.done  # deterministic fn: identical summaries
    assert ray_result.failed == reference.failed == {"always": "RuntimeError: planned failure 2"}
    assert all(ray_result.done[f"t{s}"]["threads"] == 1 for s in (0, 1))
    assert calls(tmp_path / "ray" / "always") == 2 and calls(tmp_path / "ray" / "t0") == 1


def test_ray_address_that_does_not_answer_fails_fast_naming_it(tmp_path):
    pytest.importorskip("ray")
    with socket.socket() as s:  # a port nobody listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"127.0.0.1:{port}"
    start = time.perf_counter()
    with pytest.raises(ValueError, match=f"Ray address {address} does not answer"):
        run_sweep(squares(1), tmp_path, executor="ray", address=address)
    assert time.perf_counter() - start < 30


def test_a_job_that_cannot_be_sent_to_a_worker_fails_alone(tmp_path):
    jobs = [Job(name="lambda", fn=lambda config, run_dir: {}, config={}), *squares(1)]
    result = run_sweep(jobs, tmp_path, executor="local", workers=1, retries=0)
    assert "cannot send the job to a worker" in result.failed["lambda"]
    assert list(result.done) == ["sq1"]


def test_local_workers_start_with_one_blas_thread_and_the_parent_is_left_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    result = run_sweep([Job(name="env", fn="sweep_test_jobs:thread_env", config={})], tmp_path, executor="local")
    assert result.done["env"] == {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    assert os.environ["OPENBLAS_NUM_THREADS"] == "2" and "MKL_NUM_THREADS" not in os.environ
