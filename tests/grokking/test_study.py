"""The study grid, resume bookkeeping and the per-p summary statistics."""

import math

import pandas as pd
import pytest

from thermolens.experiments.grokking.train import GrokConfig
from thermolens.experiments.grokking.study import (
    StudyConfig, differing_keys, run_name, run_study, summarize, wilson_interval,
)

TINY = GrokConfig(max_steps=25, every=5, sweep_every=0, checkpoint_every=10)


def test_grid_with_fraction_overrides():
    cfg = StudyConfig(ps=(19, 113), seeds=(0, 1), fraction_overrides=((19, 0.7),), base=TINY)
    runs = cfg.runs()
    assert [(r.p, r.seed, r.train_fraction) for r in runs] == [
        (19, 0, 0.7), (19, 1, 0.7), (113, 0, 0.3), (113, 1, 0.3)]
    assert all(r.max_steps == 25 for r in runs)
    assert run_name(runs[0]) == "p19-seed0-frac0.7-wd1"
    assert StudyConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("kwargs,words", [
    (dict(ps=(19,), fraction_overrides=((31, 0.5),)), "fraction override"),
    (dict(ps=(2,)), "p=2"),
    (dict(ps=(15,), base=GrokConfig(op="div")), "not prime"),
    (dict(train_fractions=(0.3, 1.0)), "between 0 and 1"),
    (dict(seeds=()), "empty"),
    (dict(seeds=(1, 1)), "repeats"),
])
def test_bad_study_configs(kwargs, words):
    with pytest.raises(ValueError, match=words):
        StudyConfig(**kwargs)


def test_differing_keys_are_named_with_their_path():
    a = StudyConfig(ps=(19,), base=TINY).to_dict()
    b = StudyConfig(ps=(19, 31), base=GrokConfig(max_steps=30, every=5, sweep_every=0, checkpoint_every=10)).to_dict()
    assert differing_keys(a, b) == ["base.max_steps", "ps"]
    assert differing_keys(a, a) == []


def test_wilson_interval_closed_form():
    # Wilson (1927) score interval, z = 1.95996: k = n = 3 gives
    # centre (1 + z^2/6) / (1 + z^2/3) = 0.71929, half-width z/(1 + z^2/3) * sqrt(z^2/36) = 0.28071
    low, high = wilson_interval(3, 3)
    assert low == pytest.approx(0.43850, abs=1e-4) and high == pytest.approx(1.0)
    # k = 1, n = 2: centre 0.5, half-width z/(1 + z^2/2) * sqrt(1/8 + z^2/16) = 0.40551
    low, high = wilson_interval(1, 2)
    assert low == pytest.approx(0.5 - 0.40551, abs=1e-4) and high == pytest.approx(0.5 + 0.40551, abs=1e-4)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_summary_counts_leads_per_p():
    runs = pd.DataFrame({
        "p": [19, 19, 19, 31], "train_fraction": [0.7] * 3 + [0.5], "weight_decay": [1.0] * 4,
        "grokked": [True, True, False, True], "onset_step": [1000.0, 2000.0, math.nan, 500.0],
        "lead_steps": [300.0, -100.0, math.nan, 50.0], "lead_corr_steps": [math.nan, 10.0, math.nan, 20.0],
    })
    s = summarize(runs).set_index("p")
    assert s.loc[19, "n_runs"] == 3 and s.loc[19, "n_grokked"] == 2
    assert s.loc[19, "C_n_detected"] == 2 and s.loc[19, "C_n_precedes"] == 1
    assert s.loc[19, "C_frac_precedes"] == 0.5 and s.loc[19, "C_median_lead"] == 100.0
    assert s.loc[19, "C_corr_n_detected"] == 1 and s.loc[31, "C_frac_precedes"] == 1.0


def test_pool_runs_and_resume_skips_finished_runs(tmp_path):
    cfg = StudyConfig(ps=(5, 7), seeds=(0,), train_fractions=(0.5,), base=TINY)
    first = run_study(cfg, tmp_path, workers=2)
    assert len(first.runs) == 2 and set(first.runs["p"]) == {5, 7}
    assert (first.runs["steps"] == 25).all()
    stamps = {name: (d / "checkpoint.pt").stat().st_mtime_ns for name, d in first.run_dirs.items()}
    seen = []
    second = run_study(cfg, tmp_path, workers=2, on_run_done=seen.append)
    assert len(seen) == 2
    # nothing was trained again (checkpoints untouched); the rows are re-derived identically
    assert {name: (d / "checkpoint.pt").stat().st_mtime_ns for name, d in second.run_dirs.items()} == stamps
    pd.testing.assert_frame_equal(first.runs, second.runs)
