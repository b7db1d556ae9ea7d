"""Mun & Rosenzweig 2026 (arXiv:2604.16288): K_c, the order of the transition, rates at criticality.

Convention and solver: ``thermolens.meanfield`` (docs/meanfield.md). ``K_#`` is where the uniform density
loses linear stability, ``K_c <= K_#`` where it stops being the global minimiser of ``F_K``; the
transition is continuous when ``K_c = K_#``, i.e. the relative gap ``(K_# - K_c)/K_#`` is below
``GAP_TOL = 1e-10`` (the library's classification), discontinuous otherwise. The pieces are the studies
of ``thermolens.experiments.meanfield.contract``.

**mr-doi-onsager** (``W = -|sin 2 pi theta|``): ``K_c = K_# = 3 pi/4``, continuous. Closed-form claim:
fixed verdict "supported" when the computed ``K_#`` equals ``3 pi/4`` (1e-12 relative) and the global
solver finds no state below the uniform free energy at ``K_#`` (gap 0), "contradicted" otherwise.
Effect ``K_c`` beside the stated ``3 pi/4``. Variants: every other resolution of the piece (Fourier
modes, random starts, seed of the global search), the looser tolerance ``1e-8``, and the onset of the
global minimiser's order parameter, ``r ~ (K/K_# - 1)^b`` with ``b`` within ``ONSET_TOL`` of 1/2 (a
jump has no such onset).

**mr-noisy-transformer** (``W = (e^{beta cos 2 pi theta} - 1)/beta``): ``K_c = K_#`` and continuous
for ``beta < beta_*``, discontinuous above, ``beta_* = 2.4469...`` (the digits quoted in the issue; the
seed summary lost the formula). Fixed verdict: "supported" when every grid value and every value at
``beta_* (1 + o)`` falls on its predicted side at the primary resolution and the computed Landau root
``beta_*`` (``c_4 = 0``, global checks in the piece) carries the quoted digits; "contradicted" when a
point falls on the wrong side or the digits differ. Variants: each other resolution; only the values
within 1 % and within 0.1 % of ``beta_*``; the tolerance ``1e-8``; the bisection bracket of the globally
computed change (``transition_boundary``) within ``BOUNDARY_RTOL`` of ``beta_*``.

**mr-hegselmann-krause** (``W = (R - 2 pi |theta|)_+^2``): continuous for large ``R``. Fixed verdict:
"supported" when every grid value above the Landau threshold ``R_*`` (2.139) is continuous at the
primary resolution, "contradicted" otherwise. Effect: the largest relative gap over those values;
beside it the largest gap below ``R_*`` (where the paper's dichotomy predicts a jump). Variants: each
other resolution; ``R_* (1 + o)`` just above the threshold; ``R > pi`` alone; the tolerance ``1e-8``.

**mr-rates**: at a critical point the distance to the uniform state decays algebraically, ``||rho_t - 1||
~ t^(-1/2)`` where the Landau quartic ``c_4 > 0`` (quartic case) and ``t^(-1/4)`` at the tricritical
points ``beta_*``, ``R_*`` (sextic case), i.e. relative entropy ``t^(-1)`` and ``t^(-1/2)``. The seed
summary lost the formulas; these are the exponents of the amplitude equation ``dr/dt = -g r^3`` (``-h
r^5``) that its "quartic" and "sextic" labels name. Measured on ``r = |rho_hat(k)|`` (``k`` the critical
mode; ``||rho - 1|| = sqrt(2) r (1 + O(r^2))``): per seed of N particles at ``K_#`` from ``rho_0 = 1 + 0.9
cos(2 pi k theta)``, ``fit_decay`` (the amplitude equation's exact solution ``r_1 (1 + (t -
t_1)/tau)^(-p)``) on the time window where the mean-field PDE runs from ``R_HI`` (the start) down to
``FLOOR_FACTOR r_N`` (``r_N``: the finite-N fluctuation floor). Test: Schuirmann's two one-sided t-tests
over seeds, H0 ``|p - p_stated| >= MARGIN p_stated``, for the quartic (noisy transformer, ``beta = 1``)
and the sextic (``beta_*``) case, combined as an intersection-union test (p = the larger; Berger 1982).
Rejected: "supported"; not rejected: "contradicted" when a case's 95 % CI lies entirely outside the
margin, else "not supported". Beside the effect: the same fit on the PDE (N = infinity) over the same
window. Variants: window to ``3 r_N``; window from ``r = 0.4``; ``Re c_k`` (phase-pinned) instead of
``|c_k|``; margins 10 % and 30 %; every other particle case alone; and, fixed, each long PDE run's
exponent over its last decade of time (resolutions ``dt``, grid). The relaxation at ``0.9 K_#``
(exponential, rate ``(2 pi k)^2 (1 - 2 K W_hat(k))``) is drawn and listed as the null behaviour.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from thermolens.claims.base import Claim, Decision, Evidence, Piece, Variant

__all__ = [
    "CLAIMS",
    "evaluate_doi_onsager",
    "evaluate_hegselmann_krause",
    "evaluate_noisy_transformer",
    "evaluate_rates",
    "tost",
]

SOURCE = "Mun & Rosenzweig 2026"
CONTRACT = "thermolens.experiments.meanfield.contract"
CRITICAL = f"{CONTRACT}:CRITICAL_STUDY"
RATES = f"{CONTRACT}:RATES_STUDY"
#: relative gap (K_# - K_c)/K_# below which K_c = K_# (thermolens.meanfield.transition.CONTINUOUS_RTOL)
GAP_TOL = 1e-10
LOOSE_GAP_TOL = 1e-8
#: the digits of beta_* quoted in the issue (2.4469...): the computed root must start with them
STATED_BETA_STAR = (2.4469, 2.4470)
#: Doi-Onsager: K_# = 3 pi / 4 (W_hat(2) = 2/(3 pi)), to this relative accuracy
K_SHARP_RTOL = 1e-12
#: a continuous onset r ~ (K/K_# - 1)^b has b = 1/2 (supercritical pitchfork) within this
ONSET_TOL = 0.1
#: the globally located change of order must lie within this relative distance of the Landau root
BOUNDARY_RTOL = 1e-3
#: rates: equivalence margin (fraction of the stated exponent), window edges, CI level
MARGIN, R_HI, FLOOR_FACTOR, LEVEL = 0.2, 0.45, 2.0, 0.05
STATED_EXPONENT = {False: 0.5, True: 0.25}  # keyed by "tricritical"
PRIMARY_CASES = ("quartic", "sextic")

#: seconds on 2 cores and GiB of each piece: quick measured (shared 2-core machine, load 4-8); full from
#: the quick costs scaled by the number of solves, and for particles 3.8e-8 s per particle, force mode and
#: Heun step on one loaded core (measured: sextic, N = 1e5, 4 seeds x 3200 steps in 342 s on 2 workers):
#: quartic 1e6 x 10 seeds x 2600 steps ~ 10900 s, sextic 1e6 x 8 x 3300 ~ 14000 s, the two N = 2.5e5
#: cases ~ 3800 s, long PDEs ~ 400 s; ~29000 core-seconds, ~15000 s on the two workers of the inner sweep
_ESTIMATES = {
    ("doi-onsager", "quick"): (10.0, 0.3),
    ("doi-onsager", "full"): (60.0, 0.3),
    ("noisy-transformer", "quick"): (18.0, 0.3),
    ("noisy-transformer", "full"): (300.0, 0.3),
    ("hegselmann-krause", "quick"): (17.0, 0.3),
    ("hegselmann-krause", "full"): (400.0, 0.5),
    ("rates", "quick"): (60.0, 0.5),
    ("rates", "full"): (16000.0, 1.5),
}


def _critical_piece(kernel: str, preset: str) -> Piece:
    from thermolens.experiments.meanfield.contract import critical_preset
    from thermolens.runner.study import config_to_dict

    est_s, est_gib = _ESTIMATES[(kernel, preset)]
    return Piece(
        f"meanfield-{kernel}-{preset}",
        CRITICAL,
        config_to_dict(critical_preset(kernel, preset)),
        est_s=est_s,
        est_gib=est_gib,
    )


def _rates_piece(preset: str) -> Piece:
    from thermolens.experiments.meanfield.contract import rates_preset
    from thermolens.runner.study import config_to_dict

    est_s, est_gib = _ESTIMATES[("rates", preset)]
    return Piece(
        f"meanfield-rates-{preset}", RATES, config_to_dict(rates_preset(preset)), est_s=est_s, est_gib=est_gib
    )


def _load(piece: Piece, pieces: dict[str, Path]):
    from thermolens.runner.study import load_piece

    if piece.name not in pieces:
        raise ValueError(f"piece {piece.name} is missing from the report's pieces; run it first")
    return load_piece(piece.study, pieces[piece.name])


def _save(fig, claim_dir: Path, name: str) -> str:
    from thermolens import io

    io.save_figure(fig, Path(claim_dir) / name)
    return name


# --------------------------------------------------------------------------------------------------
# closed-form claims: the order of the transition


def _observed(gap: float, tol: float) -> str:
    return "continuous" if gap <= tol else "discontinuous"


def _curve_panels(result) -> dict[str, Any]:
    """Curves by label for the figure, with ``K_c / K_# - 1`` of each."""
    out = {}
    prim = result.primary()
    for value, curve in result.curves.groupby("value", dropna=False, sort=False):
        label = result.config.kernel if not isinstance(value, float) or math.isnan(value) else None
        row = prim if label else prim[(prim["value"] - value).abs() < 1e-12]
        K_c_rel = float(row["K_c"].iloc[0] / row["K_sharp"].iloc[0] - 1) if len(row) else math.nan
        name = label or f"{'beta' if result.config.kernel == 'noisy-transformer' else 'R'} = {value:g}"
        out[name] = {
            "K_rel": curve["K_rel"].to_numpy(),
            "r": curve["order_parameter"].to_numpy(),
            "K_c_rel": K_c_rel,
        }
    return out


def evaluate_doi_onsager(preset: str, pieces: dict[str, Path], claim_dir: Path) -> Evidence:
    from thermolens.report import claims_meanfield as fig

    res = _load(_critical_piece("doi-onsager", preset), pieces)
    prim = res.primary().iloc[0]
    gap = float(prim["relative_gap"])
    stated = 3 * math.pi / 4
    sharp_ok = abs(prim["K_sharp"] / stated - 1) <= K_SHARP_RTOL
    verdict = "supported" if sharp_ok and prim["relative_gap"] <= GAP_TOL else "contradicted"
    variants = [
        Variant(
            f"{label}",
            effect=float(rows["K_c"].iloc[0]),
            verdict="supported" if rows["relative_gap"].iloc[0] <= GAP_TOL and sharp_ok else "contradicted",
        )
        for label, rows in res.alternatives()
    ]
    variants.append(
        Variant(
            f"K_c = K_# read with the looser tolerance {LOOSE_GAP_TOL:g}",
            effect=float(prim["K_c"]),
            verdict="supported" if prim["relative_gap"] <= LOOSE_GAP_TOL and sharp_ok else "contradicted",
        )
    )
    onset = res.onset_exponent()
    variants.append(
        Variant(
            f"onset of the global minimiser r ~ (K/K_# - 1)^b with b = 1/2 +- {ONSET_TOL}",
            effect=onset,
            verdict="supported" if abs(onset - 0.5) <= ONSET_TOL else "contradicted",
        )
    )
    curves = _curve_panels(res)
    name = _save(
        fig.order_parameter_figure(
            curves,
            title="Doi-Onsager: order parameter |rho_hat(2)| near K_c",
            onset={label: onset for label in curves},
        ),
        claim_dir,
        "doi_onsager.png",
    )
    return Evidence(
        effect=float(prim["K_c"]),
        effect_label="K_c (global minimiser; Fourier modes default = 64)",
        null=stated,
        null_label="stated K_c = K_# = 3 pi/4",
        verdict=verdict,
        variants=tuple(variants),
        figure=name,
        reason=(
            f"K_# = {prim['K_sharp']:.15g} {'equals' if sharp_ok else 'differs from'} 3 pi/4 and the "
            f"global search finds {'no state' if gap <= GAP_TOL else 'a state'} below the uniform free "
            f"energy at K_# (relative gap {gap:.2g}), so the transition is {_observed(gap, GAP_TOL)}"
        ),
        numbers={
            "K_sharp": float(prim["K_sharp"]),
            "K_c": float(prim["K_c"]),
            "relative_gap": float(prim["relative_gap"]),
            "landau_quartic": float(prim["landau_quartic"]),
            "landau_quartic_closed_form": 3 / 256,
            "harmonic_ratio": float(prim["harmonic_ratio"]),
            "onset_exponent": onset,
            "max_relative_gap_all_resolutions": float(res.points["relative_gap"].max()),
            "truncation_error": float(prim["truncation_error"]),
        },
    )


def _dichotomy(rows, thr: float, continuous_side: str, tol: float) -> tuple[str, list[float]]:
    """``"supported"`` when every row's order matches its side of ``thr``, else ``"contradicted"``;
    and the misfits."""
    bad = []
    for value, gap in zip(rows["value"], rows["relative_gap"]):
        expect = "continuous" if (value < thr) == (continuous_side == "below") else "discontinuous"
        if _observed(gap, tol) != expect:
            bad.append(float(value))
    return ("supported" if not bad else "contradicted"), bad


def evaluate_noisy_transformer(preset: str, pieces: dict[str, Path], claim_dir: Path) -> Evidence:
    from thermolens.report import claims_meanfield as fig

    res = _load(_critical_piece("noisy-transformer", preset), pieces)
    thr, side = res.threshold["threshold"], res.threshold["continuous_side"]
    prim = res.primary()
    digits_ok = STATED_BETA_STAR[0] <= thr < STATED_BETA_STAR[1] and side == "below"
    verdict, bad = _dichotomy(prim, thr, side, GAP_TOL)
    verdict = verdict if digits_ok else "contradicted"
    variants = []
    for label, rows in res.alternatives():
        v, _ = _dichotomy(rows, thr, side, GAP_TOL)
        variants.append(
            Variant(
                label, effect=float(rows["relative_gap"].max()), verdict=v if digits_ok else "contradicted"
            )
        )
    offsets = prim[prim["offset"].notna()]
    for width in (1e-2, 1e-3):
        rows = offsets[offsets["offset"].abs() <= width * 1.0001]
        if len(rows):
            v, _ = _dichotomy(rows, thr, side, GAP_TOL)
            variants.append(
                Variant(
                    f"only beta within {width:.0%} of beta_*"
                    if width >= 1e-2
                    else f"only beta within {width:.1%} of beta_*",
                    effect=float(rows["relative_gap"].max()),
                    verdict=v if digits_ok else "contradicted",
                )
            )
    v, _ = _dichotomy(prim, thr, side, LOOSE_GAP_TOL)
    variants.append(
        Variant(
            f"K_c = K_# read with the looser tolerance {LOOSE_GAP_TOL:g}",
            verdict=v if digits_ok else "contradicted",
        )
    )
    bracket_mid = math.nan
    if res.boundary is not None:
        bracket_mid = 0.5 * (res.boundary[0] + res.boundary[1])
        near = abs(bracket_mid / thr - 1) <= BOUNDARY_RTOL
        variants.append(
            Variant(
                f"beta_* located by bisection on the global classification (within {BOUNDARY_RTOL:g})",
                effect=bracket_mid,
                verdict="supported" if near and digits_ok else "contradicted",
            )
        )
    below, above = prim[prim["value"] < thr], prim[prim["value"] > thr]
    curves = _curve_panels(res)
    name = _save(
        fig.order_parameter_figure(
            curves,
            title="noisy transformer: order parameter |rho_hat(1)| near K_c",
            points=prim,
            parameter="beta",
            threshold=thr,
            gap_tol=GAP_TOL,
        ),
        claim_dir,
        "noisy_transformer.png",
    )
    return Evidence(
        effect=thr,
        effect_label="beta_* (root of the Landau quartic c_4; the global solver's order changes there)",
        null=STATED_BETA_STAR[0],
        null_label="stated beta_* = 2.4469... (digits quoted in the issue)",
        verdict=verdict,
        variants=tuple(variants),
        figure=name,
        reason=(
            f"at the primary resolution {len(prim) - len(bad)} of {len(prim)} values of beta fall on the "
            "side of "
            f"beta_* = {thr:.10f} the claim predicts (K_c = K_# below, K_c < K_# above)"
            + (f"; misfits at beta = {bad}" if bad else "")
            + ("" if digits_ok else "; the computed beta_* does not carry the quoted digits 2.4469")
        ),
        numbers={
            "beta_star": thr,
            "kappa_4_at_beta_star": res.threshold["kappa_4"],
            "max_relative_gap_below": float(below["relative_gap"].max()) if len(below) else None,
            "min_relative_gap_above": float(above["relative_gap"].min()) if len(above) else None,
            "boundary_bracket": list(res.boundary) if res.boundary else None,
            "boundary_offset_relative": bracket_mid / thr - 1 if res.boundary else None,
            "onset_exponent_beta_1": res.onset_exponent(1.0),
            "jump": {f"{v:g}": float(j) for v, j in zip(prim["value"], prim["jump"]) if j > 0},
            "misfits": bad,
        },
    )


def evaluate_hegselmann_krause(preset: str, pieces: dict[str, Path], claim_dir: Path) -> Evidence:
    from thermolens.report import claims_meanfield as fig

    res = _load(_critical_piece("hegselmann-krause", preset), pieces)
    thr = res.threshold["threshold"]
    prim = res.primary()
    large = prim[(prim["value"] > thr) & prim["offset"].isna()]
    small = prim[prim["value"] < thr]

    def verdict_of(rows, tol=GAP_TOL) -> str:
        return "supported" if len(rows) and bool((rows["relative_gap"] <= tol).all()) else "contradicted"

    verdict = verdict_of(large)
    variants = [
        Variant(
            label,
            effect=float(rows["relative_gap"].max()),
            verdict=verdict_of(rows[(rows["value"] > thr) & rows["offset"].isna()]),
        )
        for label, rows in res.alternatives()
    ]
    for o, rows in prim[prim["offset"] > 0].groupby("offset"):
        variants.append(
            Variant(
                f"R = R_* (1 + {o:g}) just above the threshold",
                effect=float(rows["relative_gap"].max()),
                verdict=verdict_of(rows),
            )
        )
    beyond = large[large["value"] > math.pi]
    if len(beyond):
        variants.append(
            Variant(
                "only R > pi (the kernel covers the whole circle)",
                effect=float(beyond["relative_gap"].max()),
                verdict=verdict_of(beyond),
            )
        )
    variants.append(
        Variant(
            f"K_c = K_# read with the looser tolerance {LOOSE_GAP_TOL:g}",
            verdict=verdict_of(large, LOOSE_GAP_TOL),
        )
    )
    if res.boundary is not None:
        mid = 0.5 * (res.boundary[0] + res.boundary[1])
        variants.append(
            Variant(
                f"R_* located by bisection on the global classification (within {BOUNDARY_RTOL:g})",
                effect=mid,
                verdict="supported" if abs(mid / thr - 1) <= BOUNDARY_RTOL else "contradicted",
            )
        )
    discontinuous_small = small[small["relative_gap"] > GAP_TOL]
    null_row = small.loc[small["relative_gap"].idxmax()] if len(small) else None
    curves = _curve_panels(res)
    name = _save(
        fig.order_parameter_figure(
            curves,
            title="Hegselmann-Krause: order parameter |rho_hat(1)| near K_c",
            points=prim,
            parameter="R",
            threshold=thr,
            gap_tol=GAP_TOL,
        ),
        claim_dir,
        "hegselmann_krause.png",
    )
    return Evidence(
        effect=float(large["relative_gap"].max()) if len(large) else None,
        effect_label=(
            f"largest (K_# - K_c)/K_# over R = {', '.join(f'{v:g}' for v in large['value'])} "
            f"(> R_* = {thr:.6f})"
        ),
        null=None if null_row is None else float(null_row["relative_gap"]),
        null_label=""
        if null_row is None
        else f"the same gap at R = {null_row['value']:g} < R_* (small R: a jump)",
        verdict=verdict,
        variants=tuple(variants),
        figure=name,
        reason=(
            f"{int((large['relative_gap'] <= GAP_TOL).sum())} of {len(large)} values of R above R_* "
            "have K_c = K_# "
            f"(continuous), while {len(discontinuous_small)} of {len(small)} below R_* jump"
        ),
        numbers={
            "R_star": thr,
            "kappa_4_at_R_star": res.threshold["kappa_4"],
            "gaps_large_R": {f"{v:g}": float(g) for v, g in zip(large["value"], large["relative_gap"])},
            "gaps_small_R": {f"{v:g}": float(g) for v, g in zip(small["value"], small["relative_gap"])},
            "boundary_bracket": list(res.boundary) if res.boundary else None,
            "onset_exponent_R_2.5": res.onset_exponent(2.5),
            "truncation_warnings": int(prim["truncation_warning"].sum()),
        },
    )


# --------------------------------------------------------------------------------------------------
# the rates at criticality


def tost(x, target: float, margin: float) -> dict[str, Any]:
    """Two one-sided t-tests (Schuirmann 1987) of H0 ``|mean - target| >= margin`` over the values ``x``.

    Returns the p-value (the larger one-sided p), the mean, the 95 % t-interval and ``outside``
    (that interval lies entirely outside ``target +- margin``). Fewer than two finite values: p = 1.
    """
    import numpy as np
    from scipy import stats

    x = np.asarray([v for v in x if v is not None and math.isfinite(v)], float)
    n = x.size
    if n < 2:
        mean = float(x.mean()) if n else math.nan
        return {
            "p": 1.0,
            "mean": mean,
            "ci": (math.nan, math.nan),
            "sd": math.nan,
            "n": int(n),
            "outside": False,
        }
    mean, sd = float(x.mean()), float(x.std(ddof=1))
    se = sd / math.sqrt(n)
    half = float(stats.t.ppf(1 - LEVEL / 2, n - 1)) * se
    if se == 0:
        p = 0.0 if abs(mean - target) < margin else 1.0
    else:
        p = max(
            float(stats.t.sf((mean - (target - margin)) / se, n - 1)),
            float(stats.t.cdf((mean - (target + margin)) / se, n - 1)),
        )
    lo, hi = mean - half, mean + half
    return {
        "p": min(1.0, p),
        "mean": mean,
        "ci": (lo, hi),
        "sd": sd,
        "n": int(n),
        "outside": hi < target - margin or lo > target + margin,
    }


def _rates_test(
    result,
    cases: tuple[str, ...],
    *,
    r_lo_factor: float = FLOOR_FACTOR,
    r_hi: float = R_HI,
    observable: str = "abs_c",
    margin: float = MARGIN,
) -> dict[str, Any]:
    """Intersection-union of the per-case equivalence tests; a named case without particles counts p = 1."""
    have = set(result.particles["case"]) if len(result.particles) else set()
    per = {}
    for case in cases:
        if case not in have:
            per[case] = {"p": 1.0, "missing": True}
            continue
        info = result.info(case)
        fits = result.exponents(case, r_lo_factor=r_lo_factor, r_hi=r_hi, observable=observable)
        stated = STATED_EXPONENT[bool(info["tricritical"])]
        per[case] = {
            **fits,
            **tost(fits["exponents"], stated, margin * stated),
            "stated": stated,
            "r_floor": float(info["r_floor"]),
            "missing": False,
        }
    p = max(v["p"] for v in per.values())
    outside = any(v.get("outside", False) for v in per.values())
    return {"p": p, "per_case": per, "if_not_rejected": "contradicted" if outside else "not supported"}


def evaluate_rates(preset: str, pieces: dict[str, Path], claim_dir: Path) -> Evidence:
    from thermolens.report import claims_meanfield as fig

    res = _load(_rates_piece(preset), pieces)
    main = _rates_test(res, PRIMARY_CASES)
    variants = []

    def test_variant(choice: str, cases=PRIMARY_CASES, **kwargs) -> None:
        t = _rates_test(res, cases, **kwargs)
        first = t["per_case"][cases[0]]
        variants.append(
            Variant(
                choice,
                effect=first.get("mean"),
                p_value=t["p"],
                if_rejected="supported",
                if_not_rejected=t["if_not_rejected"],
            )
        )

    test_variant(f"window down to 3 r_N instead of {FLOOR_FACTOR:g} r_N", r_lo_factor=3.0)
    test_variant("window from r = 0.4 (after the initial transient) instead of the start", r_hi=0.4)
    test_variant("Re c_k (phase-pinned) instead of |c_k|", observable="re_c")
    test_variant("equivalence margin 10 % of the stated exponent", margin=0.1)
    test_variant("equivalence margin 30 % of the stated exponent", margin=0.3)
    particle_cases = [
        c for c in res.cases["name"] if c not in PRIMARY_CASES and c in set(res.particles["case"])
    ]
    for case in particle_cases:
        test_variant(f"case {case} alone", cases=(case,))
    late = {}
    for (case, run), p in res.late_exponents().items():
        info = res.info(case)
        if info["K_factor"] != 1.0:
            continue
        stated = STATED_EXPONENT[bool(info["tricritical"])]
        late[f"{case}: {run}"] = p
        variants.append(
            Variant(
                f"PDE {case}, {run}: exponent over the last decade of t (stated {stated:g})",
                effect=p,
                verdict="supported" if abs(p - stated) <= MARGIN * stated else "contradicted",
            )
        )
    q = main["per_case"]["quartic"]
    missing = [c for c, v in main["per_case"].items() if v["missing"]]
    few = [c for c, v in main["per_case"].items() if not v["missing"] and v["n"] < 4]
    needs = None
    if missing or few:
        needs = (
            "the sextic (tricritical) case needs N >= 1e6 particles (its fluctuation floor r_N ~ N^(-1/6) is "
            "above 0.2 at N = 1e5); the full preset runs 1e6 particles x 8 seeds at beta_* (dt 1e-3), "
            "1e6 x 10 seeds at beta = 1 and two N = 2.5e5 checks there (dt 2e-3, 1e-3)"
        )
    panels = _rates_panels(res)
    name = _save(fig.rates_figure(panels), claim_dir, "rates.png")
    numbers = {
        "per_case": {
            c: {k: v.get(k) for k in ("stated", "mean", "ci", "sd", "n", "p", "pde", "window", "r_floor")}
            for c, v in main["per_case"].items()
        },
        "pde_late_exponents": late,
        "off_critical": res.relaxation_rates(),
        "margin": MARGIN,
        "floor_factor": FLOOR_FACTOR,
        "r_hi": R_HI,
    }
    decision = Decision(
        test=(
            f"H0: |p - p_stated| >= {MARGIN:.0%} of p_stated for the quartic (beta = 1, 1/2) and the sextic "
            "(beta_*, 1/4) case; two one-sided t-tests over seeds, intersection-union (max p); not rejected: "
            "contradicted if a case's 95% CI lies outside the margin"
        ),
        p_value=main["p"],
        if_rejected="supported",
        if_not_rejected=main["if_not_rejected"],
    )
    return Evidence(
        effect=q.get("mean"),
        ci=q.get("ci"),
        effect_label=(
            f"decay exponent p of |rho_hat(1)| at K_# (noisy transformer beta = 1), particles, mean over "
            f"{q.get('n', 0)} seeds; stated 1/2"
        ),
        null=q.get("pde"),
        null_label="the same fit on the mean-field PDE (N = infinity) over the same window",
        decision=decision,
        variants=tuple(variants),
        figure=name,
        needs_full=needs,
        reason=_rates_reason(main),
        numbers=numbers,
    )


def _rates_reason(main: dict[str, Any]) -> str:
    parts = []
    for case, v in main["per_case"].items():
        if v["missing"]:
            parts.append(f"{case}: no particle runs")
        else:
            parts.append(
                f"{case}: p = {v['mean']:.3f} [{v['ci'][0]:.3f}, {v['ci'][1]:.3f}] over {v['n']} seeds "
                f"(stated {v['stated']:g}, PDE {v['pde']:.3f})"
            )
    return "; ".join(parts) + f"; equivalence within {MARGIN:.0%} tested with p = {main['p']:.3g}"


def _rates_panels(res) -> list[dict[str, Any]]:
    """Per critical case: PDE runs, particle runs, fit window and the stated exponent, for the figure."""
    panels = []
    off = res.cases[res.cases["K_factor"] != 1.0]["name"].tolist()
    for _, info in res.cases[res.cases["K_factor"] == 1.0].iterrows():
        case = info["name"]
        pde = {
            run: (rows["t"].to_numpy(), rows["order_parameter"].to_numpy())
            for run, rows in res.pde[res.pde["case"] == case].groupby("run", sort=False)
        }
        parts = [
            (rows["t"].to_numpy(), rows["abs_c"].to_numpy())
            for _, rows in res.particles[res.particles["case"] == case].groupby("seed")
        ]
        fits = res.exponents(case, r_lo_factor=FLOOR_FACTOR, r_hi=R_HI) if parts else None
        null = {}
        if case == "quartic":
            for name in off:
                rows = res.pde[(res.pde["case"] == name) & (res.pde["run"] == "short")]
                null[name] = (rows["t"].to_numpy(), rows["order_parameter"].to_numpy())
        panels.append(
            {
                "title": f"{case} ({info['kernel']}, K = K_#)",
                "pde": pde,
                "particles": parts,
                "window": fits["window"] if fits else None,
                "stated": STATED_EXPONENT[bool(info["tricritical"])],
                "null": null,
                "n_particles": int(info["n_particles"]),
            }
        )
    return panels


# --------------------------------------------------------------------------------------------------
# commands and the claims


def _values_arg(kernel: str, preset: str) -> str:
    from thermolens.experiments.meanfield.contract import critical_preset
    from thermolens.meanfield import threshold

    cfg = critical_preset(kernel, preset)
    root = threshold(kernel, offsets=()).threshold
    values = list(cfg.values) + [root * (1 + o) for o in cfg.threshold_offsets]
    return ",".join(f"{v:.10g}" for v in sorted(values))


def _command_do(preset: str) -> str:
    return (
        "thermolens meanfield critical --kernel doi-onsager --json && "
        "thermolens meanfield critical --kernel doi-onsager --modes 128 --starts 32 --seed 1 --json && "
        "thermolens meanfield critical --kernel doi-onsager --out runs/mr-doi-onsager"
    )


def _command_nt(preset: str) -> str:
    return (
        "thermolens meanfield threshold --kernel noisy-transformer --json && "
        "thermolens meanfield phase-diagram --kernel noisy-transformer "
        f"--beta {_values_arg('noisy-transformer', preset)} "
        "--out runs/mr-noisy-transformer --json && "
        "thermolens meanfield critical --kernel noisy-transformer --beta 3 "
        "--out runs/mr-noisy-transformer-beta3"
    )


def _command_hk(preset: str) -> str:
    return (
        "thermolens meanfield threshold --kernel hegselmann-krause --json && "
        "thermolens meanfield phase-diagram --kernel hegselmann-krause "
        f"--R {_values_arg('hegselmann-krause', preset)} "
        "--out runs/mr-hegselmann-krause --json"
    )


def _command_rates(preset: str) -> str:
    return (
        f"thermolens claims --only mr-rates --preset {preset} --out runs/mr-rates  # or, the piece alone: "
        f'python -c "from pathlib import Path; from {CONTRACT} import RATES_STUDY, rates_preset; '
        f"RATES_STUDY.run(rates_preset('{preset}'), Path('runs/mr-rates-piece'))\""
    )


CLAIMS: tuple[Claim, ...] = (
    Claim(
        "mr-doi-onsager",
        SOURCE,
        "Doi-Onsager on the circle: K_c = K_# = 3 pi/4 and the transition is continuous",
        lambda preset: [_critical_piece("doi-onsager", preset)],
        evaluate_doi_onsager,
        _command_do,
    ),
    Claim(
        "mr-noisy-transformer",
        SOURCE,
        "noisy transformer: K_c = K_# and a continuous transition for beta < beta_* = 2.4469..., "
        "discontinuous above",
        lambda preset: [_critical_piece("noisy-transformer", preset)],
        evaluate_noisy_transformer,
        _command_nt,
    ),
    Claim(
        "mr-hegselmann-krause",
        SOURCE,
        "noisy Hegselmann-Krause: the transition is continuous for large interaction radius R",
        lambda preset: [_critical_piece("hegselmann-krause", preset)],
        evaluate_hegselmann_krause,
        _command_hk,
    ),
    Claim(
        "mr-rates",
        SOURCE,
        "at a continuous critical point the uniform state is approached algebraically: "
        "||rho_t - 1|| ~ t^-1/2 (quartic), t^-1/4 at the tricritical points (sextic)",
        lambda preset: [_rates_piece(preset)],
        evaluate_rates,
        _command_rates,
    ),
)
