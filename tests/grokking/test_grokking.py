"""The training loop: history invariants, early stop, checkpoint/resume, disk full, Grokfast."""

import errno
import math

import numpy as np
import pytest
import torch

from thermolens.experiments.grokking import train as grokking
from thermolens.experiments.grokking.train import GrokConfig, train
from thermolens.experiments.grokking.study import one_torch_thread

TINY = dict(p=11, train_fraction=0.5, max_steps=60, every=10, sweep_every=30, checkpoint_every=20)


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    with one_torch_thread():  # bitwise-reproducible CPU training, as the study runs it
        yield


@pytest.fixture(scope="module")
def tiny_run(single_thread):
    return train(GrokConfig(**TINY))


def test_history_has_readings_at_the_cadence_and_physical_values(tiny_run):
    h = tiny_run.history
    assert h["step"].tolist() == list(range(0, 61, 10))
    for split in ("train", "test"):
        assert (h[f"{split}_C_eq"] >= 0).all() and (h[f"{split}_C_null"] >= 0).all()
        assert (h[f"{split}_S_eq"] <= math.log(3) + 1e-12).all()
        np.testing.assert_allclose(h[f"{split}_F_eq"], h[f"{split}_U_eq"] - h[f"{split}_S_eq"], rtol=1e-9, atol=1e-12)
    # full-batch training memorizes: the training loss falls
    assert h["train_loss"].iloc[-1] < h["train_loss"].iloc[0]
    assert tiny_run.sweep["step"].unique().tolist() == [0, 30, 60]
    assert tiny_run.steps == 60 and not tiny_run.stopped_early


def test_summary_headline_keys(tiny_run):
    s = tiny_run.summary()
    for key in ("p", "seed", "onset_step", "peak_step", "lead_steps", "grokfast", "thermometer_overhead"):
        assert key in s


def test_early_stop_after_the_window():
    # stop_acc is reached at once (any accuracy >= 1e-9), so training stops after stop_window steps
    run = train(GrokConfig(**{**TINY, "stop_acc": 1e-9, "stop_window": 20, "max_steps": 200}))
    assert run.stopped_early and run.steps == 20


def test_resume_reproduces_an_uninterrupted_run(tmp_path, tiny_run):
    def interrupt(step, total, reading):
        if step == 45:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(GrokConfig(**TINY), run_dir=tmp_path, progress=interrupt)
    assert torch.load(tmp_path / grokking.CHECKPOINT, weights_only=True)["step"] == 40
    resumed = train(GrokConfig(**TINY), run_dir=tmp_path)
    # on one thread training is bitwise reproducible, so the resumed run must match exactly
    np.testing.assert_array_equal(resumed.history.to_numpy(float), tiny_run.history.to_numpy(float))
    again = train(GrokConfig(**TINY), run_dir=tmp_path)  # finished: nothing is redone
    assert again.steps == 60 and len(again.history) == len(tiny_run.history)


def test_checkpoint_of_another_configuration_is_refused(tmp_path):
    train(GrokConfig(**{**TINY, "max_steps": 50}), run_dir=tmp_path)
    with pytest.raises(ValueError, match="max_steps"):
        train(GrokConfig(**TINY), run_dir=tmp_path)


def test_disk_full_while_checkpointing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    config = GrokConfig(**TINY)
    real_save = torch.save
    calls = {"n": 0}

    def failing_save(obj, path, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # the second checkpoint: write part of it, then the disk is full
            with open(path, "wb") as fh:
                fh.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="previous checkpoint is intact"):
        train(config, run_dir=tmp_path)
    state = torch.load(tmp_path / grokking.CHECKPOINT, weights_only=True)
    assert state["step"] == 20  # the first checkpoint, untouched
    assert not list(tmp_path.glob("*.tmp"))
    monkeypatch.setattr(torch, "save", real_save)
    assert train(config, run_dir=tmp_path).steps == 60  # and the run continues from it


def test_grokfast_ema_filter():
    # Lee et al. 2024 (arXiv:2405.20233), Algorithm 2: h <- a h + (1 - a) g ; g <- g + lamb h
    param = torch.nn.Parameter(torch.zeros(2))
    model = torch.nn.Module()
    model.w = param
    param.grad = torch.tensor([1.0, -2.0])
    ema = grokking.grokfast_ema(model, None, alpha=0.9, lamb=2.0)
    torch.testing.assert_close(ema["w"], torch.tensor([1.0, -2.0]))  # initialised with the first gradient
    torch.testing.assert_close(param.grad, torch.tensor([3.0, -6.0]))
    param.grad = torch.tensor([0.0, 1.0])
    ema = grokking.grokfast_ema(model, ema, alpha=0.9, lamb=2.0)
    torch.testing.assert_close(ema["w"], torch.tensor([0.9, -1.7]))
    torch.testing.assert_close(param.grad, torch.tensor([1.8, -2.4]))


def test_grokfast_changes_the_dynamics_and_is_flagged():
    run = train(GrokConfig(**{**TINY, "grokfast": True, "max_steps": 50}))
    assert run.summary()["grokfast"] is True


@pytest.mark.parametrize("kwargs,words", [
    (dict(p=2), "p=2"),
    (dict(p=21, op="div"), "not prime"),
    (dict(train_fraction=1.2), "between 0 and 1"),
    (dict(lr=0), "lr"),
    (dict(max_steps=10, every=10), "fewer than 5"),
])
def test_config_bad_input(kwargs, words):
    with pytest.raises(ValueError, match=words):
        GrokConfig(**kwargs)


@pytest.mark.slow
def test_small_modulus_groks_and_detection_runs():
    # p = 23 with 80% of the pairs groks within a few thousand full-batch steps at the defaults
    run = train(GrokConfig(p=23, train_fraction=0.8, max_steps=6000, every=50, stop_window=500))
    assert run.summary()["grokked"]
    assert math.isfinite(run.detection.onset_step)


def test_critical_temperature_of_each_sweep_curve():
    import pandas as pd

    # C(T) = exp(-(ln T - ln T0)^2): a peak at T0 on a log grid, refined between grid points
    temps = np.geomspace(0.1, 10, 33)
    rows = [{"step": s, "layer": 0, "head": h, "T": t, "C": math.exp(-(math.log(t) - math.log(t0)) ** 2), "S": 0.0}
            for s, t0 in ((0, 0.7), (100, 1.9)) for h in (0, 1) for t in temps]
    out = grokking.critical_temperatures(pd.DataFrame(rows), d_head=32)
    assert len(out) == 4 and not out["at_edge"].any()
    np.testing.assert_allclose(out["T_star"], [0.7, 0.7, 1.9, 1.9], rtol=1e-3)
    np.testing.assert_allclose(out["T_star_kim"], math.sqrt(32) * out["T_star"])  # Kim: T_K = sqrt(d_k) T


def test_tiny_run_critical_temperatures(tiny_run):
    out = grokking.critical_temperatures(tiny_run.sweep, d_head=32)
    assert out["step"].unique().tolist() == [0, 30, 60] and len(out) == 12
