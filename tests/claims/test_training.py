"""Criticality-aware training as a claim: planted effects on synthetic optimizer-comparison pieces give
the verdicts they must, the paired tests agree with scipy, the learning rates are tuned per optimizer
in the full preset, and the study contract runs, loads back, resumes and refuses foreign configs."""

from __future__ import annotations

import math
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from thermolens import io
from thermolens.claims import training as ct
from thermolens.claims.base import Evidence
from thermolens.claims.verdicts import decide
from thermolens.experiments.optimize import contract
from thermolens.experiments.optimize.compare import CompareConfig
from thermolens.runner.study import config_from_dict, config_to_dict, resolve_study

# --------------------------------------------------------------------------------------------------
# the statistics


def test_paired_t_matches_scipy():
    # reference: scipy.stats.ttest_1samp on the differences (= ttest_rel of the pairs)
    d = np.array([-0.03, -0.01, -0.025, 0.004, -0.02])
    test = ct.paired_test(d)
    assert test.p_less == pytest.approx(stats.ttest_1samp(d, 0.0, alternative="less").pvalue, rel=1e-12)
    assert test.p_greater == pytest.approx(stats.ttest_1samp(d, 0.0, alternative="greater").pvalue, rel=1e-12)
    lo, hi = stats.t.interval(0.95, d.size - 1, loc=d.mean(), scale=stats.sem(d))
    assert test.ci == pytest.approx((lo, hi), rel=1e-12)
    p, verdict = ct.directed(test)
    assert verdict == "supported" and p == pytest.approx(2 * test.p_less)
    assert p == pytest.approx(stats.ttest_1samp(d, 0.0).pvalue, rel=1e-12)  # doubled = two-sided


def test_sign_flip_is_exact():
    # all three differences negative: only the identity (of 2^3 = 8 sign vectors) is as extreme
    test = ct.paired_test([-1.0, -2.0, -3.0])
    assert test.p_sign_less == pytest.approx(1 / 8)
    assert test.p_sign_greater == pytest.approx(1.0)
    assert ct.directed(test, sign_flip=True) == (pytest.approx(0.25), "supported")
    # the null of the mean is symmetric about 0 and reaches +-mean(|d|) = +-2 at its extremes
    assert test.null_ci[0] == pytest.approx(-test.null_ci[1])
    assert -2.0 <= test.null_ci[0] < 0
    # worse in every seed: the verdict that a rejection means is "contradicted"
    assert ct.directed(ct.paired_test([1.0, 2.0, 3.5]))[1] == "contradicted"


def test_paired_test_refuses_nonfinite():
    with pytest.raises(ValueError, match="finite"):
        ct.paired_test([0.1, math.nan])


def test_steps_to_loss_interpolates():
    h = pd.DataFrame({"step": [0, 10, 20, 30], "val_loss": [3.0, 2.0, 1.0, 0.5]})
    assert ct.steps_to_loss(h, 1.5) == pytest.approx(15.0)  # halfway between 2.0 (step 10) and 1.0 (step 20)
    assert ct.steps_to_loss(h, 3.0) == 0.0
    assert math.isnan(ct.steps_to_loss(h, 0.1))


# --------------------------------------------------------------------------------------------------
# synthetic pieces in the layout contract.load reads


def _lm_curve(final: float, steps: int) -> pd.DataFrame:
    """A validation-loss curve decaying to ``final`` at ``steps`` (10 evaluations)."""
    s = np.linspace(0, steps, 11)
    return pd.DataFrame({"step": s.astype(int), "val_loss": final + 2.0 * np.exp(-4 * s / steps) - 2.0 * math.exp(-4),
                         "wall_s": s / 10})


def write_piece(root: Path, config: CompareConfig, values) -> Path:
    """A finished comparison: ``values(optimizer, seed)`` is the final LM validation loss (lm) or
    ``(onset_step, onset_90_step)`` (grokking; ``nan`` onset: never generalized)."""
    rows = []
    for name, spec in config.runs().items():
        row = {"run": name, "optimizer": spec.optimizer, "init": spec.init, "seed": spec.seed}
        if config.task == "lm":
            history = _lm_curve(values(spec.optimizer, spec.seed), config.steps)
            io.write_table(root / "runs" / name / "history.parquet", history)
            for step in sorted({config.steps // 4, config.steps // 2, config.steps}):
                row[f"val_loss_at_{step}"] = float(np.interp(step, history["step"], history["val_loss"]))
        else:
            onset, onset_90 = values(spec.optimizer, spec.seed)
            row.update(onset_step=onset, onset_90_step=onset_90, grokked=math.isfinite(onset_90),
                       steps=config.max_steps if math.isnan(onset) else int(onset_90) + 500)
        rows.append(row)
    io.write_json(root / io.MANIFEST, {"kind": contract.KIND, "status": "complete", "config": config_to_dict(config)})
    io.write_table(root / contract.RUNS, pd.DataFrame(rows))
    io.write_table(root / contract.SUMMARY, pd.DataFrame([{"optimizer": "adamw"}]))
    io.write_text(root / contract.VERDICT, "synthetic\n")
    return root


def _noise(optimizer: str, seed: int, scale: float) -> float:
    return scale * np.random.default_rng(1000 * seed + sum(map(ord, optimizer))).standard_normal()


def lm_values(delta: dict[str, float], scale: float = 0.005, lr_penalty: float = 0.0):
    """Final loss = 1.5 + seed effect + per-optimizer shift ``delta`` + noise (+ ``lr_penalty``)."""
    return lambda o, s: 1.5 + 0.05 * s + delta.get(o, 0.0) + _noise(o, s, scale) + lr_penalty


def quick_pieces(tmp_path: Path, delta: dict[str, float], scale: float = 0.005) -> dict[str, Path]:
    out = {}
    for piece in ct.CLAIMS[0].pieces("quick"):
        config = config_from_dict(CompareConfig, piece.config)
        out[piece.name] = write_piece(tmp_path / piece.name, config, lm_values(delta, scale))
    return out


def evaluate(preset: str, pieces: dict[str, Path], tmp_path: Path) -> Evidence:
    claim_dir = tmp_path / "claim"
    claim_dir.mkdir(exist_ok=True)
    evidence = ct.CLAIMS[0].evaluate(preset, pieces, claim_dir)
    assert (claim_dir / evidence.figure).is_file()
    return evidence


@pytest.mark.parametrize("shift, expected", [(-0.05, "supported"), (0.05, "contradicted")])
def test_planted_effect_is_found(tmp_path, shift, expected):
    # critical shifted by 10 noise sd in every seed: the paired t-test over 3 seeds rejects (p ~ 1e-3)
    evidence = evaluate("quick", quick_pieces(tmp_path, {"critical": shift}), tmp_path)
    assert evidence.effect == pytest.approx(shift, abs=0.02)
    assert evidence.decision.if_rejected == expected
    assert evidence.decision.p_value < 0.01
    assert evidence.needs_full  # quick: 3 seeds, untuned
    assert evidence.numbers["baseline_tuned"] is False
    assert "not tuned" in evidence.reason


def test_null_data_is_not_supported(tmp_path):
    evidence = evaluate("quick", quick_pieces(tmp_path, {}, scale=0.01), tmp_path)
    assert evidence.decision.p_value > 0.05
    verdict = decide({"critical-training": evidence})["critical-training"]
    assert verdict.primary == "not supported"
    assert verdict.verdict == "inconclusive"  # the quick preset always says it needs the full one


def test_variants_and_roundtrip(tmp_path):
    evidence = evaluate("quick", quick_pieces(tmp_path, {"critical": 0.05, "kfac": -0.05}), tmp_path)
    choices = [v.choice for v in evidence.variants]
    assert any(c.startswith("metric: validation loss at half") for c in choices)
    assert any(c.startswith("metric: steps to reach") for c in choices)
    assert any(c.startswith("test: exact sign-flip") for c in choices)
    assert any(c.startswith(ct.SCHEDULED_CHOICE) for c in choices)
    kfac = next(v for v in evidence.variants if v.choice == ct.KFAC_CHOICE)
    assert kfac.if_rejected == "supported" and kfac.effect == pytest.approx(-0.05, abs=0.02)
    sign = next(v for v in evidence.variants if v.choice.startswith("test: exact sign-flip"))
    assert sign.p_value == pytest.approx(0.25)  # 3 seeds: the exact test cannot go below 2/8
    # the planted critical deficit also makes it slower to reach the worst final loss
    steps = next(v for v in evidence.variants if v.choice.startswith("metric: steps to reach"))
    assert steps.effect > 0 and steps.if_rejected == "contradicted"
    assert Evidence.from_dict(io.read_json(io.write_json(tmp_path / "ev.json", evidence.to_dict()))) == evidence


def _full_pieces(tmp_path: Path) -> dict[str, Path]:
    """AdamW is best at lr 1e-3, critical at 1e-2 (both 0.1 nats better there than elsewhere), and
    critical at its best lr is 0.03 lower than AdamW at its best; grokking: critical 100 steps later."""
    out = {}
    for piece in ct.CLAIMS[0].pieces("full"):
        config = config_from_dict(CompareConfig, piece.config)
        lr = config.lr
        if config.task == "lm":
            best = {"adamw": 1e-3, "critical": 1e-2, "kfac": 3e-3}

            def values(o, s, lr=lr, best=best):
                return lm_values({"critical": -0.03})(o, s) + (0.0 if math.isclose(lr, best[o]) else 0.1)
        else:
            def values(o, s, lr=lr):
                if o == "kfac" and s == 0:
                    return math.nan, math.nan  # one run never generalizes: censored at max_steps
                onset = 800 + 100 * s + (100 if o == "critical" else 0) + (0 if lr == 1e-3 else 300) + _noise(o, s, 10)
                return onset, onset + 400
        out[piece.name] = write_piece(tmp_path / piece.name, config, values)
    return out


def test_full_preset_tunes_learning_rates(tmp_path):
    evidence = evaluate("full", _full_pieces(tmp_path), tmp_path)
    assert evidence.needs_full is None
    assert evidence.numbers["baseline_tuned"] is True
    assert evidence.numbers["lr_adamw"] == 1e-3 and evidence.numbers["lr_critical"] == 1e-2
    assert evidence.decision.if_rejected == "supported" and evidence.decision.p_value < 0.01
    assert evidence.effect == pytest.approx(-0.03, abs=0.01)
    assert "tuned over lr" in evidence.reason
    by_choice = {v.choice: v for v in evidence.variants}
    untuned = next(v for c, v in by_choice.items() if c.startswith("lr: both at the default"))
    # at lr 3e-3 both are 0.1 off their best, so the planted -0.03 remains
    assert untuned.effect == pytest.approx(-0.03, abs=0.01)
    grok = by_choice[ct.GROK_CHOICE]
    assert grok.effect == pytest.approx(100, abs=15) and grok.if_rejected == "contradicted"
    kfac_grok = next(v for c, v in by_choice.items() if c.startswith("task: grokking") and "K-FAC" in c)
    comparison = evidence.numbers["comparisons"][next(c for c in by_choice if c.startswith("task: grokking")
                                                     and "K-FAC" in c)]
    assert comparison["not_generalized"]["kfac"] == 1
    assert comparison["kfac"][0] == ct.GROK_MAX_STEPS  # censored at the cap
    assert kfac_grok.p_value is not None


# --------------------------------------------------------------------------------------------------
# presets, configs and commands


@pytest.mark.parametrize("preset", ["quick", "full"])
def test_pieces_are_valid_configs(preset):
    pieces = ct.CLAIMS[0].pieces(preset)
    assert len({p.name for p in pieces}) == len(pieces)
    study = resolve_study(ct.STUDY)
    for piece in pieces:
        config = study.config(piece.config)
        assert config_to_dict(config) == piece.config  # round trip
        assert piece.est_s > 0 and piece.est_gib > 0
        assert set(config.seeds) == set(ct.QUICK_SEEDS if preset == "quick" else ct.FULL_SEEDS)
    total = sum(p.est_s for p in pieces)
    if preset == "quick":
        assert total <= 300  # the brief's quick budget for this claim: about 4 min on 2 cores
    else:
        assert len([p for p in pieces if "grok" in p.name]) == len(ct.GROK_LRS)


@pytest.mark.parametrize("preset", ["quick", "full"])
def test_command_rebuilds_the_piece_configs(monkeypatch, tmp_path, preset):
    """Each `thermolens optimize compare` command of the row builds exactly its piece's config."""
    from typer.testing import CliRunner

    from thermolens.cli import app
    from thermolens.experiments.optimize import compare

    seen = []

    def capture(config, root, **kwargs):
        seen.append(config_to_dict(config))
        raise RuntimeError("captured")

    monkeypatch.setattr(compare, "run_compare", capture)
    commands = ct.CLAIMS[0].command(preset).split(" && ")
    pieces = ct.CLAIMS[0].pieces(preset)
    assert len(commands) == len(pieces)
    for i, (command, piece) in enumerate(zip(commands, pieces)):
        args = shlex.split(command)
        assert args[:3] == ["thermolens", "optimize", "compare"]
        args[args.index("--out") + 1] = str(tmp_path / piece.name)
        CliRunner().invoke(app, args[1:] + ["--quiet"])
        assert len(seen) == i + 1, f"the command did not reach run_compare: {command}"
        assert seen[-1] == piece.config


# --------------------------------------------------------------------------------------------------
# the study contract on real (tiny) runs


def test_contract_runs_loads_and_resumes(tmp_path):
    config = CompareConfig(task="lm", optimizers=("adamw", "critical"), seeds=(0, 1), steps=12, seq_len=16,
                           batch_size=4, eval_every=4,
                           model={"n_layers": 1, "d_model": 16, "n_heads": 2, "d_head": 8, "d_mlp": 32})
    run_dir = tmp_path / "piece"
    result = contract.run(config, run_dir)
    loaded = contract.load(run_dir)
    assert loaded.config == config
    pd.testing.assert_frame_equal(loaded.runs, result.runs.reset_index(drop=True), check_dtype=False)
    assert contract.summary(loaded)["task"] == "lm"
    assert set(contract.load_histories(run_dir)) == set(config.runs())
    # a run killed before its result: only that run is redone
    (run_dir / "runs" / "critical-default-seed1" / "result.json").unlink()
    kept = (run_dir / "runs" / "adamw-default-seed0" / "result.json").stat().st_mtime_ns
    again = contract.run(config, run_dir)
    assert (run_dir / "runs" / "adamw-default-seed0" / "result.json").stat().st_mtime_ns == kept
    assert again.runs["val_loss_at_12"].tolist() == pytest.approx(result.runs["val_loss_at_12"].tolist())
    with pytest.raises(ValueError, match="other settings"):
        contract.run(CompareConfig(**{**config_to_dict(config), "steps": 16,
                                      "betas": tuple(config.betas), "seeds": config.seeds,
                                      "optimizers": config.optimizers, "inits": config.inits}), run_dir)
    with pytest.raises(ValueError, match="no finished optimizer comparison"):
        contract.load(tmp_path)
