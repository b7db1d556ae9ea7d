"""Claims of Kim 2026 (arXiv:2602.08216): attention is a canonical ensemble, and its specific-heat
peak is a precursor of grokking.

``kim-canonical-ensemble`` — an identity, checked numerically on the bundled MiniLM by
``thermolens.experiments.canonical`` (the model's own attention probabilities against Boltzmann
weights ``exp(q.k / T_K) / Z`` at ``T_K = sqrt(d_k)``, ``F = U - T S``, ``C = beta^2 Var(E) >= 0``,
``T*_K = sqrt(d_k) T*``). Fixed verdict: "supported" when the largest error of every check lies
below :data:`TOLERANCE`, "contradicted" otherwise.

``kim-precursor`` — on the grokking study (``thermolens.experiments.grokking``), per run:

* **does the run grok?** ``t_fit``: first reading with training accuracy >= 0.99; ``t_gen``: first
  with test accuracy >= 0.9. The run groks when test accuracy lags the fit of the training set by
  a clear delay: ``t_gen - t_fit >= max(1000 steps, 0.5 t_gen)``, test accuracy at ``t_fit`` still
  below 0.5, and by the midpoint of ``[t_fit, t_gen]`` less than a quarter of its rise from
  ``t_fit`` to ``t_gen`` made (:class:`GrokCriterion`). Runs at raised training fractions, where
  test accuracy climbs straight after memorisation, fail it, and so do runs that never generalize.
* **onset** of generalization (test accuracy 0.5 — the headline — or 0.9, the sigmoid midpoint, or
  the test-loss drop: the midpoint, in log loss, of the fall from its maximum to its later minimum);
* **peak** of the specific heat ``C_eq`` of the test inputs (``detection.detect_peak``), and
  ``lead = onset - peak`` (positive: the peak comes first).

Decision over the runs that grok and show a peak: H0 "peak and onset are simultaneous" (median lead
0), exact two-sided sign test, i.e. the two one-sided tests at half the level each; rejection means
"supported" when most peaks come first, "contradicted" when most come after, otherwise "not
supported" — or "inconclusive" with fewer than :data:`MIN_RUNS` such runs, too few for the test to
reject whatever they show. A second null, reported in ``numbers``: onsets re-paired with the peaks of the other
runs of the same modulus (is the peak locked to the onset at all?). Divergence: a least-squares fit
``log C_max = a + b log p`` over the grokking runs (``C_max`` the peak height), with a t-interval
of ``b`` and AIC comparisons with a constant and with logarithmic growth; "a power-law divergence"
needs ``b > 0`` (one-sided p < 0.05) and the power law ahead of both by more than 2 in AIC.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from thermolens.claims.base import Claim, Decision, Evidence, Piece, Variant

__all__ = [
    "CLAIMS",
    "TOLERANCE",
    "Choice",
    "GrokCriterion",
    "RunLead",
    "cmax_scaling",
    "grokking_delay",
    "loss_drop_onset",
    "read_run",
    "sign_test",
]

SOURCE = "Kim 2026"
CANONICAL_STUDY = "thermolens.experiments.canonical.contract:STUDY"
GROKKING_STUDY = "thermolens.experiments.grokking.contract:STUDY"

#: largest error accepted by the identity check in float32: probabilities absolute, energies, F and
#: C relative to their scale (at least 1). float32 rounds probabilities at ~6e-8 and logits of up to
#: ~40 amplify that to 3e-6 (256 tokens) .. 6e-6 (4096 tokens) in C on MiniLM, the floor of any
#: float32 check; a 1% error in T_K shows as ~1e-2. The tolerance sits two decades from each;
#: tighter ones are tested in float64 (a variant at 1e-12 on the weights from q.k).
TOLERANCE = 1e-4
#: runs that must grok (and show a peak) for a verdict: the smallest n at which a unanimous
#: two-sided sign test reaches p < 0.05 (2 * 0.5^6 = 0.031)
MIN_RUNS = 6
#: moduli needed for a fit of C_max against p
MIN_MODULI = 3
N_BOOT = 2000
#: resamples of one run's readings for the interval of its lead
N_BOOT_RUN = 200


# ==================================================================================================
# kim-canonical-ensemble


def _canonical_config(preset: str):
    from thermolens.experiments.canonical.contract import CanonicalConfig

    if preset == "quick":
        return CanonicalConfig(max_tokens=256, seq_len=64)
    return CanonicalConfig(max_tokens=4096, seq_len=128, random_architectures=("gpt2", "bert"))


def _canonical_pieces(preset: str) -> list[Piece]:
    from thermolens.runner.study import config_to_dict

    config = _canonical_config(preset)
    # measured on the shared 2-core machine: quick 10 s of CPU (52 s wall under a load of 8),
    # full 155 s of CPU, 2.3 GiB peak
    est = 30.0 if preset == "quick" else 200.0
    return [Piece(name=f"kim-canonical-{preset}", study=CANONICAL_STUDY, config=config_to_dict(config),
                  est_s=est, est_gib=1.5 if preset == "quick" else 3.0)]


def _max_error(checks, model: str, dtype: str, names: tuple[str, ...] | None = None) -> float:
    part = checks[(checks["model"] == model) & (checks["dtype"] == dtype)]
    if names is not None:
        part = part[part["check"].isin(names)]
    return float(part["error"].max()) if len(part) else math.nan


def _identity_verdict(error: float, c_min: float, tolerance: float) -> str:
    return "supported" if error < tolerance and c_min >= -tolerance else "contradicted"


def _evaluate_canonical(preset: str, pieces: dict[str, Path], claim_dir: Path) -> Evidence:
    from thermolens import io
    from thermolens.experiments.canonical.contract import BUNDLED
    from thermolens.report import claims_kim as figures
    from thermolens.runner.study import load_piece

    (name,) = [p.name for p in _canonical_pieces(preset)]
    result = load_piece(CANONICAL_STUDY, pieces[name])
    checks, facts, tstar = result.checks, result.facts, result.tstar
    model = result.config.model or BUNDLED
    primary = facts[(facts["model"] == model) & (facts["dtype"] == "float32")]
    error = _max_error(checks, model, "float32")
    c_min = float(facts["C_min"].min())
    resolution = float(primary["off_error"].min())
    verdict = _identity_verdict(error, c_min, TOLERANCE)

    variants = [Variant(choice=f"tolerance {tol:g} (float32)", effect=error,
                        verdict=_identity_verdict(error, c_min, tol)) for tol in (1e-3, 3e-5)]
    if "float64" in set(checks["dtype"]):
        e64 = _max_error(checks, model, "float64")
        variants.append(Variant(choice=f"float64 model, tolerance {TOLERANCE:g} (captured logits stay float32)",
                                effect=e64, verdict=_identity_verdict(e64, c_min, TOLERANCE)))
        kim64 = _max_error(checks, model, "float64", ("kim_weights",))
        variants.append(Variant(choice="float64 model, weights from q.k only, tolerance 1e-12", effect=kim64,
                                verdict=_identity_verdict(kim64, c_min, 1e-12)))
    for other in sorted(set(checks["model"]) - {model}):
        for dtype in sorted(set(checks[checks["model"] == other]["dtype"])):
            e = _max_error(checks, other, dtype)
            variants.append(Variant(choice=f"{other} (tiny random weights), {dtype}, tolerance {TOLERANCE:g}",
                                    effect=e, verdict=_identity_verdict(e, c_min, TOLERANCE)))

    per_check = checks.groupby(["model", "dtype", "check"])["error"].max()
    numbers: dict[str, Any] = {
        "tolerance": TOLERANCE,
        "max_error_by_check": {f"{m}/{d}/{c}": float(v) for (m, d, c), v in per_check.items()},
        "C_min": c_min,
        "resolution_error_1pct_T_K": resolution,
        "d_head": int(primary["d_head"].iloc[0]),
        "sqrt_d_head": math.sqrt(int(primary["d_head"].iloc[0])),
        "n_query_rows": int(primary["n_rows"].sum()),
        "median_T_star": float(tstar[(tstar["model"] == model) & (tstar["dtype"] == "float32")]["T_star"].median()),
        "median_T_star_kim": float(tstar[(tstar["model"] == model) & (tstar["dtype"] == "float32")]["T_star_kim"].median()),
    }
    fig = figures.plot_canonical(checks, TOLERANCE, resolution, tstar, primary=(model, "float32"),
                                 sqrt_d=numbers["sqrt_d_head"])
    io.save_figure(fig, Path(claim_dir) / "kim-canonical-ensemble.png")
    worst = checks.loc[checks[(checks["model"] == model) & (checks["dtype"] == "float32")]["error"].idxmax(), "check"]
    reason = (
        f"On {model} (float32, {numbers['n_query_rows']} head-query rows) the model's own attention equals "
        f"exp(q.k/T_K)/Z at T_K = sqrt(d_k) = {numbers['sqrt_d_head']:.3g} and F = U - TS, C = beta^2 Var(E) >= 0, "
        f"T*_K = sqrt(d_k) T* hold to {error:.1e} (worst: {worst}), "
        f"{'below' if error < TOLERANCE else 'above'} the tolerance {TOLERANCE:g}, while a 1% error in T_K "
        f"would show as {resolution:.1e}."
    )
    return Evidence(
        effect=error, effect_label="largest error of the identity over all checks (MiniLM, float32)",
        reason=reason, null=resolution,
        null_label="the same pattern error with T_K 1% off sqrt(d_k) (the check's resolution)",
        verdict=verdict, variants=tuple(variants), numbers=numbers, figure="kim-canonical-ensemble.png",
    )


def _canonical_command(preset: str) -> str:
    config = _canonical_config(preset)
    # the scan reports T* and Kim's T*_K = sqrt(d_k) T* per head; the identity check runs in claims
    return (f"thermolens scan --max-tokens {config.max_tokens} --seq-len {config.seq_len} --json && "
            f"thermolens claims --only kim-canonical-ensemble --preset {preset} --out runs/claims")


CANONICAL = Claim(
    id="kim-canonical-ensemble", source=SOURCE,
    statement="Softmax attention is a canonical ensemble with energy -q.k at temperature T = sqrt(d_k).",
    pieces=_canonical_pieces, evaluate=_evaluate_canonical, command=_canonical_command,
)


# ==================================================================================================
# kim-precursor: reading one run


@dataclass(frozen=True)
class GrokCriterion:
    """When a run really groks: test accuracy lags the fit of the training set by a clear delay.

    ``t_fit``: first reading with training accuracy >= ``fit_acc``; ``t_gen``: first with test
    accuracy >= ``gen_acc``. Groks when ``t_gen - t_fit >= max(min_delay_steps, min_delay_fraction *
    t_gen)``, test accuracy at ``t_fit`` is below ``max_test_acc_at_fit``, and at the midpoint of
    ``[t_fit, t_gen]`` test accuracy has made less than ``max_midway_gain`` of its rise from ``t_fit``
    to ``t_gen`` (a run whose test accuracy climbs straight after memorisation has made about half).
    """

    fit_acc: float = 0.99
    gen_acc: float = 0.9
    min_delay_steps: float = 1000.0
    min_delay_fraction: float = 0.5
    max_test_acc_at_fit: float = 0.5
    max_midway_gain: float = 0.25

    def describe(self) -> str:
        return (f"t_gen - t_fit >= max({self.min_delay_steps:g} steps, {self.min_delay_fraction:g} t_gen) with "
                f"t_fit = first step at train acc >= {self.fit_acc:g}, t_gen = first step at test acc >= "
                f"{self.gen_acc:g}; test acc < {self.max_test_acc_at_fit:g} at t_fit; and less than "
                f"{self.max_midway_gain:g} of the test-accuracy rise from t_fit to t_gen made by their midpoint")


ONSETS = {"acc50": "test accuracy 0.5", "acc90": "test accuracy 0.9", "sigmoid": "sigmoid midpoint",
          "loss_drop": "test-loss drop"}
SERIES = {"test_C_eq": "C (= row, test inputs)", "train_C_eq": "C on training inputs",
          "test_C_all": "C over all query rows", "test_C_pooled": "pooled C", "test_C_corr": "C - Gaussian null"}


@dataclass(frozen=True)
class Choice:
    """One analysis of the runs: onset definition, C series, peak smoothing and prominence, criterion."""

    label: str = "primary"
    onset: str = "acc50"
    series: str = "test_C_eq"
    smooth_points: float = 2.0
    noise_factor: float = 3.0
    criterion: GrokCriterion = field(default_factory=GrokCriterion)


PRIMARY = Choice()


@dataclass(frozen=True)
class RunLead:
    """One run read under one :class:`Choice` (steps; NaN where a quantity does not exist)."""

    run: str
    p: int
    seed: int
    train_fraction: float
    steps: int
    t_fit: float
    t_gen: float
    test_acc_at_fit: float
    groks: bool
    onset: float
    peak: float
    C_max: float
    lead: float

    @property
    def usable(self) -> bool:
        return self.groks and math.isfinite(self.lead)


def grokking_delay(steps, train_acc, test_acc, criterion: GrokCriterion) -> tuple[float, float, float, bool]:
    """``(t_fit, t_gen, test accuracy at t_fit, groks)`` of one run (see :class:`GrokCriterion`)."""
    import numpy as np

    from thermolens.experiments.grokking.detection import first_crossing

    steps, train_acc, test_acc = (np.asarray(x, float) for x in (steps, train_acc, test_acc))
    t_fit = first_crossing(steps, train_acc, criterion.fit_acc)
    t_gen = first_crossing(steps, test_acc, criterion.gen_acc)
    delay = t_gen - t_fit
    if not math.isfinite(delay):
        return t_fit, t_gen, float(np.interp(t_fit, steps, test_acc)) if math.isfinite(t_fit) else math.nan, False
    acc_at_fit = float(np.interp(t_fit, steps, test_acc))
    midway = float(np.interp(0.5 * (t_fit + t_gen), steps, test_acc))
    rise = criterion.gen_acc - acc_at_fit
    groks = (delay >= max(criterion.min_delay_steps, criterion.min_delay_fraction * t_gen)
             and acc_at_fit < criterion.max_test_acc_at_fit
             and rise > 0 and (midway - acc_at_fit) < criterion.max_midway_gain * rise)
    return t_fit, t_gen, acc_at_fit, bool(groks)


def loss_drop_onset(steps, test_loss, smooth_points: float = 2.0) -> float:
    """Midpoint of the test-loss drop: after the maximum of the smoothed ``log`` test loss, the first
    step where it has fallen halfway (in log) to its later minimum; NaN when it never falls."""
    import numpy as np

    from thermolens.experiments.grokking.detection import first_crossing, smooth

    steps = np.asarray(steps, float)
    log_loss = smooth(np.log(np.asarray(test_loss, float)), smooth_points)
    top = int(np.argmax(log_loss))
    after = log_loss[top:]
    if after.size < 2 or not after.min() < after[0]:
        return math.nan
    half = 0.5 * (after[0] + after.min())
    return first_crossing(steps[top:], -after, -half)


def _onset(history, kind: str, smooth_points: float) -> float:
    from thermolens.experiments.grokking import detection

    steps, acc = history["step"].to_numpy(float), history["test_acc"].to_numpy(float)
    if kind == "acc50":
        return detection.first_crossing(steps, acc, 0.5)
    if kind == "acc90":
        return detection.first_crossing(steps, acc, 0.9)
    if kind == "sigmoid":
        return detection.fit_sigmoid(steps, acc)[0]
    if kind == "loss_drop":
        return loss_drop_onset(steps, history["test_loss"].to_numpy(float), smooth_points)
    raise ValueError(f"onset {kind!r} is unknown; choose one of {sorted(ONSETS)}")


def read_run(name: str, row: dict[str, Any], history, choice: Choice = PRIMARY) -> RunLead:
    """Criterion, onset, peak and lead of one run from its history (``row``: its headline row)."""
    from thermolens.experiments.grokking import detection

    steps = history["step"].to_numpy(float)
    t_fit, t_gen, acc_at_fit, groks = grokking_delay(steps, history["train_acc"], history["test_acc"], choice.criterion)
    onset = _onset(history, choice.onset, choice.smooth_points)
    peak = detection.detect_peak(steps, history[choice.series].to_numpy(float), smooth_points=choice.smooth_points,
                                 noise_factor=choice.noise_factor)
    return RunLead(
        run=name, p=int(row["p"]), seed=int(row["seed"]), train_fraction=float(row["train_fraction"]),
        steps=int(row["steps"]), t_fit=t_fit, t_gen=t_gen, test_acc_at_fit=acc_at_fit, groks=groks,
        onset=onset, peak=peak.step, C_max=peak.value, lead=detection.lead(onset, peak),
    )


def lead_interval(history, choice: Choice = PRIMARY, *, n_boot: int | None = None,
                  seed: int = 0) -> tuple[float, float]:
    """95% interval of one run's lead from the precision of its own readings.

    The onset (a test-accuracy crossing, measured exactly on the whole test split) is known to the
    reading cadence: it is drawn uniformly within half a cadence of its interpolated value. The C
    series is its smoothed curve plus Gaussian noise of the robust residual scale (1.4826 MAD, the
    noise the peak detector assumes; resampled raw residuals would carry the steep rise at
    initialization everywhere), and the peak is re-detected. Variation between runs is the sign
    test's business, not this interval's. NaNs when the onset is not a level crossing or under half
    the replicates find a peak.
    """
    import numpy as np

    from thermolens.experiments.grokking import detection

    if choice.onset not in ("acc50", "acc90"):
        return math.nan, math.nan
    onset = _onset(history, choice.onset, choice.smooth_points)
    if not math.isfinite(onset):
        return math.nan, math.nan
    n_boot = N_BOOT_RUN if n_boot is None else n_boot
    steps = history["step"].to_numpy(float)
    cadence = float(np.median(np.diff(steps)))
    values = history[choice.series].to_numpy(float)
    smoothed = detection.smooth(values, choice.smooth_points)
    residual = values - smoothed
    noise = 1.4826 * float(np.median(np.abs(residual - np.median(residual))))
    rng = np.random.default_rng(seed)
    leads = []
    for _ in range(n_boot):
        peak = detection.detect_peak(steps, smoothed + noise * rng.standard_normal(values.size),
                                     smooth_points=choice.smooth_points, noise_factor=choice.noise_factor)
        leads.append(detection.lead(onset + cadence * rng.uniform(-0.5, 0.5), peak))
    leads = np.asarray(leads)
    leads = leads[np.isfinite(leads)]
    if leads.size < n_boot / 2:
        return math.nan, math.nan
    low, high = np.percentile(leads, [2.5, 97.5])
    return float(low), float(high)


# ==================================================================================================
# kim-precursor: statistics over runs


def sign_test(leads) -> tuple[int, int, float]:
    """``(k_before, k_after, p)``: peaks before / after the onset, and the exact two-sided sign-test
    p-value of H0 "median lead 0" (ties dropped); ``p = 1`` without data."""
    import numpy as np
    from scipy.stats import binomtest

    leads = np.asarray(leads, float)
    leads = leads[np.isfinite(leads)]
    k_before, k_after = int((leads > 0).sum()), int((leads < 0).sum())
    n = k_before + k_after
    return k_before, k_after, float(binomtest(k_before, n, 0.5).pvalue) if n else 1.0


def median_ci(values, *, n_boot: int | None = None, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the median over runs (NaNs for fewer than 2 values)."""
    import numpy as np

    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    if values.size < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    medians = np.median(rng.choice(values, (N_BOOT if n_boot is None else n_boot, values.size)), axis=1)
    low, high = np.percentile(medians, [2.5, 97.5])
    return float(low), float(high)


def repaired_null(usable: list[RunLead], *, n_perm: int | None = None, seed: int = 0) -> dict[str, Any]:
    """Onsets re-paired with the peaks of the other runs of the same modulus and fraction.

    Returns the median lead and median ``|lead|`` of all re-paired pairs, the observed mean ``|lead|``
    of the runs in groups of two or more, and the permutation p-value of "the peak is locked to its
    own run's onset" (fraction of within-group shuffles of the peaks whose mean ``|lead|`` is no
    larger than the observed one).
    """
    import numpy as np

    groups: dict[tuple[int, float], list[RunLead]] = {}
    for r in usable:
        groups.setdefault((r.p, r.train_fraction), []).append(r)
    groups = {k: v for k, v in groups.items() if len(v) >= 2}
    if not groups:
        return {"n_runs": 0, "median_lead": math.nan, "median_abs_lead": math.nan, "observed_mean_abs_lead": math.nan,
                "locking_p": math.nan}
    pairs = [a.onset - b.peak for g in groups.values() for a in g for b in g if a is not b]
    onsets = [np.array([r.onset for r in g]) for g in groups.values()]
    peaks = [np.array([r.peak for r in g]) for g in groups.values()]
    observed = float(np.mean(np.abs(np.concatenate([o - q for o, q in zip(onsets, peaks)]))))
    rng = np.random.default_rng(seed)
    n_perm = N_BOOT if n_perm is None else n_perm
    shuffled = [float(np.mean(np.abs(np.concatenate([o - rng.permutation(q) for o, q in zip(onsets, peaks)]))))
                for _ in range(n_perm)]
    return {
        "n_runs": int(sum(len(g) for g in groups.values())), "median_lead": float(np.median(pairs)),
        "median_abs_lead": float(np.median(np.abs(pairs))), "observed_mean_abs_lead": observed,
        "locking_p": float((1 + sum(s <= observed for s in shuffled)) / (1 + n_perm)),
    }


def _gauss_loglik(rss: float, n: int) -> float:
    """Maximised Gaussian log-likelihood of ``n`` residuals with sum of squares ``rss``."""
    return -0.5 * n * (math.log(2 * math.pi * max(rss, 1e-300) / n) + 1)


def cmax_scaling(p, c_max) -> dict[str, Any]:
    """Is ``C_max`` a power law in ``p``? ``log C_max = a + b log p`` fitted by least squares.

    Returns ``b`` with its 95% t-interval (``b +- t_{n-2} se(b)``, exact for Gaussian scatter in
    ``log C``; a bootstrap within moduli of a few runs each undercovers), the one-sided p-value of
    ``b > 0`` (t-test of the slope) and ``R^2``. Against two alternatives, by AIC on the scale of
    ``C`` (models fitted in ``log C`` carry the Jacobian ``-sum log C``): a constant, and logarithmic
    growth ``C = a + b log p`` (which a power law of small exponent imitates over a short range);
    ``delta_aic_constant`` and ``delta_aic_log`` are their AIC minus the power law's.
    ``divergence``: ``b > 0`` at p < 0.05 and the power law ahead of both by more than 2.
    Fewer than :data:`MIN_MODULI` moduli: NaNs and ``divergence`` None.
    """
    import numpy as np
    from scipy.stats import linregress, t

    p, c = np.asarray(p, float), np.asarray(c_max, float)
    keep = np.isfinite(p) & np.isfinite(c) & (c > 0)
    p, c = p[keep], c[keep]
    out: dict[str, Any] = {"n_runs": int(p.size), "n_moduli": int(np.unique(p).size)}
    if np.unique(p).size < MIN_MODULI:
        return out | {"exponent": math.nan, "intercept": math.nan, "exponent_ci": [math.nan, math.nan],
                      "p_positive": math.nan, "r2": math.nan, "delta_aic_constant": math.nan,
                      "delta_aic_log": math.nan, "divergence": None}
    x, y = np.log(p), np.log(c)
    n = y.size
    power = linregress(x, y)
    p_positive = power.pvalue / 2 if power.slope > 0 else 1 - power.pvalue / 2
    half = float(t.ppf(0.975, n - 2) * power.stderr)
    jacobian = -float(np.sum(y))
    aic_power = -2 * (_gauss_loglik(float(np.sum((y - power.intercept - power.slope * x) ** 2)), n) + jacobian) + 6
    aic_const = -2 * (_gauss_loglik(float(np.sum((y - y.mean()) ** 2)), n) + jacobian) + 4
    growth = linregress(x, c)
    aic_log = -2 * _gauss_loglik(float(np.sum((c - growth.intercept - growth.slope * x) ** 2)), n) + 6
    d_const, d_log = aic_const - aic_power, aic_log - aic_power
    return out | {"exponent": float(power.slope), "intercept": float(power.intercept),
                  "exponent_ci": [float(power.slope) - half, float(power.slope) + half],
                  "p_positive": float(p_positive), "r2": float(power.rvalue**2),
                  "delta_aic_constant": float(d_const), "delta_aic_log": float(d_log),
                  "divergence": bool(p_positive < 0.05 and d_const > 2 and d_log > 2)}


# ==================================================================================================
# kim-precursor: pieces, evaluation, command


def _grok_config(preset: str):
    from thermolens.experiments.grokking.study import StudyConfig
    from thermolens.experiments.grokking.train import GrokConfig

    if preset == "quick":
        base = GrokConfig(max_steps=2500, every=50, sweep_every=500, stop_window=500, checkpoint_every=500)
        return StudyConfig(ps=(19, 31), seeds=(0, 1), train_fractions=(0.3,), base=base)
    base = GrokConfig(max_steps=50000, every=100, sweep_every=1000, stop_window=2000, checkpoint_every=1000)
    return StudyConfig(ps=(19, 31, 59, 113), seeds=(0, 1, 2, 3, 4, 5), train_fractions=(0.3,), base=base)


#: cost of one full-batch step with the thermometer, ms on one core: MS_BASE + MS_PER_PAIR * n_train
#: (docs/grokking_evidence.md: 73 ms at p = 113, fraction 0.3; measured here for p = 19 and 31)
MS_BASE, MS_PER_PAIR = 25.0, 0.013


def grok_seconds(config, cores: int = 2) -> float:
    """Upper estimate (every run to ``max_steps``) of a grokking study's wall time on ``cores`` cores."""
    total = 0.0
    for run in config.runs():
        n_train = round(run.train_fraction * run.p * run.p)
        total += run.max_steps * (MS_BASE + MS_PER_PAIR * n_train) / 1e3
    return total / max(1, min(cores, len(config.runs())))


def _precursor_pieces(preset: str) -> list[Piece]:
    from thermolens.runner.study import config_to_dict

    config = _grok_config(preset)
    return [Piece(name=f"kim-grokking-{preset}", study=GROKKING_STUDY, config=config_to_dict(config),
                  est_s=grok_seconds(config), est_gib=1.0 if preset == "quick" else 2.0)]


def _variants_of() -> list[Choice]:
    """The analyst's choices the issue names, and those the verdict was found to depend on."""
    loose = GrokCriterion(min_delay_steps=500.0, min_delay_fraction=0.25, max_midway_gain=0.5)
    strict = GrokCriterion(min_delay_steps=2000.0, min_delay_fraction=0.75, max_midway_gain=0.1)
    return [
        Choice("onset at test accuracy 0.9", onset="acc90"),
        Choice("onset at the sigmoid midpoint", onset="sigmoid"),
        Choice("onset at the test-loss drop", onset="loss_drop"),
        Choice("peak smoothing 1 reading", smooth_points=1.0),
        Choice("peak smoothing 4 readings", smooth_points=4.0),
        Choice("peak prominence >= 2 x noise", noise_factor=2.0),
        Choice("peak prominence >= 5 x noise", noise_factor=5.0),
        Choice("C on training inputs", series="train_C_eq"),
        Choice("C over all query rows", series="test_C_all"),
        Choice("pooled C (one ensemble over inputs)", series="test_C_pooled"),
        Choice("looser grokking criterion (500 steps, 25% of t_gen, midway gain < 0.5)", criterion=loose),
        Choice("stricter grokking criterion (2000 steps, 75% of t_gen, midway gain < 0.1)", criterion=strict),
    ]


def _direction(k_before: int, k_after: int) -> str:
    return "supported" if k_before >= k_after else "contradicted"


def _if_not_rejected(n: int) -> str:
    """Below :data:`MIN_RUNS` runs the sign test cannot reach 0.05 even when they all agree: a
    non-rejection then says nothing ("inconclusive"), above it "not supported"."""
    return "not supported" if n >= MIN_RUNS else "inconclusive"


def _histories(result) -> dict[str, Any]:
    """Each run's history frame, by run name, in the order of the run table."""
    from thermolens.experiments.grokking.study import load_run_tables

    return {name: load_run_tables(result.run_dirs[name])[0] for name in result.runs["run"]}


def _read_all(result, histories: dict[str, Any], choice: Choice) -> list[RunLead]:
    return [read_run(row["run"], row, histories[row["run"]], choice) for row in result.runs.to_dict(orient="records")]


def _sweep_cmax(run_dir: Path, p: int):
    """``(steps, C_max)``: the height of the C(T) peak, mean over heads, at each sweep checkpoint."""
    from thermolens.experiments.grokking.study import load_run_tables
    from thermolens.experiments.grokking.train import critical_temperatures
    from thermolens.models.hooked import nanda2023

    sweep = load_run_tables(run_dir)[1]
    if len(sweep) == 0:
        return [], []
    per_step = critical_temperatures(sweep, nanda2023(p).d_head).groupby("step")["C_max"].mean()
    return per_step.index.to_numpy(float), per_step.to_numpy(float)


def evaluate_runs(result, histories: dict[str, Any], choices: list[Choice] | None = None) -> dict[str, Any]:
    """Everything the precursor evidence is built from, as plain values."""
    import numpy as np

    primary = _read_all(result, histories, PRIMARY)
    usable = [r for r in primary if r.usable]
    k_before, k_after, p_value = sign_test([r.lead for r in usable])
    variants = []
    for choice in choices if choices is not None else _variants_of():
        reads = [r for r in _read_all(result, histories, choice) if r.usable]
        kb, ka, pv = sign_test([r.lead for r in reads])
        variants.append({"choice": choice.label, "n": len(reads), "k_before": kb, "k_after": ka, "p_value": pv,
                         "median_lead": float(np.median([r.lead for r in reads])) if reads else math.nan})
    corr = [r for r in _read_all(result, histories, replace(PRIMARY, label="C - null", series="test_C_corr"))
            if r.usable]
    kb, ka, pv = sign_test([r.lead for r in corr])
    leads = [r.lead for r in usable]
    return {
        "runs": primary, "usable": usable, "k_before": k_before, "k_after": k_after, "p_value": p_value,
        "median_lead": float(np.median(leads)) if leads else math.nan, "median_ci": median_ci(leads),
        "median_relative_lead": float(np.median([r.lead / r.t_gen for r in usable])) if usable else math.nan,
        "variants": variants, "repaired": repaired_null(usable),
        "C_minus_null": {"n": len(corr), "k_before": kb, "k_after": ka, "p_value": pv},
        "cmax": cmax_scaling([r.p for r in usable], [r.C_max for r in usable]),
    }


def _needs_full(stats: dict[str, Any], preset: str) -> str | None:
    """What the full preset would run, when the quick runs are too few to decide (None in full:
    there the test's p-value carries the lack of runs)."""
    usable = stats["usable"]
    n_moduli = len({r.p for r in usable})
    if preset == "full" or (len(usable) >= MIN_RUNS and n_moduli >= MIN_MODULI):
        return None
    full = _grok_config("full")
    return (
        f"{len(usable)} {preset} run(s) grok with a C peak (need {MIN_RUNS}) over {n_moduli} moduli (need "
        f"{MIN_MODULI}); the full preset runs p in {{{', '.join(map(str, full.ps))}}} at training fraction 0.3, "
        f"{len(full.seeds)} seeds, up to {full.base.max_steps:,} full-batch steps each (early stop "
        f"{full.base.stop_window:,} steps after test acc >= 0.99): at most {grok_seconds(full) / 3600:.1f} h on 2 cores"
    )


def _reason(stats: dict[str, Any]) -> str:
    runs, usable = stats["runs"], stats["usable"]
    fit = stats["cmax"]
    if fit["divergence"] is None:
        scaling = f"C_max against p needs {MIN_MODULI} moduli with grokking runs (have {fit['n_moduli']})"
    else:
        lo, hi = fit["exponent_ci"]
        scaling = (f"C_max ~ p^{fit['exponent']:.2f} (95% CI {lo:.2f} to {hi:.2f}; AIC ahead of a constant by "
                   f"{fit['delta_aic_constant']:.1f}, of log growth by {fit['delta_aic_log']:.1f}): a power-law "
                   f"divergence is {'' if fit['divergence'] else 'not '}supported")
    if not usable:
        silent = [r for r in runs if not math.isfinite(r.t_gen) and math.isfinite(r.peak)]
        aside = ""
        if silent:
            aside = (f"; C peaks all the same in {len(silent)} of the {sum(not math.isfinite(r.t_gen) for r in runs)} "
                     f"runs that never reach test acc 0.9 (steps {min(r.peak for r in silent):.0f}-"
                     f"{max(r.peak for r in silent):.0f})")
        return (f"None of the {len(runs)} runs groks by the criterion (test accuracy must lag the training fit by a "
                f"clear delay), so the precursor is untested{aside}; {scaling}.")
    n = stats["k_before"] + stats["k_after"]
    return (f"The C peak comes before the onset (test acc 0.5) in {stats['k_before']} and after it in "
            f"{stats['k_after']} of {len(usable)} grokking runs (median lead {stats['median_lead']:.0f} steps, "
            f"sign test p = {stats['p_value']:.3g}); {scaling}"
            + (f"; under {MIN_RUNS} runs the sign test cannot decide." if n < MIN_RUNS else "."))


def _evaluate_precursor(preset: str, pieces: dict[str, Path], claim_dir: Path) -> Evidence:
    from thermolens import io
    from thermolens.report import claims_kim as figures
    from thermolens.runner.study import load_piece

    (name,) = [p.name for p in _precursor_pieces(preset)]
    result = load_piece(GROKKING_STUDY, pieces[name])
    histories = _histories(result)
    stats = evaluate_runs(result, histories)
    usable = stats["usable"]
    n = stats["k_before"] + stats["k_after"]
    decision = Decision(
        test=(f"H0: C peak and onset (test acc 0.5) simultaneous, median lead 0; exact two-sided sign test over "
              f"{n} grokking runs with a peak ({stats['k_before']} before, {stats['k_after']} after)"),
        p_value=stats["p_value"], if_rejected=_direction(stats["k_before"], stats["k_after"]),
        if_not_rejected=_if_not_rejected(n),
    )
    variants = tuple(
        Variant(choice=v["choice"], effect=v["median_lead"], p_value=v["p_value"],
                if_rejected=_direction(v["k_before"], v["k_after"]),
                if_not_rejected=_if_not_rejected(v["k_before"] + v["k_after"]))
        for v in stats["variants"]
    )
    intervals: dict[str, tuple[float, float]] = {}
    panels = []
    for r in stats["runs"]:
        history = histories[r.run]
        if r.usable:
            intervals[r.run] = lead_interval(history)
        sweep_steps, sweep_cmax = _sweep_cmax(result.run_dirs[r.run], r.p)
        panels.append({
            "title": f"p={r.p} seed={r.seed} frac={r.train_fraction:g}" + ("" if r.groks else " (no grok)"),
            "steps": history["step"].to_numpy(float), "test_acc": history["test_acc"].to_numpy(float),
            "train_acc": history["train_acc"].to_numpy(float), "C": history[PRIMARY.series].to_numpy(float),
            "sweep_steps": sweep_steps, "sweep_cmax": sweep_cmax, "onset": r.onset, "peak": r.peak,
            "t_fit": r.t_fit, "t_gen": r.t_gen, "groks": r.groks,
        })
    needs_full = _needs_full(stats, preset)
    per_run = [{**{k: getattr(r, k) for k in ("run", "p", "seed", "train_fraction", "steps", "t_fit", "t_gen",
                                              "test_acc_at_fit", "groks", "onset", "peak", "C_max", "lead")},
                "lead_ci": list(intervals.get(r.run, (math.nan, math.nan)))} for r in stats["runs"]]
    numbers = {
        "criterion": GrokCriterion().describe(),
        "n_runs": len(stats["runs"]), "n_generalized_acc90": sum(math.isfinite(r.t_gen) for r in stats["runs"]),
        "n_grok": sum(r.groks for r in stats["runs"]), "n_usable": len(usable),
        "n_peak_without_generalization": sum(not math.isfinite(r.t_gen) and math.isfinite(r.peak)
                                             for r in stats["runs"]),
        "k_before": stats["k_before"], "k_after": stats["k_after"],
        "median_relative_lead": stats["median_relative_lead"],
        "n_lead_ci_above_0": sum(1 for lo, _ in intervals.values() if lo > 0),
        "n_lead_ci_below_0": sum(1 for _, hi in intervals.values() if hi < 0),
        "repaired_null": stats["repaired"], "C_minus_null": stats["C_minus_null"],
        "cmax_vs_p": stats["cmax"], "cmax_power_law_divergence": stats["cmax"]["divergence"],
        "per_run": per_run,
    }
    fig = figures.plot_precursor(panels, per_run, stats["cmax"])
    io.save_figure(fig, Path(claim_dir) / "kim-precursor.png")
    return Evidence(
        effect=stats["median_lead"], ci=stats["median_ci"],
        effect_label="median lead = onset (test acc 0.5) - C peak, steps, over grokking runs",
        reason=_reason(stats), null=0.0,
        null_label="peak simultaneous with the onset (H0 of the sign test); re-paired null in numbers",
        decision=decision, variants=variants, numbers=numbers, figure="kim-precursor.png", needs_full=needs_full,
    )


def _precursor_command(preset: str) -> str:
    config = _grok_config(preset)
    base = config.base
    grok = (f"thermolens grok --p {','.join(map(str, config.ps))} --seeds {','.join(map(str, config.seeds))} "
            f"--train-fraction {','.join(f'{f:g}' for f in config.train_fractions)} --max-steps {base.max_steps} "
            f"--every {base.every} --sweep-every {base.sweep_every} --stop-window {base.stop_window} "
            f"--checkpoint-every {base.checkpoint_every} --workers 2 --out runs/kim-grok-{preset}")
    return f"{grok} && thermolens claims --only kim-precursor --preset {preset} --out runs/claims"


PRECURSOR = Claim(
    id="kim-precursor", source=SOURCE,
    statement=("The specific-heat peak of attention precedes generalization in grokking on modular addition "
               "(p = 19..113), and C_max shows no power-law divergence in p."),
    pieces=_precursor_pieces, evaluate=_evaluate_precursor, command=_precursor_command,
)

CLAIMS: tuple[Claim, ...] = (CANONICAL, PRECURSOR)
