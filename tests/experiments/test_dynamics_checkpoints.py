"""Weight snapshots along training (grokking runs, family members) and their loader
(``thermolens.experiments.dynamics.checkpoints``): every snapshot is the model at its step, a resumed run
keeps and completes them, old configurations without the field still resume, bad directories are refused."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from thermolens import io
from thermolens.cli import app
from thermolens.data.modular import make_dataset
from thermolens.experiments.dynamics.checkpoints import find_runs, load_snapshots
from thermolens.experiments.family import lm
from thermolens.experiments.family import train as family
from thermolens.experiments.grokking import train as grokking
from thermolens.experiments.grokking.train import GrokConfig, train
from thermolens.models.hooked import HookedTransformer, nanda2023
from thermolens.runner.sweep import one_torch_thread

# p = 7 with half the pairs for training: 24 training and 25 test pairs; snapshots at 0, 5, 10 and 12
TINY_GROK = dict(p=7, train_fraction=0.5, max_steps=12, every=2, sweep_every=0, checkpoint_every=4, snapshot_every=5)
SOURCE = "markov:h=1.0,order=1,vocab=6,seed=0"
TINY_FAMILY = family.FamilyConfig(
    widths=(8,), heads=(2,), seq_lens=(8,), sources=(SOURCE,), seeds=(0,), budget_tokens=2**11, batch_tokens=128,
    warmup_steps=4, eval_every=8, eval_batches=2, scan_sequences=8, n_boot=10,
)  # 16 steps per member


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    with one_torch_thread():  # bitwise-reproducible CPU training, as the sweep workers run it
        yield


@pytest.fixture(scope="module")
def grok_dir(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("grok")
    train(GrokConfig(**TINY_GROK), run_dir=run_dir)
    return run_dir


def _state(path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def _assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


# --------------------------------------------------------------------------------------------------
# grokking


def test_grokking_snapshots_are_the_model_at_their_step(grok_dir, tmp_path):
    snaps = load_snapshots(grok_dir)
    assert snaps.kind == "grokking" and snaps.steps == (0, 5, 10, 12)  # multiples of 5, and the last step
    assert snaps.label == "p7 seed0 frac0.5"
    assert "head_temperature" in _state(grokking.snapshot_path(grok_dir, 0))
    # step 0: the initial weights drawn from the seed
    initial = HookedTransformer(nanda2023(7), seed=0).eval()
    # the last step: the weights of the final checkpoint
    final = HookedTransformer(nanda2023(7)).eval()
    final.load_state_dict(torch.load(grok_dir / grokking.CHECKPOINT, weights_only=True)["model"])
    # step 10: the end of a run stopped there (warm-up only, no schedule over max_steps: the same trajectory)
    short_dir = tmp_path / "short"
    train(GrokConfig(**{**TINY_GROK, "max_steps": 10, "snapshot_every": 0}), run_dir=short_dir)
    at_ten = HookedTransformer(nanda2023(7)).eval()
    at_ten.load_state_dict(torch.load(short_dir / grokking.CHECKPOINT, weights_only=True)["model"])
    with torch.no_grad():
        for step, reference in ((0, initial), (12, final), (10, at_ten)):
            model = snaps.model_at(step)
            assert not model.training
            torch.testing.assert_close(model(snaps.tokens), reference(snaps.tokens), rtol=0, atol=0)
        assert not torch.equal(snaps.model_at(5)(snaps.tokens), snaps.model_at(10)(snaps.tokens))


def test_grokking_inputs_are_the_held_out_pairs_and_history_the_runs_readings(grok_dir):
    data = make_dataset(GrokConfig(**TINY_GROK).task)
    snaps = load_snapshots(grok_dir)
    assert snaps.tokens.dtype == torch.int64 and torch.equal(snaps.tokens, data.test_tokens)  # all 25 fit in 64
    assert snaps.history["step"].tolist() == list(range(0, 13, 2))
    assert {"train_acc", "test_acc", "train_loss", "test_loss"} <= set(snaps.history.columns)
    subset = load_snapshots(grok_dir, max_sequences=10, seed=3).tokens
    assert subset.shape == (10, 3)
    test_rows = {tuple(r) for r in data.test_tokens.tolist()}
    assert len({tuple(r) for r in subset.tolist()}) == 10 and {tuple(r) for r in subset.tolist()} <= test_rows
    assert not torch.equal(subset, load_snapshots(grok_dir, max_sequences=10, seed=4).tokens)


def test_grokking_resume_keeps_earlier_snapshots_and_redoes_later_ones(grok_dir, tmp_path):
    def interrupt(step, total, reading):
        if step == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(GrokConfig(**TINY_GROK), run_dir=tmp_path, progress=interrupt)
    assert torch.load(tmp_path / grokking.CHECKPOINT, weights_only=True)["step"] == 4
    assert grokking.snapshot_steps(tmp_path) == [0, 5]  # 5 lies past the checkpoint
    first = grokking.snapshot_path(tmp_path, 0)
    written = (first.stat().st_ino, first.stat().st_mtime_ns)
    stray = grokking.snapshot_path(tmp_path, 9)  # past the checkpoint, left by an attempt with another cadence
    stray.write_bytes(b"not a snapshot")

    train(GrokConfig(**TINY_GROK), run_dir=tmp_path)
    assert grokking.snapshot_steps(tmp_path) == [0, 5, 10, 12]
    assert (first.stat().st_ino, first.stat().st_mtime_ns) == written  # kept as written, not rewritten
    for step in (0, 5, 10, 12):  # one thread: the resumed run is the uninterrupted one, bit for bit
        _assert_same_state(_state(grokking.snapshot_path(tmp_path, step)), _state(grokking.snapshot_path(grok_dir, step)))

    before = {s: grokking.snapshot_path(tmp_path, s).stat().st_mtime_ns for s in (0, 5, 10, 12)}
    train(GrokConfig(**TINY_GROK), run_dir=tmp_path)  # finished: nothing is redone or rewritten
    assert {s: grokking.snapshot_path(tmp_path, s).stat().st_mtime_ns for s in (0, 5, 10, 12)} == before


def test_configs_recorded_before_the_field_existed_still_resume(tmp_path):
    config = GrokConfig(**{**TINY_GROK, "snapshot_every": 0})
    assert "snapshot_every" not in config.to_dict()  # as job.json and checkpoints were written before it
    assert GrokConfig.from_dict(config.to_dict()) == config
    train(config, run_dir=tmp_path)
    stored = torch.load(tmp_path / grokking.CHECKPOINT, weights_only=True)["config"]
    assert "snapshot_every" not in stored
    assert train(config, run_dir=tmp_path).steps == 12  # resumed (finished), not refused
    with pytest.raises(ValueError, match="snapshot_every"):  # snapshots cannot be added to a run afterwards
        train(GrokConfig(**TINY_GROK), run_dir=tmp_path)
    with pytest.raises(ValueError, match="grokking run without weight snapshots.*grok --snapshot-every"):
        load_snapshots(tmp_path)
    lm_config = lm.LMConfig(model={"d_model": 8, "n_heads": 1, "d_head": 8, "d_mlp": 16}, source=SOURCE)
    assert "snapshot_every" not in lm_config.to_dict()


def test_snapshot_settings_are_checked():
    with pytest.raises(ValueError, match="snapshot_every"):
        GrokConfig(**{**TINY_GROK, "snapshot_every": -1})
    with pytest.raises(ValueError, match="run_dir"):
        train(GrokConfig(**TINY_GROK))  # snapshots need a directory
    with pytest.raises(ValueError, match="snapshot_every"):
        dataclasses.replace(TINY_FAMILY, snapshot_every=-2)


# --------------------------------------------------------------------------------------------------
# family members


def test_family_member_snapshots_are_the_model_at_their_step(tmp_path):
    config = dataclasses.replace(TINY_FAMILY.plan().members[0].lm_config(), snapshot_every=6)
    run = lm.train_lm(config, run_dir=tmp_path)
    snaps = load_snapshots(tmp_path, max_sequences=5)
    assert snaps.kind == "family" and snaps.steps == (0, 6, 12, 16)
    assert snaps.label == f"d8 N2 L8 seed0 {SOURCE}"
    assert snaps.tokens.shape == (5, 8) and snaps.tokens.dtype == torch.int64
    assert int(snaps.tokens.min()) >= 0 and int(snaps.tokens.max()) < 6
    assert not torch.equal(snaps.tokens, load_snapshots(tmp_path, max_sequences=5, seed=1).tokens)
    _assert_same_state(_state(grokking.snapshot_path(tmp_path, 16)), _state(tmp_path / lm.WEIGHTS))
    initial = HookedTransformer(run.model_config, seed=0).eval()  # train_lm draws the weights from config.seed
    with torch.no_grad():
        torch.testing.assert_close(snaps.model_at(16)(snaps.tokens), run.model(snaps.tokens), rtol=0, atol=0)
        torch.testing.assert_close(snaps.model_at(0)(snaps.tokens), initial(snaps.tokens), rtol=0, atol=0)
    assert snaps.history["step"].tolist() == [8, 16]
    # a rerun starts over: snapshots of the earlier attempt at other steps go
    lm.train_lm(dataclasses.replace(config, snapshot_every=8), run_dir=tmp_path)
    assert grokking.snapshot_steps(tmp_path) == [0, 8, 16]
    with pytest.raises(ValueError, match="run_dir"):
        lm.train_lm(config)


def test_family_keeps_finished_members_whatever_snapshot_every_asks(tmp_path):
    family.train_family(TINY_FAMILY, tmp_path, executor="inline")  # one member, no snapshots
    (name,) = [m.name for m in TINY_FAMILY.plan().members]
    result = tmp_path / name / "result.json"
    finished = result.stat().st_mtime_ns
    with_snapshots = dataclasses.replace(TINY_FAMILY, seeds=(0, 1), snapshot_every=8)
    outcome = family.train_family(with_snapshots, tmp_path, executor="inline")
    assert not outcome.failed and len(outcome.members) == 2
    assert result.stat().st_mtime_ns == finished and grokking.snapshot_steps(tmp_path / name) == []  # kept as it was
    new = with_snapshots.plan().members[1].name
    assert grokking.snapshot_steps(tmp_path / new) == [0, 8, 16]
    again = family.train_family(dataclasses.replace(with_snapshots, snapshot_every=0), tmp_path, executor="inline")
    assert not again.failed and grokking.snapshot_steps(tmp_path / new) == [0, 8, 16]
    assert "snapshot_every" not in TINY_FAMILY.plan().members[0].job_config()["lm"]  # as before the field existed

    with pytest.raises(ValueError, match=rf"model family.*2 runs \(1 with snapshots\).*{name}"):
        load_snapshots(tmp_path)
    assert find_runs(tmp_path) == (tmp_path / name, tmp_path / new)
    with pytest.raises(ValueError, match="family member without weight snapshots.*family train --snapshot-every"):
        load_snapshots(tmp_path / name)
    assert load_snapshots(tmp_path / new).steps == (0, 8, 16)


# --------------------------------------------------------------------------------------------------
# command line and directories that are not one run


def test_cli_options_write_snapshots(tmp_path):
    runner = CliRunner()
    out = tmp_path / "grok"
    res = runner.invoke(app, ["grok", "--p", "7", "--train-fraction", "0.5", "--max-steps", "20", "--every", "4",
                              "--sweep-every", "0", "--snapshot-every", "10", "--no-figures", "--quiet", "--out", str(out)])
    assert res.exit_code == 0, res.output
    run_dir = out / "runs" / "p7-seed0-frac0.5-wd1"
    assert load_snapshots(run_dir).steps == (0, 10, 20)
    with pytest.raises(ValueError, match=r"grokking study holding 1 runs \(1 with snapshots\).*p7-seed0-frac0.5-wd1"):
        load_snapshots(out)
    differ = runner.invoke(app, ["grok", "--resume", str(out), "--snapshot-every", "5", "--quiet"])
    assert differ.exit_code == 2 and "snapshot_every" in differ.output
    res = runner.invoke(app, ["grok", "--help"])
    assert "--snapshot-every" in res.output

    fam = tmp_path / "fam"
    res = runner.invoke(app, ["family", "train", "--widths", "8", "--heads", "2", "--seq-len", "8", "--seeds", "0",
                              "--source", SOURCE, "--budget-tokens", "2048", "--batch-tokens", "128", "--layers", "1",
                              "--snapshot-every", "4", "--executor", "inline", "--quiet", "--out", str(fam)])
    assert res.exit_code == 0, res.output
    (member,) = find_runs(fam)
    assert load_snapshots(member).steps == (0, 4, 8, 12, 16)
    assert io.read_json(fam / family.FAMILY_JSON)["config"]["snapshot_every"] == 4


def test_directories_that_are_not_one_run_are_refused(grok_dir, tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_snapshots(tmp_path / "missing")
    with pytest.raises(ValueError, match="neither a grokking run nor a family member.*checkpoint.pt.*member.json"):
        load_snapshots(tmp_path)
    with pytest.raises(ValueError, match="snapshot folder of a run"):
        load_snapshots(grok_dir / grokking.SNAPSHOTS)
    with pytest.raises(ValueError, match=r"no snapshot at step 3; its 4 snapshots are at steps 0, 5, 10, 12"):
        load_snapshots(grok_dir).model_at(3)
    with pytest.raises(ValueError, match="max_sequences"):
        load_snapshots(grok_dir, max_sequences=0)
