"""The Mun & Rosenzweig claims: small real solver runs give the verdicts the closed forms demand, planted
decays give the rates verdicts they must, and the studies round-trip, resume and refuse a foreign config.

Expected numbers and where they come from:
* Doi-Onsager ``K_# = 3 pi/4`` (``W_hat(2) = 2/(3 pi)``) and ``c_4 = 3/256`` (``W_hat(4)/W_hat(2) = 1/5``):
  docs/meanfield.md, Landau table;
* ``beta_* = 2.4469183112890`` (root of ``2 beta I_0 = (beta + 4) I_1``): docs/meanfield.md;
* Hegselmann-Krause ``R = 1``: ``K_# = 4.954286522538``, ``K_c = 3.720578747689``: docs/meanfield.md;
* a continuous (supercritical pitchfork) onset ``r ~ (K/K_# - 1)^(1/2)``: Landau expansion;
* amplitude equation ``dr/dt = -g r^(1 + 1/p)`` solved by ``r_1 (1 + t/tau)^(-p)``; the equilibrium floor
  ``r_N ~ N^(-1/4)`` at a quartic and ``N^(-1/6)`` at a sextic critical point (``N Delta F(r_N) = 1``).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from thermolens import io
from thermolens.claims import meanfield as mf
from thermolens.claims.base import Evidence
from thermolens.experiments.meanfield.contract import (
    CRITICAL_STUDY,
    RATES_STUDY,
    CriticalConfig,
    RateCase,
    RatesConfig,
    rates_preset,
)
from thermolens.experiments.meanfield.critical import STUDY_JSON
from thermolens.experiments.meanfield.rates import fit_decay, fluctuation_floor, initial_positions, window
from thermolens.meanfield import make_kernel, noisy_transformer
from thermolens.runner.study import config_from_dict, config_to_dict

BETA_STAR = 2.4469183112890  # docs/meanfield.md


def _claim(cid: str):
    return next(c for c in mf.CLAIMS if c.id == cid)


def _evaluate(cid: str, run_dir: Path, claim_dir: Path, preset: str = "quick") -> Evidence:
    claim = _claim(cid)
    [piece] = claim.pieces(preset)
    claim_dir.mkdir(parents=True, exist_ok=True)
    ev = claim.evaluate(preset, {piece.name: run_dir}, claim_dir)
    stored = json.loads(io.dumps_json(ev.to_dict()))
    assert json.loads(io.dumps_json(Evidence.from_dict(stored).to_dict())) == stored
    assert ev.figure and (claim_dir / ev.figure).is_file()
    return ev


# --------------------------------------------------------------------------------------------------
# claims, pieces, configs


def test_claims_in_order_with_pieces_for_both_presets():
    assert [c.id for c in mf.CLAIMS] == [
        "mr-doi-onsager",
        "mr-noisy-transformer",
        "mr-hegselmann-krause",
        "mr-rates",
    ]
    quick_s = 0.0
    for claim in mf.CLAIMS:
        assert claim.source == "Mun & Rosenzweig 2026"
        for preset in ("quick", "full"):
            pieces = claim.pieces(preset)
            assert pieces and all(p.est_s > 0 and p.est_gib > 0 for p in pieces)
            for piece in pieces:
                study = CRITICAL_STUDY if piece.study.endswith("CRITICAL_STUDY") else RATES_STUDY
                config = config_from_dict(study.config_type, piece.config)  # a valid config
                assert config_to_dict(config) == piece.config
                quick_s += piece.est_s if preset == "quick" else 0.0
            assert "thermolens" in claim.command(preset)
    assert quick_s < 150  # the brief's quick budget for the four claims


def test_full_rates_config_is_evidence_grade():
    cfg = rates_preset("full")
    cases = {c.name: c for c in cfg.cases}
    assert cases["quartic"].n_particles >= 1_000_000 and len(cases["quartic"].seeds) >= 8
    assert cases["sextic"].tricritical and cases["sextic"].n_particles >= 1_000_000
    assert config_from_dict(RatesConfig, config_to_dict(cfg)) == cfg


def test_claims_module_imports_light():
    code = (
        "import sys, thermolens.claims.meanfield; "
        "print(sorted({'matplotlib', 'torch', 'scipy'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_configs_refuse_bad_input():
    with pytest.raises(ValueError, match="no parameter"):
        CriticalConfig(kernel="doi-onsager", values=(1.0,))
    with pytest.raises(ValueError, match="parameter values"):
        CriticalConfig(kernel="noisy-transformer")
    with pytest.raises(ValueError, match="n_force_modes"):
        RateCase("x", kernel="doi-onsager", parameter=None, n_particles=1000, seeds=(0,))
    with pytest.raises(ValueError, match="distinct names"):
        RatesConfig(cases=(RateCase("a"), RateCase("a")))


# --------------------------------------------------------------------------------------------------
# closed-form claims on small real runs


def test_doi_onsager_supported_with_closed_form_numbers(tmp_path):
    cfg = CriticalConfig(kernel="doi-onsager", n_modes=(32, 16), n_starts=(8,), seeds=(0, 1), n_curve=9)
    CRITICAL_STUDY.run(cfg, tmp_path / "run")
    ev = _evaluate("mr-doi-onsager", tmp_path / "run", tmp_path / "claim")
    assert ev.verdict == "supported"
    assert ev.effect == pytest.approx(3 * math.pi / 4, rel=1e-12) and ev.null == pytest.approx(
        3 * math.pi / 4
    )
    assert ev.numbers["landau_quartic"] == pytest.approx(3 / 256, rel=1e-12)
    assert ev.numbers["onset_exponent"] == pytest.approx(0.5, abs=0.05)
    choices = [v.choice for v in ev.variants]
    assert any("modes 16" in c for c in choices) and any("seed 1" in c for c in choices)
    assert all(v.verdict == "supported" for v in ev.variants)


def test_noisy_transformer_dichotomy_and_a_planted_misfit(tmp_path):
    cfg = CriticalConfig(
        kernel="noisy-transformer",
        values=(1.0, 3.0),
        threshold_offsets=(-1e-2, 1e-2),
        n_modes=(0, 24),
        n_curve=7,
        curve_values=(3.0,),
    )
    res = CRITICAL_STUDY.run(cfg, tmp_path / "run")
    assert res.threshold["threshold"] == pytest.approx(BETA_STAR, abs=1e-12)
    ev = _evaluate("mr-noisy-transformer", tmp_path / "run", tmp_path / "claim")
    assert ev.verdict == "supported" and ev.effect == pytest.approx(BETA_STAR, abs=1e-12)
    assert ev.numbers["max_relative_gap_below"] == 0.0 and ev.numbers["min_relative_gap_above"] > 1e-6
    assert {"only beta within 1% of beta_*"} <= {v.choice for v in ev.variants}
    # plant a jump at beta = 1 (below beta_*): the claim must then be contradicted
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in (STUDY_JSON, "threshold.json", "curves.parquet"):
        (bad / name).write_bytes((tmp_path / "run" / name).read_bytes())
    points = res.points.copy()
    points.loc[points["value"] == 1.0, "relative_gap"] = 1e-3
    io.write_table(bad / "points.parquet", points)
    ev_bad = _evaluate("mr-noisy-transformer", bad, tmp_path / "claim-bad")
    assert ev_bad.verdict == "contradicted" and ev_bad.numbers["misfits"] == [1.0]


def test_hegselmann_krause_large_R_continuous_small_R_jumps(tmp_path):
    cfg = CriticalConfig(
        kernel="hegselmann-krause", values=(1.0, 2.5, 4.0), threshold_offsets=(1e-2,), n_curve=0
    )
    res = CRITICAL_STUDY.run(cfg, tmp_path / "run")
    row = res.points[res.points["value"] == 1.0].iloc[0]
    assert row["K_sharp"] == pytest.approx(4.954286522538, rel=1e-11)
    assert row["K_c"] == pytest.approx(3.720578747689, rel=1e-10)
    ev = _evaluate("mr-hegselmann-krause", tmp_path / "run", tmp_path / "claim")
    assert ev.verdict == "supported" and ev.effect == 0.0
    assert ev.null == pytest.approx(1 - 3.720578747689 / 4.954286522538, rel=1e-9)
    assert any("R > pi" in v.choice for v in ev.variants)


def test_critical_study_resumes_and_refuses_another_config(tmp_path):
    cfg = CriticalConfig(kernel="noisy-transformer", values=(1.0, 3.0), n_curve=0)
    first = CRITICAL_STUDY.run(cfg, tmp_path)
    (tmp_path / "points.parquet").unlink()
    job = next((tmp_path / "jobs").iterdir())
    (job / "result.json").unlink()  # a job killed before it finished
    again = CRITICAL_STUDY.run(cfg, tmp_path)
    pd.testing.assert_frame_equal(first.points, again.points)
    assert CRITICAL_STUDY.load(tmp_path).summary()["n_discontinuous"] == 1
    with pytest.raises(ValueError, match="another config"):
        CRITICAL_STUDY.run(CriticalConfig(kernel="noisy-transformer", values=(2.0,), n_curve=0), tmp_path)


# --------------------------------------------------------------------------------------------------
# the rates: fits, floors and planted decays


def test_fit_decay_recovers_the_amplitude_equation_exponent():
    t = np.linspace(0.0, 5.0, 80)
    for p in (0.5, 0.25):
        fit = fit_decay(t, 0.45 * (1 + t / 0.3) ** (-p))
        assert fit.exponent == pytest.approx(p, rel=1e-6) and fit.tau == pytest.approx(0.3, rel=1e-5)
    noisy = 0.45 * (1 + t / 0.3) ** -0.5 * np.exp(0.01 * np.random.default_rng(0).standard_normal(t.size))
    assert fit_decay(t, noisy).exponent == pytest.approx(0.5, abs=0.05)
    assert fit_decay(t, 0.45 * np.exp(-3 * t)).exponent > 5  # exponential: p -> infinity
    assert math.isnan(fit_decay(t[:3], noisy[:3]).exponent)


def test_window_and_tost():
    t = np.linspace(0, 10, 101)
    r = 0.45 / np.sqrt(1 + t)
    lo, hi = window(t, r, r_lo=0.2, r_hi=0.4)
    assert r[t == lo][0] <= 0.4 and r[t == hi][0] >= 0.2 and np.interp(hi + 0.1, t, r) < 0.2 + 1e-3
    inside = mf.tost([0.49, 0.5, 0.51, 0.5], 0.5, 0.1)
    assert inside["p"] < 1e-3 and not inside["outside"]
    far = mf.tost([0.79, 0.8, 0.81, 0.8], 0.5, 0.1)
    assert far["p"] > 0.5 and far["outside"]
    assert mf.tost([0.5], 0.5, 0.1)["p"] == 1.0


def test_initial_positions_and_fluctuation_floor():
    theta = initial_positions(40_000, amplitude=0.9, mode=2, seed=3)
    c2 = np.mean(np.exp(4j * np.pi * theta))
    assert abs(c2 - 0.45) < 3 / math.sqrt(theta.size)  # rho_hat(2) of 1 + 0.9 cos(4 pi theta)
    np.testing.assert_array_equal(theta, initial_positions(40_000, amplitude=0.9, mode=2, seed=3))
    quartic = noisy_transformer(1.0)
    K = 1 / (2 * quartic.w_hat(1))
    ratio = fluctuation_floor(quartic, K, mode=1, n_particles=16 * 10**5, r_max=0.45) / fluctuation_floor(
        quartic, K, mode=1, n_particles=10**5, r_max=0.45
    )
    assert ratio == pytest.approx(16 ** (-1 / 4), rel=0.03)
    sextic = make_kernel("noisy-transformer", beta=BETA_STAR)
    K = 1 / (2 * sextic.w_hat(1))
    ratio = fluctuation_floor(sextic, K, mode=1, n_particles=64 * 10**5, r_max=0.45) / fluctuation_floor(
        sextic, K, mode=1, n_particles=10**5, r_max=0.45
    )
    assert ratio == pytest.approx(64 ** (-1 / 6), rel=0.03)


def _planted_rates(
    root: Path, *, p_quartic: float, p_sextic: float | None, noise: float = 0.003, exponential: bool = False
) -> Path:
    """A finished rates run: PDE and particle curves ``0.45 (1 + t/tau)^(-p)`` (or ``0.45 e^(-3 t)``)."""
    cases = [RateCase("quartic", n_particles=10**5, seeds=tuple(range(4)), long_t=100.0)]
    if p_sextic is not None:
        cases.append(
            RateCase("sextic", tricritical=True, n_particles=10**5, seeds=tuple(range(4)), long_t=100.0)
        )
    root.mkdir(parents=True)
    io.write_json(root / STUDY_JSON, config_to_dict(RatesConfig(cases=tuple(cases))))
    rng = np.random.default_rng(0)
    info, pde, parts = [], [], []
    for case, p in (("quartic", p_quartic), ("sextic", p_sextic)):
        if p is None:
            continue
        law = (
            (lambda t, p=p: 0.45 * np.exp(-3 * t))
            if exponential
            else (lambda t, p=p: 0.45 * (1 + t / 0.1) ** (-p))
        )
        info.append(
            {
                "name": case,
                "kernel": "noisy-transformer",
                "parameter": 1.0 if case == "quartic" else BETA_STAR,
                "tricritical": case == "sextic",
                "K_factor": 1.0,
                "K_sharp": 0.88,
                "K": 0.88,
                "mode": 1,
                "landau_quartic": 0.01,
                "n_particles": 10**5,
                "r_floor": 0.05,
                "t_end": 3.0,
                "floor_reached": True,
                "n_force_modes": 11,
            }
        )
        t = np.linspace(0.0, 3.0, 300)
        pde.append(
            pd.DataFrame(
                {
                    "t": t,
                    "order_parameter": law(t),
                    "distance": law(t),
                    "delta_F": 0.0,
                    "run": "short",
                    "dt": 1e-3,
                    "n_grid": 64,
                    "case": case,
                }
            )
        )
        tl = np.geomspace(1e-2, 1e3, 200)
        curve = 0.45 * (1 + tl / 0.1) ** -(0.5 if case == "quartic" else 0.25)
        pde.append(
            pd.DataFrame(
                {
                    "t": tl,
                    "order_parameter": curve,
                    "distance": curve,
                    "delta_F": 0.0,
                    "run": "long dt=0.01 grid=32",
                    "dt": 1e-2,
                    "n_grid": 32,
                    "case": case,
                }
            )
        )
        for seed in range(4):
            ts = np.linspace(0.0, 3.0, 60)
            r = law(ts) * np.exp(noise * rng.standard_normal(ts.size))
            parts.append(pd.DataFrame({"t": ts, "abs_c": r, "re_c": r, "case": case, "seed": seed}))
    io.write_table(root / "cases.parquet", pd.DataFrame(info))
    io.write_table(root / "pde.parquet", pd.concat(pde, ignore_index=True))
    io.write_table(root / "particles.parquet", pd.concat(parts, ignore_index=True))
    return root


def test_rates_planted_stated_exponents_are_supported(tmp_path):
    ev = _evaluate("mr-rates", _planted_rates(tmp_path / "run", p_quartic=0.5, p_sextic=0.25), tmp_path / "c")
    assert ev.decision.p_value < 1e-3 and ev.decision.if_rejected == "supported"
    assert ev.effect == pytest.approx(0.5, abs=0.01) and ev.ci[0] < 0.5 < ev.ci[1]
    assert ev.null == pytest.approx(0.5, abs=1e-6) and ev.needs_full is None
    assert any(v.p_value is not None for v in ev.variants) and any(
        v.verdict == "supported" for v in ev.variants
    )


def test_rates_planted_wrong_exponent_or_exponential_decay_is_contradicted(tmp_path):
    ev = _evaluate("mr-rates", _planted_rates(tmp_path / "a", p_quartic=0.5, p_sextic=0.5), tmp_path / "ca")
    assert ev.decision.p_value > 0.5 and ev.decision.if_not_rejected == "contradicted"
    assert ev.numbers["per_case"]["sextic"]["mean"] == pytest.approx(0.5, abs=0.02)
    ev = _evaluate(
        "mr-rates",
        _planted_rates(tmp_path / "b", p_quartic=0.5, p_sextic=0.25, exponential=True),
        tmp_path / "cb",
    )
    assert ev.decision.p_value > 0.5 and ev.effect > 1.0  # no algebraic decay: p runs off


def test_rates_without_sextic_particles_needs_the_full_preset(tmp_path):
    ev = _evaluate("mr-rates", _planted_rates(tmp_path / "run", p_quartic=0.5, p_sextic=None), tmp_path / "c")
    assert ev.needs_full and "sextic" in ev.needs_full
    assert ev.decision.p_value == 1.0 and ev.effect == pytest.approx(0.5, abs=0.01)


def test_rates_study_runs_small_and_resumes(tmp_path):
    cfg = RatesConfig(
        cases=(
            RateCase("quartic", n_particles=2000, seeds=(0, 1), t_max=0.3, long_t=5.0),
            RateCase("off", K_factor=0.9, t_max=0.5),
        ),
        n_records=20,
    )
    res = RATES_STUDY.run(cfg, tmp_path / "run")
    assert set(res.cases["name"]) == {"quartic", "off"} and res.particles.groupby("seed").ngroups == 2
    first = res.particles.copy()
    (tmp_path / "run" / "jobs" / "particles-quartic-seed1" / "result.json").unlink()
    again = RATES_STUDY.run(cfg, tmp_path / "run")
    pd.testing.assert_frame_equal(first, again.particles)  # the same seed gives the same particles
    ev = _evaluate("mr-rates", tmp_path / "run", tmp_path / "claim")
    assert ev.needs_full and "off" in ev.numbers["off_critical"]
    rates = ev.numbers["off_critical"]["off"]
    assert rates["linear_theory_rate"] == pytest.approx((2 * math.pi) ** 2 * 0.1, rel=1e-12)
