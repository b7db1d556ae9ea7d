"""The claims machinery on made-up claims: Holm, the sensitivity rule, pieces run once, resume, staleness,
failures, the page, and the manifest under SIGTERM."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest

from thermolens import io
from thermolens.claims import run as claims_run
from thermolens.claims.base import Claim, Decision, Evidence, Piece, Variant
from thermolens.claims.verdicts import decide, holm
from thermolens.report.claims import render_html
from thermolens.runner import study as study_mod
from thermolens.runner.study import Study

# ---------------------------------------------------------------------------------------------
# Holm


def test_holm_matches_a_hand_computed_example():
    # p sorted: 0.005 (x4 = 0.02), 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04 -> running max 0.06)
    adjusted, level = holm([0.01, 0.04, 0.03, 0.005], alpha=0.05)
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06, 0.02])
    # thresholds by rank: 0.05/4, 0.05/3, 0.05/2 (first failure: 0.03 > 0.025), then stopped at 0.025
    np.testing.assert_allclose(level, [0.05 / 3, 0.025, 0.025, 0.05 / 4])
    assert list(adjusted <= 0.05) == [True, False, False, True]


def test_holm_rejects_exactly_the_step_down_set_on_random_p_values():
    rng = np.random.default_rng(3)
    for _ in range(200):
        p = rng.uniform(0, 0.06, size=rng.integers(1, 8))
        adjusted, _ = holm(p)
        order = np.argsort(p)
        reject = np.zeros(p.size, bool)
        for rank, i in enumerate(order):
            if p[i] > 0.05 / (p.size - rank):
                break
            reject[i] = True
        assert np.array_equal(adjusted <= 0.05, reject)


def test_holm_refuses_bad_p_values():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm([0.2, 1.5])


# ---------------------------------------------------------------------------------------------
# verdicts


def _tested(p: float, variants=()) -> Evidence:
    return Evidence(effect=1.0, effect_label="x", reason="r", variants=tuple(variants),
                    decision=Decision("H0: x = 0", p, "supported", "not supported"))


def test_variant_that_flips_makes_the_row_inconclusive_and_names_the_choice():
    flip = Variant("threshold 2", effect=0.1, p_value=0.4, if_rejected="supported", if_not_rejected="not supported")
    same = Variant("threshold 1", effect=0.9, p_value=0.001, if_rejected="supported", if_not_rejected="not supported")
    out = decide({"a": _tested(0.001, [same, flip]), "b": _tested(0.5)})
    assert out["a"].primary == "supported"
    assert out["a"].verdict == "inconclusive" and out["a"].flipped_by == ("threshold 2",)
    assert "threshold 2" in out["a"].note
    assert out["b"].verdict == "not supported" and out["a"].n_tests == 3


def test_holm_changes_a_verdict_that_is_significant_alone():
    # p = 0.03 passes alone but not against 0.04 in a family of two (0.03 > 0.05/2)
    alone = decide({"a": _tested(0.03)})
    together = decide({"a": _tested(0.03), "b": _tested(0.04)})
    assert alone["a"].verdict == "supported"
    assert together["a"].verdict == "not supported" and together["a"].p_adjusted == pytest.approx(0.06)


def test_fixed_verdicts_and_needs_full():
    exact = Evidence(effect=1e-7, effect_label="max error", reason="identity", verdict="supported",
                     variants=(Variant("float32", verdict="supported"),))
    short = dataclasses.replace(_tested(1e-6), needs_full="p = 113 runs for 16k steps")
    out = decide({"e": exact, "s": short})
    assert out["e"].verdict == "supported" and out["e"].n_tests == 0 and out["e"].p_value is None
    assert out["s"].verdict == "inconclusive" and "full preset" in out["s"].note
    assert out["s"].primary == "supported" and out["s"].p_adjusted is None  # outside the Holm family


def test_rows_that_need_the_full_preset_do_not_tighten_the_family():
    short = dataclasses.replace(_tested(0.001), needs_full="more runs")
    # alone, 0.03 passes; a needs-full row beside it must not make it a family of two
    assert decide({"a": _tested(0.03), "s": short})["a"].verdict == "supported"


def test_evidence_validation_and_round_trip():
    with pytest.raises(ValueError, match="exactly one"):
        Evidence(effect=1.0, effect_label="x", reason="r")
    with pytest.raises(ValueError, match="not a verdict"):
        Evidence(effect=1.0, effect_label="x", reason="r", verdict="true")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        Decision("t", 1.2, "supported", "not supported")
    ev = _tested(0.2, [Variant("v", effect=float("nan"), p_value=0.1, if_rejected="supported", if_not_rejected="not supported")])
    back = Evidence.from_dict(json.loads(io.dumps_json(ev.to_dict())))
    assert back == ev and back.variants[0].effect is None


# ---------------------------------------------------------------------------------------------
# the runner on made-up claims


@dataclasses.dataclass(frozen=True)
class CountConfig:
    value: float = 1.0
    fail: bool = False


CALLS: list[float] = []


def _run(config: CountConfig, run_dir: Path) -> float:
    CALLS.append(config.value)
    if config.fail:
        raise RuntimeError("piece exploded")
    io.write_json(run_dir / "value.json", {"value": config.value})
    return config.value


FAKE = Study(name="fake", config_type=CountConfig, run=_run,
             load=lambda d: io.read_json(d / "value.json")["value"], summary=lambda v: {"value": v})


def _claim(cid: str, piece_value: float, p: float, fail: bool = False) -> Claim:
    def pieces(preset):
        return [Piece("shared", "fake:STUDY", {"value": 1.0}, est_s=1.0),
                Piece(f"own-{cid}", "fake:STUDY", {"value": piece_value, "fail": fail}, est_s=2.0)]

    def evaluate(preset, dirs, claim_dir):
        total = sum(FAKE.load(d) for d in dirs.values())
        return Evidence(effect=total, effect_label="sum", reason="made up",
                        decision=Decision("H0", p, "supported", "not supported"))

    return Claim(cid, "Nobody 2026", f"claim {cid}", pieces, evaluate, lambda preset: f"echo {cid}")


@pytest.fixture
def fake_claims(monkeypatch):
    claims = {"c1": _claim("c1", 2.0, 0.001), "c2": _claim("c2", 3.0, 0.5)}
    monkeypatch.setattr(claims_run, "all_claims", lambda: claims)
    monkeypatch.setattr(claims_run, "select", lambda only: [claims[c] for c in (only or claims)])
    monkeypatch.setattr(study_mod, "resolve_study", lambda path: FAKE)
    CALLS.clear()
    return claims


def test_report_runs_shared_pieces_once_and_resumes_without_redoing(tmp_path, fake_claims):
    cfg = _config()
    report = claims_run.run_claims(cfg, tmp_path)
    assert sorted(CALLS) == [1.0, 2.0, 3.0]  # the shared piece ran once
    rows = {r.id: r for r in report.rows}
    assert rows["c1"].effect == 3.0 and rows["c2"].effect == 4.0
    assert rows["c1"].verdict == "supported" and rows["c2"].verdict == "not supported"
    assert report.n_tests == 2 and rows["c1"].p_adjusted == pytest.approx(0.002)
    loaded = claims_run.ClaimsReport.load(tmp_path)
    assert loaded.rows[0].id == "c1" and loaded.rows[0].effect == 3.0

    # kill -9 in the middle of a piece: job.json written, no result.json; the rerun finishes only that
    (tmp_path / "pieces" / "own-c2" / "result.json").unlink()
    CALLS.clear()
    claims_run.run_claims(cfg, tmp_path)
    assert CALLS == [3.0]


def test_changed_piece_config_is_stale_and_recomputed(tmp_path, fake_claims):
    cfg = _config()
    claims_run.run_claims(cfg, tmp_path)
    fake_claims["c2"] = _claim("c2", 5.0, 0.5)
    plan = claims_run.make_plan(cfg)
    stale = claims_run.stale_runs(plan, "quick", tmp_path)
    assert stale == {"pieces/own-c2": ["config.value"], "claims/c2": ["pieces.own-c2.config.value"]}
    CALLS.clear()
    report = claims_run.run_claims(cfg, tmp_path)
    assert CALLS == [5.0] and {r.id: r.effect for r in report.rows}["c2"] == 6.0


def test_failed_piece_leaves_its_claim_inconclusive_and_others_decided(tmp_path, fake_claims):
    fake_claims["c2"] = _claim("c2", 3.0, 0.5, fail=True)
    report = claims_run.run_claims(_config(), tmp_path)
    rows = {r.id: r for r in report.rows}
    assert rows["c1"].verdict == "supported"
    assert rows["c2"].verdict == "inconclusive" and "piece exploded" in rows["c2"].note
    assert "pieces/own-c2" in report.failed
    page = render_html(report.to_dict())
    assert "piece exploded" in page and page.count("<section") == 2


def test_conflicting_shared_piece_is_refused(fake_claims):
    other = _claim("c3", 1.0, 0.1)
    fake_claims["c3"] = dataclasses.replace(
        other, pieces=lambda preset: [Piece("shared", "fake:STUDY", {"value": 9.0}, est_s=1.0)])
    with pytest.raises(RuntimeError, match="'shared' is defined differently"):
        claims_run.make_plan(_config())


def _config() -> claims_run.ClaimsConfig:
    # built without __post_init__'s registry check (the made-up claims are not in the registry)
    cfg = object.__new__(claims_run.ClaimsConfig)
    for f in dataclasses.fields(claims_run.ClaimsConfig):
        object.__setattr__(cfg, f.name, f.default)
    return cfg


# ---------------------------------------------------------------------------------------------
# the manifest under SIGTERM


def test_sigterm_leaves_the_manifest_interrupted(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with io.RunRecorder(run_dir=tmp_path, kind="claims", command=["x"], config={}):
            os.kill(os.getpid(), signal.SIGTERM)
    manifest = io.read_json(tmp_path / io.MANIFEST)
    assert manifest["status"] == "interrupted" and "signal" in manifest["error"]
    assert signal.getsignal(signal.SIGTERM) is not io._raise_interrupt  # restored after the block
