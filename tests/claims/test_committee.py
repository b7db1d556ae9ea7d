"""The committee-machine claims (Aubin et al. 2018, arXiv:1806.05451): studies, tests and verdicts.

Synthetic piece directories (written in the studies' own layout) carry planted answers: a computational
gap that AMP respects ("supported"), AMP succeeding inside the gap ("contradicted"), SE without a
transition ("not supported"). Small real runs check the studies themselves: the K = 2 Gaussian
specialization threshold, resuming a half-finished AMP run.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from thermolens import io
from thermolens.claims import committee as cm
from thermolens.claims.base import Evidence
from thermolens.claims.verdicts import decide
from thermolens.experiments.committee import contract
from thermolens.runner.study import config_from_dict, config_to_dict

# SE values of docs/committee.md ("Thresholds" table, K = 2): Gaussian alpha_spec = 2.052 (continuous);
# binary alpha_IT = 1.5461, alpha_spec (uninformed branch) = 1.5893, alpha_alg = 1.9771
GAUSS_SPEC = 2.052
BIN_IT, BIN_SPEC, BIN_ALG = 1.5461, 1.5893, 1.9771


# --------------------------------------------------------------------------------------------------
# synthetic piece directories


def _se_row(alpha, branch, q_d, q_a, eps, *, equilibrium, on_scan=True, perfect=False):
    off = q_a / 2.0
    return {"alpha": alpha, "branch": branch, "equilibrium": equilibrium, "q_d": q_d, "q_a": q_a,
            "Q00": q_d + off, "Q01": off, "Q11": q_d + off, "free_entropy": -1.0, "eps_g": eps, "eps_plugin": eps,
            "residual": 1e-10, "n_iter": 10, "converged": True, "perfect": perfect, "on_scan": on_scan}


def _gaussian_table(alphas, spec):
    """Continuous specialization at ``spec``: both branches equal, q_d = 0 below, growing above."""
    rows = []
    for a in alphas:
        q_d = 0.0 if a < spec else min(0.9, 0.3 * (a - spec) + 0.05)
        q_a = 0.6 * (1 - q_d)
        eps = 0.25 - 0.04 * a
        rows += [_se_row(a, "uninformed", q_d, q_a, eps, equilibrium=True),
                 _se_row(a, "informed", q_d, q_a, eps, equilibrium=False)]
    return pd.DataFrame(rows)


def _binary_table(alphas):
    """First order: perfect state (q = 1) is the equilibrium above BIN_IT; the uninformed branch
    (q_diag ~0.3-0.5) reaches it only at BIN_ALG."""
    rows = []
    for a in alphas:
        if a < BIN_ALG:
            q_d = 0.0 if a < BIN_SPEC else 0.4 * (a - BIN_SPEC)
            rows.append(_se_row(a, "uninformed", q_d, 0.6 - q_d, 0.15, equilibrium=a < BIN_IT))
        else:
            rows.append(_se_row(a, "uninformed", 1.0, 0.0, 0.0, equilibrium=True, perfect=True))
        rows.append(_se_row(a, "informed", 1.0, 0.0, 0.0, equilibrium=BIN_IT <= a < BIN_ALG, perfect=True))
    return pd.DataFrame(rows)


def _thresholds(order, spec=None, it=None, alg=None):
    return {"K": 2, "prior": "x", "alpha_spec": spec, "alpha_it": it, "alpha_alg": alg, "order": order,
            "alpha_min": 0.0, "alpha_max": 4.0, "alpha_tol": 1e-4, "n_not_converged": 0, "seconds": 0.0,
            "cpu_seconds": 0.0}


def _write_se(root, config, *, transition=True):
    io.write_json(root / contract.STUDY_JSON, config_to_dict(config))
    for s in config.settings:
        grid = [round(s.alpha_min + k * s.step, 6) for k in range(1, int(round((s.alpha_max - s.alpha_min) / s.step)) + 1)]
        alphas = sorted(set(grid) | set(s.alphas))
        if s.prior == "gaussian":
            spec = GAUSS_SPEC if transition else math.inf
            table = _gaussian_table(alphas, spec)
            th = _thresholds("second", spec=GAUSS_SPEC) if transition else _thresholds(None)
        else:
            table = _binary_table(alphas)
            th = _thresholds("first", spec=BIN_SPEC, it=BIN_IT, alg=BIN_ALG)
        table["on_scan"] = table["alpha"].isin(grid)
        job = root / contract.SETTINGS / s.name
        job.mkdir(parents=True)
        io.write_table(job / contract.SE_TABLE, table)
        io.write_json(job / "result.json", th)


def _write_amp(root, config, se_table, *, amp_beats_gap=False, seed=0):
    """AMP runs at SE's Bayes-optimal overlap (with 1/sqrt(n) noise), except inside the binary gap
    where they sit on the uninformed branch (or, with ``amp_beats_gap``, at the Bayes-optimal one)."""
    rng = np.random.default_rng(seed)
    io.write_json(root / contract.STUDY_JSON, config_to_dict(config))
    for job in contract._amp_jobs(config):
        a = job.config["alpha"]
        at = se_table[np.isclose(se_table["alpha"], a)]
        eq = at[at["equilibrium"]].iloc[0]
        un = at[at["branch"] == "uninformed"].iloc[0]
        target = eq if amp_beats_gap else un if config.prior == "binary" and BIN_IT < a < BIN_ALG else eq
        q_diag = float(target["Q00"]) + rng.normal(0, 0.5 / math.sqrt(config.n))
        row = {"alpha": a, "n": config.n, "seed": job.config["seed"], "Q00": q_diag, "Q01": 0.0, "Q10": 0.0,
               "Q11": q_diag, "q_d": float(target["q_d"]), "q_a": float(target["q_a"]), "q_diag": q_diag,
               "q_self_diag": q_diag, "eps_test": float(target["eps_plugin"]) + rng.normal(0, 0.005),
               "eps_plugin": float(target["eps_plugin"]), "eps_gibbs": float(target["eps_g"]), "n_iter": 50,
               "converged": True, "final_change": 1e-5, "seconds": 0.1, "cpu_seconds": 0.1}
        (root / contract.RUNS / job.name).mkdir(parents=True)
        io.write_json(root / contract.RUNS / job.name / "result.json", row)


def _synthetic_pieces(tmp_path, *, transition=True, amp_beats_gap=False):
    the_plan = cm.plan("quick")
    names = the_plan.names()
    dirs = {name: tmp_path / "pieces" / name for name in names.values()}
    _write_se(dirs[names["se"]], the_plan.se, transition=transition)
    se = contract.load_se(dirs[names["se"]])
    for key in ("amp_gaussian", "amp_binary", "amp_binary_n", "amp_binary_damped"):
        config = getattr(the_plan, key)
        table = se.tables[cm.GAUSSIAN if config.prior == "gaussian" else cm.BINARY]
        _write_amp(dirs[names[key]], config, table, amp_beats_gap=amp_beats_gap)
    return dirs


def _evaluate(claim_id, pieces, tmp_path):
    claim = next(c for c in cm.CLAIMS if c.id == claim_id)
    claim_dir = tmp_path / "claims" / claim_id
    claim_dir.mkdir(parents=True)
    evidence = claim.evaluate("quick", {p.name: pieces[p.name] for p in claim.pieces("quick")}, claim_dir)
    assert (claim_dir / evidence.figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    back = Evidence.from_dict(json.loads(io.dumps_json(evidence.to_dict())))
    assert json.loads(io.dumps_json(back.to_dict())) == json.loads(io.dumps_json(evidence.to_dict()))
    return back


# --------------------------------------------------------------------------------------------------
# claims on planted answers


def test_gap_respected_by_amp_is_supported(tmp_path):
    pieces = _synthetic_pieces(tmp_path)
    ev = _evaluate("aubin-gap", pieces, tmp_path)
    # quick grid: 3 alphas x 4 seeds inside the gap, all failing; 3 x 4 outside, all succeeding:
    # p = 2 * max(P(Bin(12, 1/2) <= 0), P(Bin(12, 1/2) >= 12)) = 2 * 0.5^12
    assert ev.decision.p_value == pytest.approx(2 * 0.5**12)
    assert ev.decision.if_rejected == "supported"
    assert decide({"aubin-gap": ev})["aubin-gap"].verdict == "supported"
    assert ev.numbers["k_gap"] == 0 and ev.numbers["n_gap"] == 12 and ev.numbers["k_can"] == ev.numbers["n_can"] == 12
    # planted: 0.15 plug-in error on the uninformed branch against 0 Bayes-optimal
    assert ev.effect == pytest.approx(0.15, abs=0.005) and ev.null == pytest.approx(0.15)
    assert ev.ci[0] <= ev.effect <= ev.ci[1]
    assert ev.needs_full is None
    choices = [v.choice for v in ev.variants]
    for word in ("within 0.05", "within 0.25", "0.05 above", "0.2 above", "n = 1500", "damping 0.3", "Gaussian"):
        assert any(word in c for c in choices), word


def test_amp_beating_the_gap_is_contradicted(tmp_path):
    pieces = _synthetic_pieces(tmp_path, amp_beats_gap=True)
    ev = _evaluate("aubin-gap", pieces, tmp_path)
    assert ev.decision.if_rejected == "contradicted"
    assert ev.decision.p_value == pytest.approx(2 * 0.5**12)  # 12/12 successes inside the gap
    verdict = decide({"aubin-gap": ev})["aubin-gap"]
    assert verdict.primary == "contradicted"
    # every binary variant agrees; Gaussian weights have no gap to beat, so there AMP meeting SE reads
    # "supported" and the row is inconclusive, naming the prior
    assert verdict.verdict == "inconclusive" and len(verdict.flipped_by) == 1 and "Gaussian" in verdict.flipped_by[0]
    assert ev.effect == pytest.approx(0.0, abs=0.005)


def test_specialization_found_and_not_found(tmp_path):
    ev = _evaluate("aubin-specialization", _synthetic_pieces(tmp_path / "a"), tmp_path / "a")
    assert ev.verdict == "supported" and ev.decision is None
    assert ev.effect == pytest.approx(GAUSS_SPEC)
    assert [v.verdict for v in ev.variants] == ["supported"] * 3
    assert ev.variants[2].effect == pytest.approx(BIN_IT)  # binary: the equilibrium jumps at alpha_IT
    # synthetic AMP follows SE: q_d = 0 at 0.5, 1, 1.5 and > 0 at 3, 3.5, 4
    assert ev.null_ci == (1.5, 3.0)
    assert ev.numbers["amp"]["q_d_zero_below_alpha_spec"] and ev.numbers["amp"]["q_d_positive_above_alpha_spec"]

    ev = _evaluate("aubin-specialization", _synthetic_pieces(tmp_path / "b", transition=False), tmp_path / "b")
    assert ev.verdict == "not supported" and ev.effect is None
    assert decide({"x": ev})["x"].verdict == "inconclusive"  # the binary-weights variant still specializes


def test_gap_test_without_a_gap_tests_only_where_amp_can_succeed():
    alphas = [0.5, 1.0, 3.0]
    table = _gaussian_table(alphas, GAUSS_SPEC)
    runs = pd.DataFrame([{"alpha": a, "seed": s, "q_diag": float(table[(table.alpha == a) & table.equilibrium].Q00.iloc[0]),
                          "eps_test": 0.2} for a in alphas for s in range(4)])
    test = cm.gap_test(_thresholds("second", spec=GAUSS_SPEC), table, runs)
    assert not test.has_gap and test.n_gap == 0 and test.k_can == test.n_can == 12
    assert test.p_value == pytest.approx(0.5**12) and test.if_rejected == "supported"
    # AMP stuck far from the Bayes-optimal overlap at every alpha: nothing significant
    failed = cm.gap_test(_thresholds("second", spec=GAUSS_SPEC), table, runs.assign(q_diag=runs.q_diag + 0.5))
    assert failed.k_can == 0 and failed.p_value == pytest.approx(1.0)


def test_a_gap_without_runs_on_one_side_is_not_testable():
    alphas = [1.7, 1.8]  # all inside the gap: nothing tests "AMP succeeds outside"
    table = _binary_table(alphas)
    runs = pd.DataFrame([{"alpha": a, "seed": s, "q_diag": 0.4, "eps_test": 0.15} for a in alphas for s in range(4)])
    test = cm.gap_test(_thresholds("first", spec=BIN_SPEC, it=BIN_IT, alg=BIN_ALG), table, runs)
    assert test.has_gap and test.n_gap == 8 and test.n_can == 0 and math.isnan(test.p_value)
    assert cm._gap_variant("x", test).verdict == "inconclusive"


def test_runs_next_to_alpha_alg_are_left_out():
    th = _thresholds("first", spec=BIN_SPEC, it=BIN_IT, alg=BIN_ALG)
    assert cm._region(1.5, th, 0.1) == "can"
    assert cm._region(1.8, th, 0.1) == "gap"
    assert cm._region(2.0, th, 0.1) == "edge"
    assert cm._region(2.1, th, 0.1) == "can"
    assert cm._region(2.0, _thresholds("second", spec=2.05), 0.1) == "edge"


def test_mean_ci_brackets_the_mean_and_collapses_on_constants():
    mean, lo, hi = cm._mean_ci([[1.0, 2.0, 3.0], [10.0]])
    assert mean == pytest.approx(4.0) and lo <= mean <= hi
    assert cm._mean_ci([[0.5, 0.5, 0.5]]) == (0.5, 0.5, 0.5)


# --------------------------------------------------------------------------------------------------
# presets and configs


@pytest.mark.parametrize("preset", ["quick", "full"])
def test_pieces_build_and_configs_round_trip(preset):
    for claim in cm.CLAIMS:
        assert claim.source == "Aubin et al. 2018"
        assert "thermolens committee" in claim.command(preset)
        for piece in claim.pieces(preset):
            assert piece.est_s > 0 and piece.est_gib > 0
            study = contract.SE_STUDY if piece.study == cm.SE_STUDY else contract.AMP_STUDY
            config = study.config(piece.config)  # validates
            assert config_to_dict(config_from_dict(study.config_type, piece.config)) == piece.config
    by_name = {}
    for claim in cm.CLAIMS:
        for piece in claim.pieces(preset):
            assert by_name.setdefault(piece.name, piece.config) == piece.config  # shared pieces agree


def test_quick_budget_estimate():
    # the brief's budget for both claims together: 2.5 min on 2 cores
    pieces = {p.name: p for c in cm.CLAIMS for p in c.pieces("quick")}
    assert sum(p.est_s for p in pieces.values()) <= 150


def test_bad_configs_say_what_to_fix():
    with pytest.raises(ValueError, match="n >= 500"):
        contract.AMPStudyConfig(n=100)
    with pytest.raises(ValueError, match="repeat"):
        contract.AMPStudyConfig(alphas=(1.0, 1.0))
    with pytest.raises(ValueError, match="unknown prior"):
        contract.SESetting("x", prior="ternary")
    with pytest.raises(ValueError, match="repeat"):
        contract.SEStudyConfig(settings=(contract.SESetting("a"), contract.SESetting("a")))
    with pytest.raises(ValueError, match="unknown"):
        cm.plan("medium")


# --------------------------------------------------------------------------------------------------
# the studies, really run


def test_se_study_finds_the_k2_gaussian_specialization(tmp_path, monkeypatch):
    monkeypatch.setenv("THERMOLENS_PIECE_EXECUTOR", "inline")
    setting = contract.SESetting("g", alpha_min=1.8, alpha_max=2.4, step=0.2, alpha_tol=1e-3, alphas=(1.0,))
    result = contract.SE_STUDY.run(contract.SEStudyConfig(settings=(setting,)), tmp_path)
    th, table = result.thresholds["g"], result.tables["g"]
    assert th["order"] == "second" and th["alpha_it"] is None
    assert th["alpha_spec"] == pytest.approx(GAUSS_SPEC, abs=2e-3)  # docs/committee.md: 2.052
    check = cm.transition(th, table)
    assert check["found"] and check["n_below"] == 1 and check["n_above"] == 2
    extra = table[table["alpha"] == 1.0]
    assert len(extra) == 2 and not extra["on_scan"].any() and (extra["q_d"].abs() < 1e-6).all()
    assert contract.SE_STUDY.summary(contract.SE_STUDY.load(tmp_path))["g"]["order"] == "second"


def test_amp_study_resumes_a_half_finished_run(tmp_path, monkeypatch):
    monkeypatch.setenv("THERMOLENS_PIECE_EXECUTOR", "inline")
    config = contract.AMPStudyConfig(prior="gaussian", n=500, alphas=(1.0,), seeds=(0, 1), n_test=500)
    first = contract.AMP_STUDY.run(config, tmp_path).table
    kept = tmp_path / contract.RUNS / "a1-s0" / "result.json"
    redone = tmp_path / contract.RUNS / "a1-s1" / "result.json"
    stamp = kept.stat().st_mtime_ns
    redone.unlink()  # as if killed before this run finished
    second = contract.AMP_STUDY.run(config, tmp_path).table
    assert kept.stat().st_mtime_ns == stamp and redone.is_file()
    pd.testing.assert_frame_equal(first.drop(columns=["seconds", "cpu_seconds"]),
                                  second.drop(columns=["seconds", "cpu_seconds"]))
    # non-specialized phase (alpha = 1 < alpha_spec): q_d = 0, q_diag near SE's q_a / 2 = 0.24
    assert (second["q_d"].abs() < 1e-3).all() and np.allclose(second["q_diag"], 0.24, atol=0.06)
    with pytest.raises(ValueError, match="another config"):
        contract.AMP_STUDY.run(contract.AMPStudyConfig(prior="gaussian", n=600, alphas=(1.0,), seeds=(0, 1)), tmp_path)
