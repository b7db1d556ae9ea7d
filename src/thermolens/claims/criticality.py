"""Criticality in a trained transformer (Aranda Barois 2024): Theorem 2 and the detector of §3.1.

``theorem2``
    "At optimal performance, transformer information flow satisfies P(s) ~ s^-tau exp(-s/s_c) with
    tau ~ 3/2" (s: activation-cascade sizes). Tested on the avalanche study
    (``thermolens.experiments.avalanches``, docs/avalanches.md) at the temperature of optimal
    performance: the minimum of the model's loss over the attention-temperature sweep, or — for a
    model without an LM head, like the bundled MiniLM — its trained operating point T = 1 (a global
    logit scale is a trained parameter, since scaling every W_Q by 1/T is a move in parameter space,
    so a converged model's training loss is stationary in T at T = 1). The exponent is the seed's
    own form fitted over *all* sizes (``a`` of ``s^-a exp(-s/s_c)``, the estimator that recovers 3/2
    on a subcritical branching network where the KS tail sits past the cutoff: docs/avalanches.md
    §7); H0: |a - 3/2| <= 0.1 ("tau ~ 3/2") by the likelihood-ratio test at the nearest null value
    with s_c profiled out (Wilks: chi2 with 1 dof).
    Rejected: "contradicted". Not rejected: "supported" only if the form shows at least a decade of
    scaling before its cutoff and the sizes differ from the layer-shuffled null (two-sample KS
    p < 0.01); otherwise "not supported". Variants: event thresholds, the other cascade definition
    (``layer-time``), the other sites (``attn``, ``mlp``), and tau as the Clauset KS-tail exponent
    (Wald test with a bootstrap standard error that re-chooses xmin).

``detect-critical-point``
    §3.1: there is a temperature where the attention patterns are power laws and the correlation
    length xi and susceptibility chi peak. Per head of the scan (``thermolens.experiments.scan``)
    the detected point is T* (the C peak). Two components, combined by an intersection-union test
    (p = the larger of the two p-values; Berger 1982, Technometrics 24:295), which is a level-alpha
    test of "both hold":
    (a) the point is not the null ensembles' REM crossover: the number of heads whose peak is
        distinct from both nulls in the paired bootstrap (``experiments.scan.contract``), against a
        binomial with the test's false-positive rate (the larger of the nominal 5 % and the rate
        measured on an independent Gaussian draw) — one-sided exact binomial test;
    (b) the patterns at T* are power laws (Clauset et al. 2009, arXiv:0706.1062) more often than the
        Gaussian null's patterns at the null's T*: exact one-sided McNemar test over heads.
    Rejected: "supported" when the chi and xi peaks also coincide with T* (their paired-bootstrap
    ratio to T* containing 1) in at least half of the heads, "contradicted" when they do not (the
    claim puts all three at one temperature). Not rejected: "not supported".
    Variants: the peak definition (chi or xi instead of C), the temperature grid, the token count,
    and the seed's own acceptance level (power law when the bootstrap p > 0.05).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from thermolens.claims.base import Claim, Decision, Evidence, Piece, Variant
from thermolens.stats.alternatives import TruncatedPowerLawProfile, profile_truncated_power_law

__all__ = ["CLAIMS", "DETECT", "THEOREM2"]

SOURCE = "Aranda Barois 2024"
AVALANCHE_STUDY = "thermolens.experiments.avalanches.contract:STUDY"
SCAN_STUDY = "thermolens.experiments.scan.contract:STUDY"
TAU = 1.5  # Theorem 2's exponent (mean-field branching)
#: "tau ~ 3/2": exponents within this distance of 3/2 count as the claimed value (measured avalanche exponents
#: of critical systems scatter by about this much, e.g. 1.5 +- 0.1 in cortex, Beggs & Plenz 2003)
TAU_TOLERANCE = 0.1
SCALING_DECADE = 10.0  # s_c / s_min for at least one decade of power-law scaling before the cutoff
KS_NULL_P = 0.01  # docs/avalanches.md: a null is told apart from the model at two-sample KS p < 0.01
NOMINAL_FPR = 0.05  # a head equal to its null is found distinct at most this often (95% intervals)
ALPHA_LEVEL = 0.05


def _grid(start: float, stop: float, count: int) -> list[float]:
    """``start:stop:count`` log-spaced, exactly as ``thermolens scan --temperatures`` parses it."""
    return [float(t) for t in np.geomspace(start, stop, count)]


def _num(x: Any) -> Any:
    """A JSON number: NaN and infinities become None, numpy scalars Python ones."""
    if x is None:
        return None
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    x = float(x)
    return x if math.isfinite(x) else None


def _check_preset(preset: str) -> bool:
    if preset not in ("quick", "full"):
        raise ValueError(f"preset {preset!r} is unknown; use 'quick' or 'full'")
    return preset == "quick"


# ==================================================================================================
# Theorem 2: cascade sizes at optimal performance


def _avalanche_config(quick: bool, **changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"max_tokens": 4096, "n_boot": 50} if quick else {"max_tokens": 65536, "n_boot": 200}
    return {"avalanches": {**base, **changes}, "model": None, "corpus": None}


def _theorem2_pieces(preset: str) -> tuple[Piece, list[tuple[str, Piece]]]:
    """The main piece (with the temperature sweep) and ``(choice, piece)`` of every variant."""
    quick = _check_preset(preset)
    temps = _grid(0.25, 4.0, 5) if quick else _grid(0.25, 4.0, 9)  # octaves / half octaves around T = 1
    name = f"avalanches-minilm-{preset}"
    main = Piece(name, AVALANCHE_STUDY, _avalanche_config(quick, temperatures=temps),
                 est_s=45 if quick else 600, est_gib=1.5 if quick else 6.0)
    each_s, each_gib = (12, 1.5) if quick else (250, 5.0)
    variants = []
    for h in ((2.5, 3.5) if quick else (2.0, 2.5, 3.5, 4.0)):
        variants.append((f"event threshold |z| > {h:g} (main: 3)",
                         Piece(f"{name}-z{h:g}", AVALANCHE_STUDY, _avalanche_config(quick, threshold=h),
                               each_s, each_gib)))
    variants.append(("cascade definition: layer-time (runs of active layers per token)",
                     Piece(f"{name}-layer-time", AVALANCHE_STUDY, _avalanche_config(quick, lattice="layer-time"),
                           each_s, each_gib)))
    variants.append(("site: attention output (|z| > 3)",
                     Piece(f"{name}-attn", AVALANCHE_STUDY, _avalanche_config(quick, site="attn"), each_s, each_gib)))
    # z = 3 percolates the token-layer lattice at the MLP site (93% of sites active at z = 5); z = 8 does not
    variants.append(("site: MLP hidden units (|z| > 8)",
                     Piece(f"{name}-mlp", AVALANCHE_STUDY, _avalanche_config(quick, site="mlp", threshold=8.0),
                           each_s, 2 * each_gib)))
    return main, variants


def theorem2_pieces(preset: str) -> list[Piece]:
    main, variants = _theorem2_pieces(preset)
    return [main, *(piece for _, piece in variants)]


def ks_tail_bootstrap(sizes: np.ndarray, *, n_boot: int = 200, seed: int = 0) -> tuple[float, float]:
    """Clauset's KS-tail exponent of ``sizes`` and its bootstrap standard error (cascades resampled, xmin
    re-chosen in every replicate, so the error includes the instability of the tail's start)."""
    from thermolens import stats

    rng = np.random.default_rng(seed)
    point = stats.fit_power_law(sizes, discrete=True).alpha
    reps = []
    for _ in range(n_boot):
        try:
            reps.append(stats.fit_power_law(rng.choice(sizes, sizes.size), discrete=True).alpha)
        except ValueError:
            continue
    return float(point), float(np.std(reps, ddof=1)) if len(reps) > 1 else math.nan


def _wald_p(estimate: float, se: float, value: float = TAU, tolerance: float = TAU_TOLERANCE) -> float:
    """Two-sided Wald p-value of H0: ``|estimate - value| <= tolerance``, at the nearest null value."""
    from scipy.stats import norm

    if not (math.isfinite(estimate) and math.isfinite(se) and se > 0):
        return 1.0
    return float(min(1.0, 2 * norm.sf(max(0.0, abs(estimate - value) - tolerance) / se)))


def _sizes(result: Any, source: str) -> np.ndarray:
    c = result.cascades
    return c.loc[c["source"] == source, "size"].to_numpy(dtype=np.float64)


def _optimum(result: Any) -> tuple[float, str, bool]:
    """(T of optimal performance, its label, whether it comes from a measured loss)."""
    temps = result.temperatures
    if temps is not None and np.isfinite(temps["loss"].to_numpy(dtype=float)).sum() >= 2:
        best = temps.loc[temps["loss"].idxmin()]
        return float(best["T"]), f"the lowest loss, T = {best['T']:.3g}", True
    return 1.0, "the trained T = 1; the model has no loss", False


def _form_verdict(form: TruncatedPowerLawProfile, ks_null_p: float) -> str:
    """The verdict when a = 3/2 is not rejected: supported only with a decade of scaling that the null lacks."""
    decade = form.s_c >= SCALING_DECADE * form.s_min
    return "supported" if decade and math.isfinite(ks_null_p) and ks_null_p < KS_NULL_P else "not supported"


def _form_variant(choice: str, result: Any) -> tuple[Variant, dict[str, Any]]:
    sizes = _sizes(result, "model")
    form = profile_truncated_power_law(sizes, tau=TAU, tolerance=TAU_TOLERANCE)
    ks_p = result.fits["shuffled_layers"].ks_p_vs_model
    variant = Variant(choice=choice, effect=form.alpha, p_value=form.p_tau, if_rejected="contradicted",
                      if_not_rejected=_form_verdict(form, ks_p))
    return variant, {"choice": choice, "alpha": _num(form.alpha), "alpha_ci": [_num(v) for v in form.alpha_ci],
                     "s_c": _num(form.s_c), "p_tau": _num(form.p_tau), "n_avalanches": int(sizes.size)}


def evaluate_theorem2(preset: str, pieces: dict[str, Path], claim_dir: Path) -> Evidence:
    """Theorem 2's evidence from the avalanche pieces (see the module doc)."""
    from scipy.stats import spearmanr

    from thermolens import io
    from thermolens.experiments.avalanches.contract import load
    from thermolens.report.claims_criticality import theorem2_figure

    main_piece, variant_pieces = _theorem2_pieces(preset)
    main = load(pieces[main_piece.name])
    temps = main.temperatures
    T_opt, T_label, has_loss = _optimum(main)
    model_sizes, null_sizes = _sizes(main, "model"), _sizes(main, "shuffled_layers")
    null = main.fits["shuffled_layers"]
    ks_null_p = float(null.ks_p_vs_model)
    tau_ks, tau_ks_se = ks_tail_bootstrap(model_sizes, seed=main.config.seed)
    at_trained_point = math.isclose(T_opt, 1.0)
    numbers: dict[str, Any] = {"T_opt": T_opt, "loss_available": has_loss, "n_tokens": main.n_tokens,
                               "n_avalanches": main.model.n_avalanches, "tau_ks": _num(tau_ks),
                               "tau_ks_boot_se": _num(tau_ks_se), "tau_ks_xmin": _num(main.model.xmin),
                               "is_power_law_ks": bool(main.model.is_power_law),
                               "beats_nulls": {k: bool(v) for k, v in main.beats_nulls.items()},
                               "ks_p_model_vs_shuffled": _num(ks_null_p)}
    fits: dict[str, dict[str, float]] = {}
    point: dict[str, Any] = {"T_opt": T_opt, "T_opt_label": f"optimum: {T_label}", "tolerance": TAU_TOLERANCE}
    if at_trained_point:
        form = profile_truncated_power_law(model_sizes, tau=TAU, tolerance=TAU_TOLERANCE)
        null_form = profile_truncated_power_law(null_sizes, tau=TAU, tolerance=TAU_TOLERANCE) if null_sizes.size >= 50 else None
        effect, ci, p = form.alpha, form.alpha_ci, form.p_tau
        verdict_if_kept = _form_verdict(form, ks_null_p)
        label = f"a of s^-a exp(-s/s_c) over all cascade sizes at T = {T_opt:g} ({T_label})"
        test = (f"H0: |a - 3/2| <= {TAU_TOLERANCE:g} ('tau ~ 3/2') in P(s) ~ s^-a exp(-s/s_c) fitted over all cascade "
                "sizes at the optimal temperature; likelihood-ratio test at the nearest null value, s_c profiled out "
                "(Wilks, chi2 with 1 dof)")
        fits = {"free": {"alpha": form.alpha, "lam": form.lam}, "fixed": {"alpha": TAU, "lam": form.lam_tau}}
        point.update(alpha=form.alpha, alpha_ci=form.alpha_ci)
        numbers.update(alpha=_num(form.alpha), alpha_ci=[_num(v) for v in ci], s_c=_num(form.s_c),
                       s_min=_num(form.s_min), lr_tau=_num(form.lr_tau), p_exact_3_2=_num(form.p_exact),
                       p_cutoff_vs_pure_power_law=_num(main.model.p_cutoff))
        if null_form is not None:
            point.update(alpha_null=null_form.alpha, alpha_null_ci=null_form.alpha_ci)
            numbers.update(alpha_null=_num(null_form.alpha), alpha_null_ci=[_num(v) for v in null_form.alpha_ci],
                           s_c_null=_num(null_form.s_c))
    else:  # the sweep keeps tau of the KS tail at every T, not the sizes: the seed's form cannot be refitted there
        row = temps.loc[(temps["T"] - T_opt).abs().idxmin()]
        effect, se = float(row["tau"]), float(row["tau_stderr"])
        ci, p = (effect - 1.96 * se, effect + 1.96 * se), _wald_p(effect, se)
        null_form = None
        verdict_if_kept = "supported" if bool(row["is_power_law"]) else "not supported"
        label = f"tau of the KS tail at the lowest-loss temperature T = {T_opt:.3g}"
        test = (f"H0: |tau - 3/2| <= {TAU_TOLERANCE:g} at the lowest-loss temperature; Wald test with the Fisher "
                "standard error of the KS-tail fit")
    if temps is not None and len(temps):
        t, tau = temps["T"].to_numpy(dtype=float), temps["tau"].to_numpy(dtype=float)
        closest = int(np.nanargmin(np.abs(tau - TAU)))
        columns = ["T", "tau", "tau_stderr", "s_c", "is_power_law", "branching_ratio", "n_avalanches", "loss"]
        numbers.update(sweep=[{k: _num(v) for k, v in r.items()} for r in temps[columns].to_dict("records")],
            T_tau_closest_to_3_2=float(t[closest]), tau_at_T_closest=_num(tau[closest]))
        loss = temps["loss"].to_numpy(dtype=float)
        if has_loss and np.isfinite(loss).sum() >= 3:
            ok = np.isfinite(loss) & np.isfinite(tau)
            rho = spearmanr(loss[ok], np.abs(tau[ok] - TAU))
            numbers.update(spearman_loss_vs_abs_tau_minus_3_2=_num(rho.statistic), spearman_p=_num(rho.pvalue))

    variants = []
    details = []
    for choice, piece in variant_pieces:
        variant, info = _form_variant(choice, load(pieces[piece.name]))
        variants.append(variant)
        details.append(info)
    ks_choice = "tau as Clauset's KS-tail exponent (Wald, bootstrap s.e. re-choosing xmin)"
    variants.append(Variant(choice=ks_choice, effect=tau_ks, p_value=_wald_p(tau_ks, tau_ks_se),
                            if_rejected="contradicted",
                            if_not_rejected="supported" if main.power_law_beats_nulls else "not supported"))
    details.append({"choice": ks_choice, "tau": _num(tau_ks), "se": _num(tau_ks_se)})
    numbers["variants"] = details

    claim_dir = Path(claim_dir)
    claim_dir.mkdir(parents=True, exist_ok=True)
    fig = theorem2_figure(temps, point, {"model": model_sizes, "shuffled_layers": null_sizes}, fits,
                          title=f"Theorem 2 on {main.model_name}: site {main.config.site}, {main.config.lattice}, "
                                f"|z| > {main.config.threshold:g}, {main.n_tokens} tokens")
    io.save_figure(fig, claim_dir / "theorem2.png")

    excluded = ci[0] > TAU + TAU_TOLERANCE or ci[1] < TAU - TAU_TOLERANCE
    reason = (f"At the optimum ({T_label}) the cascade sizes give {'a' if at_trained_point else 'tau'} = {effect:.2f} "
              f"[{ci[0]:.2f}, {ci[1]:.2f}] (p = {p:.2g} for 3/2 +- {TAU_TOLERANCE:g}"
              + (f"; layer-shuffled null a = {null_form.alpha:.2f}" if null_form is not None else "")
              + f"), so 3/2 is {'excluded' if excluded else 'not excluded'}"
              + ("" if excluded else f" and the form {'shows' if verdict_if_kept == 'supported' else 'lacks'} "
                 "a decade of scaling distinct from the null")
              + (f"; across temperatures tau comes closest to 3/2 at T = {numbers['T_tau_closest_to_3_2']:.3g}"
                 if "T_tau_closest_to_3_2" in numbers else "") + ".")
    return Evidence(
        effect=effect, effect_label=label, reason=reason, ci=tuple(ci),
        null=null_form.alpha if null_form is not None else TAU,
        null_label=("a of the layer-shuffled null (same fit); Theorem 2 predicts 3/2" if null_form is not None
                    else "Theorem 2's value"),
        null_ci=tuple(null_form.alpha_ci) if null_form is not None else None,
        decision=Decision(test=test, p_value=min(1.0, max(0.0, p)), if_rejected="contradicted",
                          if_not_rejected=verdict_if_kept),
        variants=tuple(variants), numbers=numbers, figure="theorem2.png",
    )


def _avalanche_flags(config: dict[str, Any]) -> str:
    a = config["avalanches"]
    flags = [f"--max-tokens {a['max_tokens']}", f"--bootstrap {a['n_boot']}"]
    for key, flag in (("site", "--site"), ("lattice", "--lattice"), ("threshold", "--threshold")):
        if key in a:
            flags.append(f"{flag} {a[key]:g}" if isinstance(a[key], float) else f"{flag} {a[key]}")
    if a.get("temperatures"):
        t = a["temperatures"]
        flags.append(f"--temperatures {t[0]:g}:{t[-1]:g}:{len(t)}")
    return " ".join(flags)


def theorem2_command(preset: str) -> str:
    main, variants = _theorem2_pieces(preset)
    runs = [f"thermolens avalanches {_avalanche_flags(p.config)} --json --out runs/{p.name}"
            for p in (main, *(piece for _, piece in variants))]
    return " && ".join(runs) + f" && thermolens claims --only theorem2 --preset {preset} --out runs/claims-{preset}"


THEOREM2 = Claim(
    id="theorem2",
    source=SOURCE,
    statement=("At optimal performance, activation-cascade sizes follow P(s) ~ s^-tau exp(-s/s_c) with tau ~ 3/2 "
               "(Theorem 2, information-flow criticality)."),
    pieces=theorem2_pieces,
    evaluate=evaluate_theorem2,
    command=theorem2_command,
)


# ==================================================================================================
# §3.1: detect_critical_point


def _scan_config(quick: bool, *, n_temps: int, max_tokens: int, power_law: bool) -> dict[str, Any]:
    config: dict[str, Any] = {
        "scan": {"temperatures": _grid(0.05, 25.6, n_temps), "max_tokens": max_tokens, "n_boot": 200},
        "model": None, "corpus": None, "null_test": True, "paired_sequences": 64 if quick else 512,
        "power_law": power_law,
    }
    if power_law:
        config.update(power_law_sequences=8, power_law_samples=2000 if quick else 5000,
                      power_law_boot=50 if quick else 200)
    return config


def _detect_pieces(preset: str) -> tuple[Piece, list[tuple[str, Piece]]]:
    quick = _check_preset(preset)
    n_temps, tokens = (28, 4096) if quick else (64, 16384)
    name = f"scan-minilm-{preset}"
    main = Piece(name, SCAN_STUDY, _scan_config(quick, n_temps=n_temps, max_tokens=tokens, power_law=True),
                 est_s=110 if quick else 1200, est_gib=2.0 if quick else 6.0)
    grids = ((10, 20),) if quick else ((28, 300), (127, 900))
    token_counts = ((2048, 18),) if quick else ((4096, 120), (65536, 1500))
    variants = []
    for n, est in grids:
        per_octave = (n - 1) // 9
        variants.append((f"temperature grid: {n} points, {per_octave} per octave (main: {n_temps})",
                         Piece(f"{name}-grid{n}", SCAN_STUDY,
                               _scan_config(quick, n_temps=n, max_tokens=tokens, power_law=False), est, 2.0)))
    for count, est in token_counts:
        variants.append((f"token count: {count} (main: {tokens})",
                         Piece(f"{name}-tokens{count}", SCAN_STUDY,
                               _scan_config(quick, n_temps=n_temps, max_tokens=count, power_law=False), est,
                               2.0 if count <= 16384 else 12.0)))
    return main, variants


def detect_pieces(preset: str) -> list[Piece]:
    main, variants = _detect_pieces(preset)
    return [main, *(piece for _, piece in variants)]


def _wilson(k: int, n: int) -> tuple[float, float]:
    from thermolens.experiments.grokking.study import wilson_interval

    return wilson_interval(k, n)


def distinct_test(null_test: Any, definition: str) -> dict[str, Any]:
    """Component (a): heads whose ``definition`` peak is distinct from both nulls, against the false-positive rate.

    One-sided exact binomial test of ``k`` distinct heads out of ``n`` at rate ``p0 = max(0.05, calibration
    rate)``; the calibration rate is the fraction of independent Gaussian draws found distinct by the same test.
    """
    from scipy.stats import binomtest

    part = null_test[null_test["definition"] == definition]
    n, k, k_calib = len(part), int(part["differs"].sum()), int(part["calib_differs"].sum())
    p0 = max(NOMINAL_FPR, k_calib / n if n else 1.0)
    p = float(binomtest(k, n, min(p0, 1.0), alternative="greater").pvalue) if n else 1.0
    return {"definition": definition, "n_heads": n, "n_distinct": k, "n_calib_distinct": k_calib, "p0": p0, "p": p,
            "fraction": k / n if n else math.nan, "fraction_ci": _wilson(k, n),
            "calib_fraction": k_calib / n if n else math.nan, "calib_fraction_ci": _wilson(k_calib, n)}


def _is_power_law(table: Any, p_threshold: float) -> np.ndarray:
    """``detect_critical_point``'s acceptance at another bootstrap level: p > threshold and no alternative favoured
    (``stats.compare``'s default significance 0.1, as the stored tests were made)."""
    ok = table["gof_p"].to_numpy(dtype=float) > p_threshold
    for name in ("lognormal", "exponential"):
        r, p = table[f"R_{name}"].to_numpy(dtype=float), table[f"p_{name}"].to_numpy(dtype=float)
        ok &= ~((r < 0) & (p <= 0.1))
    return ok


def power_law_test(critical: Any, null_critical: Any, p_threshold: float | None = None) -> dict[str, Any]:
    """Component (b): power laws at T* among heads against their Gaussian nulls — exact one-sided McNemar test
    (discordant heads: real a power law and null not, ``b``; the reverse, ``c``; ``P(Bin(b + c, 1/2) >= b)``)."""
    from scipy.stats import binomtest

    keys = ["layer", "head"]
    merged = critical.merge(null_critical, on=keys, suffixes=("", "_null"))
    if p_threshold is None:
        real, null = merged["is_power_law"].to_numpy(dtype=bool), merged["is_power_law_null"].to_numpy(dtype=bool)
    else:
        real = _is_power_law(critical.merge(null_critical[keys], on=keys), p_threshold)
        null = _is_power_law(null_critical.merge(critical[keys], on=keys), p_threshold)
    b, c, n = int((real & ~null).sum()), int((~real & null).sum()), int(real.size)
    p = float(binomtest(b, b + c, 0.5, alternative="greater").pvalue) if b + c else 1.0
    return {"n_heads": n, "n_power_law": int(real.sum()), "n_power_law_null": int(null.sum()), "b": b, "c": c, "p": p,
            "fraction": real.mean() if n else math.nan, "fraction_ci": _wilson(int(real.sum()), n),
            "null_fraction": null.mean() if n else math.nan, "null_fraction_ci": _wilson(int(null.sum()), n)}


def peak_agreement(null_test: Any) -> dict[str, Any]:
    """Where chi and xi peak relative to the C peak (the seed has all three at one temperature): per head the
    paired-bootstrap interval of ``T_def / T_C`` (``coincides_C``: it contains 1)."""
    out: dict[str, Any] = {}
    both = None
    for d in ("chi", "xi"):
        part = null_test[null_test["definition"] == d].sort_values(["layer", "head"])
        coincide = part["coincides_C"].to_numpy(dtype=bool)
        both = coincide if both is None else both & coincide
        out[f"median_T_{d}_over_T_C"] = _num(np.exp(np.nanmedian(np.log(part["ratio_C"].to_numpy(dtype=float)))))
        out[f"fraction_{d}_peak_coincides_with_C"] = _num(coincide.mean())
        out[f"fraction_{d}_peak_at_grid_edge"] = _num(part["at_edge"].to_numpy(dtype=bool).mean())
    out["fraction_all_peaks_coincide"] = _num(both.mean())
    out["n_all_peaks_coincide"] = int(both.sum())
    return out


def _representative(peaks: Any) -> dict[str, Any]:
    """The distinct head with the median |log T*/T*_gauss| (or the most separated head when none is distinct)."""
    sep = np.abs(np.log(peaks["ratio_gauss"].to_numpy(dtype=float)))
    distinct = peaks["differs"].to_numpy(dtype=bool)
    if distinct.any():
        idx = np.flatnonzero(distinct)
        pick = idx[np.argsort(sep[idx])[len(idx) // 2]]
    else:
        pick = int(np.nanargmax(sep))
    return peaks.iloc[pick].to_dict()


def evaluate_detect(preset: str, pieces: dict[str, Path], claim_dir: Path) -> Evidence:
    """§3.1's evidence from the scan pieces (see the module doc)."""
    import pandas as pd

    from thermolens import io
    from thermolens.experiments.scan.contract import load
    from thermolens.report.claims_criticality import detect_figure

    main_piece, variant_pieces = _detect_pieces(preset)
    main = load(pieces[main_piece.name])
    if main.null_test is None or main.critical is None or main.null_critical is None:
        raise ValueError(f"piece {main_piece.name} lacks the null test or the power-law tables; rerun it")
    a = {d: distinct_test(main.null_test, d) for d in ("C", "chi", "xi")}
    b = power_law_test(main.critical, main.null_critical)
    p = max(a["C"]["p"], b["p"])
    agreement = peak_agreement(main.null_test)
    # With (a) and (b) shown, what is left of the claim is that xi and chi peak at the same point: if most heads'
    # chi or xi peak lies significantly away from T*, that part is excluded.
    coincide = agreement["fraction_all_peaks_coincide"] >= 0.5
    if_rejected = "supported" if coincide else "contradicted"

    variants, details = [], []

    def add(choice: str, a_part: dict[str, Any], b_part: dict[str, Any]) -> None:
        variants.append(Variant(choice=choice, effect=a_part["fraction"], p_value=max(a_part["p"], b_part["p"]),
                                if_rejected=if_rejected, if_not_rejected="not supported"))
        details.append({"choice": choice, "fraction_distinct": _num(a_part["fraction"]), "p_distinct": a_part["p"],
                        "fraction_power_law": _num(b_part["fraction"]), "p_power_law": b_part["p"]})

    add("peak definition: susceptibility chi (main: specific heat C)", a["chi"], b)
    add("peak definition: correlation length xi (main: specific heat C)", a["xi"], b)
    for choice, piece in variant_pieces:
        other = load(pieces[piece.name])
        if other.null_test is None:
            raise ValueError(f"piece {piece.name} lacks its null test; rerun it")
        add(choice + "; power laws from the main scan", distinct_test(other.null_test, "C"), b)
    add("power law accepted at bootstrap p > 0.05 (the seed's level; main: 0.1)", a["C"],
        power_law_test(main.critical, main.null_critical, p_threshold=0.05))

    peaks = main.null_test[main.null_test["definition"] == "C"].reset_index(drop=True)
    head = _representative(peaks)
    curves = main.scan.curves
    curves = curves[(curves["layer"] == head["layer"]) & (curves["head"] == head["head"])].sort_values("T")
    rows = []
    for d, label in (("C", "C peak"), ("chi", "chi peak"), ("xi", "xi peak")):
        rows.append({"label": f"distinct: {label}", "fraction": a[d]["fraction"], "fraction_lo": a[d]["fraction_ci"][0],
                     "fraction_hi": a[d]["fraction_ci"][1], "null_fraction": a[d]["calib_fraction"],
                     "null_fraction_lo": a[d]["calib_fraction_ci"][0],
                     "null_fraction_hi": a[d]["calib_fraction_ci"][1]})
    rows.append({"label": "power law at T*", "fraction": b["fraction"], "fraction_lo": b["fraction_ci"][0],
                 "fraction_hi": b["fraction_ci"][1], "null_fraction": b["null_fraction"],
                 "null_fraction_lo": b["null_fraction_ci"][0], "null_fraction_hi": b["null_fraction_ci"][1]})
    k_both, n_heads = agreement["n_all_peaks_coincide"], a["C"]["n_heads"]
    lo, hi = _wilson(k_both, n_heads)
    rows.append({"label": "chi, xi peak at T*", "fraction": k_both / n_heads, "fraction_lo": lo, "fraction_hi": hi,
                 "null_fraction": math.nan, "null_fraction_lo": math.nan, "null_fraction_hi": math.nan})
    claim_dir = Path(claim_dir)
    claim_dir.mkdir(parents=True, exist_ok=True)
    fig = detect_figure(peaks, curves, head, pd.DataFrame(rows),
                        title=f"detect_critical_point on {main.scan.model_name}: {main.scan.n_tokens} tokens, "
                              f"{len(main.scan.config.temperatures)} temperatures, paired bootstrap over "
                              f"{int(peaks['n_sequences'].iloc[0])} sequences")
    io.save_figure(fig, claim_dir / "detect_critical_point.png")

    ratio = np.log(peaks["ratio_gauss"].to_numpy(dtype=float))
    numbers = {
        "n_heads": a["C"]["n_heads"], "n_tokens": main.scan.n_tokens,
        "n_temperatures": len(main.scan.config.temperatures),
        "distinct": {d: {k: _num(v) if not isinstance(v, tuple) else [_num(x) for x in v] for k, v in part.items()
                         if k != "definition"} for d, part in a.items()},
        "power_law": {k: _num(v) if not isinstance(v, tuple) else [_num(x) for x in v] for k, v in b.items()},
        "p_distinct": a["C"]["p"], "p_power_law": b["p"],
        "median_T_star": _num(peaks["T"].median()), "median_T_star_null_gauss": _num(peaks["T_gauss"].median()),
        "median_T_star_null_shuffled": _num(peaks["T_shuffled"].median()),
        "median_abs_log_T_over_T_gauss": _num(np.nanmedian(np.abs(ratio))),
        "scan_differs_from_null": int(main.scan.heads["differs_from_null"].sum()),
        **agreement, "variants": details,
    }
    reason = (f"{a['C']['n_distinct']} of {a['C']['n_heads']} heads have a C peak distinct from both null ensembles "
              f"(the same test finds {a['C']['n_calib_distinct']} of an independent Gaussian draw distinct; binomial "
              f"p = {a['C']['p']:.2g}), and {b['n_power_law']} heads' patterns at T* pass the power-law test against "
              f"{b['n_power_law_null']} of their Gaussian nulls (McNemar p = {b['p']:.2g}); the claim needs both "
              f"(intersection-union p = {p:.2g}); the chi and xi peaks coincide with T* (paired interval of their "
              f"ratio containing 1) in {100 * agreement['fraction_all_peaks_coincide']:.0f}% of heads (median "
              f"T_chi/T* = {agreement['median_T_chi_over_T_C']:.2f}, "
              f"T_xi/T* = {agreement['median_T_xi_over_T_C']:.2f}).")
    return Evidence(
        effect=a["C"]["fraction"],
        effect_label="fraction of heads whose C peak T* is distinct from both null ensembles",
        reason=reason, ci=a["C"]["fraction_ci"], null=a["C"]["calib_fraction"],
        null_label="the same fraction for an independent Gaussian-null draw (the test's false-positive rate)",
        null_ci=a["C"]["calib_fraction_ci"],
        decision=Decision(
            test=("intersection-union test (p = max of the two): (a) one-sided exact binomial test of the heads whose "
                  "T* is distinct from both nulls (paired bootstrap over sequences) against the false-positive rate "
                  "max(5%, calibration); (b) exact one-sided McNemar test of power laws at T* (Clauset bootstrap "
                  "p > 0.1, no better alternative) in heads against their Gaussian nulls; if rejected, 'supported' "
                  "needs the chi and xi peaks to coincide with T* in at least half of the heads, else "
                  "'contradicted'"),
            p_value=min(1.0, p), if_rejected=if_rejected, if_not_rejected="not supported"),
        variants=tuple(variants), numbers=numbers, figure="detect_critical_point.png",
    )


def _scan_flags(config: dict[str, Any]) -> str:
    s = config["scan"]
    t = s["temperatures"]
    flags = [f"--max-tokens {s['max_tokens']}", f"--temperatures {t[0]:g}:{t[-1]:g}:{len(t)}",
             f"--bootstrap {s['n_boot']}"]
    if config.get("power_law"):
        flags.append("--power-law")
    return " ".join(flags)


def detect_command(preset: str) -> str:
    main, variants = _detect_pieces(preset)
    runs = [f"thermolens scan {_scan_flags(p.config)} --json --out runs/{p.name}"
            for p in (main, *(piece for _, piece in variants))]
    # the paired null test and the null's power-law check are study steps without a command of their own
    return (" && ".join(runs)
            + f" && thermolens claims --only detect-critical-point --preset {preset} --out runs/claims-{preset}")


DETECT = Claim(
    id="detect-critical-point",
    source=SOURCE,
    statement=("Section 3.1: scanning the attention temperature finds a critical point where the attention patterns "
               "are power laws and the correlation length xi and susceptibility chi peak."),
    pieces=detect_pieces,
    evaluate=evaluate_detect,
    command=detect_command,
)

CLAIMS: tuple[Claim, ...] = (THEOREM2, DETECT)
