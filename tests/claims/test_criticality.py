"""Claims theorem2 and detect-critical-point (thermolens.claims.criticality) and the two study contracts they use.

Evidence is checked on synthetic piece directories whose answer is planted: cascades drawn from the seed's
form with a = 3/2 must be kept ("supported"), with a = 0.8 excluded ("contradicted"); scan tables with most
heads distinct from their nulls and power laws among them must be "supported", tables at the null's own
rates must not be.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from thermolens.claims import criticality as crit
from thermolens.claims.base import Evidence
from thermolens.runner.study import config_from_dict, config_to_dict, resolve_study
from thermolens.stats import profile_truncated_power_law


def _tpl_sample(alpha: float, s_c: float, n: int, seed: int) -> np.ndarray:
    """Exact draws from P(s) ~ s^-alpha exp(-s/s_c) on s = 1..200000 (inverse CDF on the normalised pmf)."""
    s = np.arange(1, 200_001, dtype=np.float64)
    log_pmf = -alpha * np.log(s) - s / s_c
    pmf = np.exp(log_pmf - log_pmf.max())
    cdf = np.cumsum(pmf / pmf.sum())
    return s[np.searchsorted(cdf, np.random.default_rng(seed).random(n))]


# --------------------------------------------------------------------------------------------------
# claims, pieces and configs


def test_claims_in_order_with_valid_pieces_for_both_presets():
    assert [c.id for c in crit.CLAIMS] == ["theorem2", "detect-critical-point"]
    for claim in crit.CLAIMS:
        assert claim.source == "Aranda Barois 2024"
        for preset in ("quick", "full"):
            pieces = claim.pieces(preset)
            assert len({p.name for p in pieces}) == len(pieces)
            for piece in pieces:
                study = resolve_study(piece.study)
                config = study.config(piece.config)  # every piece is a valid config of its study
                assert config_from_dict(study.config_type, config_to_dict(config)) == config
                assert piece.est_s > 0 and piece.est_gib > 0
            assert "thermolens claims --only " + claim.id in claim.command(preset)
        # the quick pieces fit their share of the 30-minute report (6 min for both claims on 2 cores)
    assert sum(p.est_s for c in crit.CLAIMS for p in c.pieces("quick")) <= 360
    with pytest.raises(ValueError, match="preset"):
        crit.THEOREM2.pieces("medium")


def test_study_configs_round_trip_through_json():
    from thermolens.experiments.avalanches.contract import STUDY as AV, AvalancheStudyConfig, with_avalanches
    from thermolens.experiments.scan.contract import STUDY as SC, ScanStudyConfig
    from thermolens.experiments.scan.heads import ScanConfig

    av = with_avalanches(AvalancheStudyConfig(corpus=("a.txt",)), site="attn", temperatures=(0.5, 1.0),
                         robustness=(2.0,))
    assert AV.config(json.loads(json.dumps(config_to_dict(av)))) == av
    sc = ScanStudyConfig(scan=ScanConfig(temperatures=(0.1, 1.0, 10.0), layers=(0,)), model="m", power_law=True)
    back = SC.config(json.loads(json.dumps(config_to_dict(sc))))
    assert back == sc and isinstance(back.scan, ScanConfig) and back.scan.temperatures == (0.1, 1.0, 10.0)
    with pytest.raises(ValueError, match="no field"):
        SC.config({"scan": {}, "tokens": 3})
    with pytest.raises(ValueError, match="n_boot"):
        ScanStudyConfig(scan=ScanConfig(n_boot=0))


# --------------------------------------------------------------------------------------------------
# the statistics


def test_seed_form_profile_recovers_a_planted_exponent_and_rejects_a_wrong_one():
    # P(s) ~ s^-1.5 exp(-s/300): the fit must find a = 1.5 within its interval and keep 3/2 (+-0.1)
    form = profile_truncated_power_law(_tpl_sample(1.5, 300.0, 4000, seed=1), tolerance=0.1)
    lo, hi = form.alpha_ci
    assert lo < 1.5 < hi and hi - lo < 0.15
    assert form.p_tau > 0.05 and form.p_exact > 0.01
    assert 150 < form.s_c < 600
    # a = 0.8 (MiniLM's residual cascades give 0.86): 3/2 is excluded decisively
    wrong = profile_truncated_power_law(_tpl_sample(0.8, 300.0, 4000, seed=2), tolerance=0.1)
    assert wrong.alpha_ci[1] < 1.0 and wrong.p_tau < 1e-10


def test_ks_tail_bootstrap_gives_the_tail_exponent_with_an_error():
    from thermolens.stats import sample_power_law

    sizes = np.asarray(sample_power_law(2.5, 1, 3000, discrete=True, seed=3), dtype=float)
    tau, se = crit.ks_tail_bootstrap(sizes, n_boot=60, seed=0)
    assert abs(tau - 2.5) < 4 * se and 0 < se < 0.3


def _null_test(n_heads: int, distinct: float, calib: float, coincide: bool, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for d in ("C", "chi", "xi"):
        for k in range(n_heads):
            t_gauss = float(rng.uniform(0.3, 2.0))
            ratio = 1.3 if rng.random() < distinct else 1.0
            rows.append({"layer": k // 4, "head": k % 4, "definition": d, "n_sequences": 32, "T": t_gauss * ratio,
                         "T_lo": t_gauss * ratio * 0.97, "T_hi": t_gauss * ratio * 1.03, "T_gauss": t_gauss,
                         "T_shuffled": t_gauss * 1.1, "T_calib": t_gauss, "ratio_gauss": ratio, "at_edge": False,
                         "differs": ratio > 1.0, "calib_differs": bool(rng.random() < calib),
                         "ratio_C": 1.0 if coincide else 0.5, "coincides_C": coincide})
    return pd.DataFrame(rows)


def _critical(n_heads: int, rate: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ok = rng.random(n_heads) < rate
    return pd.DataFrame({"layer": np.arange(n_heads) // 4, "head": np.arange(n_heads) % 4, "T_star": 1.0,
                         "alpha": 2.0, "gof_p": np.where(ok, 0.5, 0.0), "R_lognormal": 0.1, "p_lognormal": 0.5,
                         "R_exponential": 1.0, "p_exponential": 0.01, "is_power_law": ok})


def test_distinct_and_power_law_tests_find_a_planted_effect_and_not_a_null_one():
    planted = crit.distinct_test(_null_test(72, 0.7, 0.05, True), "C")
    assert planted["p"] < 1e-20 and planted["fraction_ci"][0] < planted["fraction"] < planted["fraction_ci"][1]
    at_null = crit.distinct_test(_null_test(72, 0.05, 0.05, True, seed=1), "C")
    assert at_null["p"] > 0.01
    # the calibration rate raises the bar when it exceeds the nominal 5%
    assert crit.distinct_test(_null_test(72, 0.3, 0.25, True), "C")["p0"] > 0.2
    more = crit.power_law_test(_critical(72, 0.7, 1), _critical(72, 0.1, 2))
    assert more["p"] < 1e-6 and more["b"] > more["c"]
    same = crit.power_law_test(_critical(72, 0.3, 3), _critical(72, 0.3, 4))
    assert same["p"] > 0.05
    # the seed's level 0.05 accepts what the stored p (0.5 or 0) accepts at 0.1: same counts
    assert crit.power_law_test(_critical(72, 0.7, 1), _critical(72, 0.1, 2), p_threshold=0.05)["b"] == more["b"]
    agree = crit.peak_agreement(_null_test(8, 0.5, 0.0, False))
    assert agree["fraction_all_peaks_coincide"] == 0.0 and math.isclose(agree["median_T_chi_over_T_C"], 0.5)


# --------------------------------------------------------------------------------------------------
# evaluate on synthetic piece directories


def _avalanche_dir(path: Path, config, sizes: np.ndarray, null_sizes: np.ndarray) -> Path:
    from thermolens.experiments.avalanches.contract import STUDY_JSON
    from thermolens.experiments.avalanches.fits import AvalancheStats, ks_p_value
    from thermolens.experiments.avalanches.measure import AvalancheResult
    from thermolens import io

    def stats(source: str, values: np.ndarray, **extra) -> AvalancheStats:
        return AvalancheStats(source=source, lattice="token-layer", n_avalanches=int(values.size), n_censored=0,
                              tau=2.0, tau_stderr=0.1, xmin=5.0, n_tail=200, is_power_law=False, **extra)

    temps = None
    if config.avalanches.temperatures:
        t = np.asarray(config.avalanches.temperatures)
        temps = pd.DataFrame({"T": t, "tau": 1.5 + 0.5 * np.abs(np.log(t)), "tau_stderr": 0.05, "s_c": 300.0,
                              "is_power_law": True, "branching_ratio": 1.0, "n_avalanches": 500,
                              "loss": np.nan})
    cascades = pd.concat([pd.DataFrame({"source": "model", "size": sizes, "duration": 2}),
                          pd.DataFrame({"source": "shuffled_layers", "size": null_sizes, "duration": 2})])
    result = AvalancheResult(
        config=config.avalanches, model_name="synthetic", n_tokens=4096, n_sequences=32, n_units=384, n_layers=6,
        fits={"model": stats("model", sizes),
              "shuffled_layers": stats("shuffled_layers", null_sizes, ks_p_vs_model=ks_p_value(sizes, null_sizes)),
              "rate_matched": stats("rate_matched", null_sizes[:50])},
        beats_nulls={"shuffled_layers": False, "rate_matched": False}, cascades=cascades,
        layers=pd.DataFrame({"layer": range(6)}), thresholds=pd.DataFrame({"threshold": [config.avalanches.threshold]}),
        temperatures=temps)
    result.save(path)
    io.write_json(path / STUDY_JSON, {"study": "avalanches", "config": config_to_dict(config)})
    return path


def _theorem2_dirs(tmp_path: Path, alpha: float) -> dict[str, Path]:
    from thermolens.experiments.avalanches.contract import STUDY

    rng = np.random.default_rng(0)
    dirs = {}
    for k, piece in enumerate(crit.theorem2_pieces("quick")):
        sizes = _tpl_sample(alpha, 400.0, 800, seed=10 + k)
        null_sizes = rng.geometric(1 / 20, 800).astype(float)  # no scaling at all
        dirs[piece.name] = _avalanche_dir(tmp_path / piece.name, STUDY.config(piece.config), sizes, null_sizes)
    return dirs


@pytest.mark.parametrize("alpha, verdict", [(1.5, "supported"), (0.8, "contradicted")])
def test_theorem2_keeps_a_planted_three_halves_and_excludes_a_wrong_exponent(tmp_path, alpha, verdict):
    from thermolens.claims.verdicts import decide

    dirs = _theorem2_dirs(tmp_path, alpha)
    evidence = crit.THEOREM2.evaluate("quick", dirs, tmp_path / "claim")
    assert (tmp_path / "claim" / evidence.figure).is_file()
    assert abs(evidence.effect - alpha) < 0.1 and evidence.ci[0] < evidence.effect < evidence.ci[1]
    assert evidence.numbers["T_opt"] == 1.0 and evidence.numbers["loss_available"] is False
    assert len(evidence.variants) == 6  # 2 thresholds, layer-time, attn, mlp, KS-tail tau
    final = decide({"theorem2": evidence})["theorem2"]
    assert final.primary == verdict
    assert Evidence.from_dict(json.loads(json.dumps(evidence.to_dict()))) == evidence


def _scan_dir(path: Path, config, null_test: pd.DataFrame, critical, null_critical) -> Path:
    from thermolens.experiments.scan.contract import CRITICAL, NULL_CRITICAL, NULL_TEST, STUDY_JSON
    from thermolens.experiments.scan.heads import ScanResult
    from thermolens import io

    heads = null_test[null_test["definition"] == "C"][["layer", "head"]].reset_index(drop=True)
    heads = heads.assign(differs_from_null=null_test[null_test["definition"] == "C"]["differs"].to_numpy())
    t = np.asarray(config.scan.temperatures)
    curves = []
    for row in heads.itertuples(index=False):
        bump = np.exp(-np.log(t) ** 2)
        curves.append(pd.DataFrame({"layer": row.layer, "head": row.head, "T": t, "C": bump, "chi": bump ** 2,
                                    "xi": 1 - bump, "C_null_gauss": bump, "C_null_shuffled": bump}))
    ScanResult(config=config.scan, model_name="synthetic", n_tokens=4096, n_sequences=32, d_head=32, heads=heads,
               curves=pd.concat(curves, ignore_index=True)).save(path)
    io.write_table(path / NULL_TEST, null_test)
    if critical is not None:
        io.write_table(path / CRITICAL, critical)
        io.write_table(path / NULL_CRITICAL, null_critical)
    io.write_json(path / STUDY_JSON, {"study": "scan", "config": config_to_dict(config)})
    return path


@pytest.mark.parametrize("distinct, real_pl, coincide, verdict", [
    (0.7, 0.7, True, "supported"), (0.7, 0.7, False, "contradicted"), (0.05, 0.1, True, "not supported")])
def test_detect_critical_point_verdicts_on_planted_tables(tmp_path, distinct, real_pl, coincide, verdict):
    from thermolens.claims.verdicts import decide
    from thermolens.experiments.scan.contract import STUDY

    dirs = {}
    for k, piece in enumerate(crit.detect_pieces("quick")):
        config = STUDY.config(piece.config)
        table = _null_test(72, distinct, 0.04, coincide, seed=k)
        pl = (_critical(72, real_pl, 1), _critical(72, 0.1, 2)) if config.power_law else (None, None)
        dirs[piece.name] = _scan_dir(tmp_path / piece.name, config, table, *pl)
    evidence = crit.DETECT.evaluate("quick", dirs, tmp_path / "claim")
    assert (tmp_path / "claim" / evidence.figure).is_file()
    assert {v.choice.split(":")[0] for v in evidence.variants} >= {"peak definition", "temperature grid", "token count"}
    assert decide({"detect-critical-point": evidence})["detect-critical-point"].primary == verdict
    assert Evidence.from_dict(json.loads(json.dumps(evidence.to_dict()))) == evidence


# --------------------------------------------------------------------------------------------------
# the scan contract on a real (tiny) model


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory):
    import torch
    import transformers as tf

    from thermolens.models import bundled_model_dir

    torch.manual_seed(0)
    model = tf.BertModel(tf.BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                       intermediate_size=37, max_position_embeddings=64))
    path = tmp_path_factory.mktemp("tiny-bert-claims")
    model.save_pretrained(path, safe_serialization=True)
    tf.AutoTokenizer.from_pretrained(bundled_model_dir(), local_files_only=True).save_pretrained(path)
    return path


def test_scan_contract_runs_resumes_and_matches_the_scan(tiny_bert_dir, tmp_path):
    from thermolens.experiments.scan.contract import NULL_TEST, ScanStudyConfig, load, run, summary
    from thermolens.experiments.scan.heads import ScanConfig

    config = ScanStudyConfig(scan=ScanConfig(temperatures=tuple(np.geomspace(0.1, 12.8, 15)), seq_len=32,
                                             max_tokens=512, n_boot=30, null_sequences=2),
                             model=str(tiny_bert_dir), paired_sequences=64)
    result = run(config, tmp_path)
    table = result.null_test
    assert set(table["definition"]) == {"C", "chi", "xi"} and len(table) == 3 * 2 * 4
    # on every sequence the paired test's C peak is the scan's own T* (same sums, same refinement)
    c = table[table["definition"] == "C"].sort_values(["layer", "head"])
    np.testing.assert_allclose(c["T"].to_numpy(), result.scan.heads.sort_values(["layer", "head"])["T_star"], rtol=1e-9)
    assert (c["T_lo"] <= c["T"] + 1e-12).all() and (c["T"] <= c["T_hi"] + 1e-12).all()
    assert c["coincides_C"].all()
    # a second run on the finished directory reads it back; a missing table is recomputed alone
    (tmp_path / NULL_TEST).unlink()
    again = run(config, tmp_path)
    pd.testing.assert_frame_equal(again.null_test, table)
    assert summary(load(tmp_path))["n_distinct_C"] == int(c["differs"].sum())


@pytest.mark.slow
def test_quick_pieces_and_evaluation_end_to_end(tmp_path):
    """Both claims' quick pieces on the bundled MiniLM, then their evaluation (about 4 minutes on 2 cores)."""
    from thermolens.runner.study import run_piece

    for claim in crit.CLAIMS:
        dirs = {}
        for piece in claim.pieces("quick"):
            run_piece({"study": piece.study, "config": piece.config}, tmp_path / piece.name)
            dirs[piece.name] = tmp_path / piece.name
        evidence = claim.evaluate("quick", dirs, tmp_path / claim.id)
        assert evidence.decision is not None and (tmp_path / claim.id / evidence.figure).is_file()
