"""Statistics of one set of cascades, and whether a claimed power law beats the null models.

Everything is delegated to ``thermolens.stats``: discrete power-law fit of sizes with the KS-optimal
xmin (Clauset, Shalizi & Newman 2009, arXiv:0706.1062), Clauset's bootstrap goodness of fit,
likelihood ratios against the exponential, lognormal and truncated power law on that tail, the seed
paper's form ``P(s) ~ s^-tau exp(-s/s_c)`` fitted over *all* sizes (``tpl_alpha``, ``s_c = 1/lam``, and
its nested likelihood-ratio test against the pure power law over the same range, ``p_cutoff``: the
KS-chosen tail often starts past the bend, where a cutoff is invisible), the duration exponent and the
crackling-noise relation ``(tau_t - 1)/(tau - 1) = gamma`` (Sethna, Dahmen & Myers 2001,
arXiv:cond-mat/0102091; mean-field branching: tau = 3/2, tau_t = 2, gamma = 2).

A duration exponent is only reported when the durations span at least a decade (max/min >= 10): six
layers of depth cannot show a power law in time, and a number fitted to five values would mislead.

Verdicts:

``is_power_law``  the size tail beats the exponential in the likelihood-ratio test (R > 0, p <= 0.1)
                  and, when the bootstrap ran, is plausible (p_gof > 0.1).
``beats_null``    the real sizes are a power law, the null's are not (or have a tau more than
                  2 combined standard errors away), and a two-sample KS test tells the two size
                  distributions apart (p < 0.01).
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, fields

import numpy as np
from scipy.integrate import IntegrationWarning

from thermolens import stats
from thermolens.experiments.avalanches.cascades import Cascades

__all__ = ["AvalancheStats", "fit_cascades", "ks_p_value", "beats_null", "MIN_AVALANCHES"]

MIN_AVALANCHES = 100  # stats.crackling_relation's minimum; also enough for a 50-point tail at xmin > 1
ALTERNATIVES = ("exponential", "lognormal", "truncated_power_law")
SIGNIFICANCE = 0.1  # Clauset et al.'s threshold, for both the bootstrap and the likelihood ratios
_NAN = float("nan")


@dataclass(frozen=True)
class AvalancheStats:
    """Cascade statistics of one source (the model, or a null). NaN where a quantity could not be
    estimated; ``note`` says why. Branching fields are filled in by the caller (they belong to the
    count lattice, not to the cascades)."""

    source: str
    lattice: str
    n_avalanches: int
    n_censored: int
    tau: float = _NAN
    tau_stderr: float = _NAN
    xmin: float = _NAN
    n_tail: int = 0
    ks_distance: float = _NAN
    gof_p: float = _NAN
    gof_n_boot: int = 0
    tpl_xmin: float = _NAN
    tpl_alpha: float = _NAN
    s_c: float = _NAN
    lr_cutoff: float = _NAN
    p_cutoff: float = _NAN
    lr_exponential: float = _NAN
    p_exponential: float = _NAN
    lr_lognormal: float = _NAN
    p_lognormal: float = _NAN
    lr_truncated: float = _NAN
    p_truncated: float = _NAN
    tau_duration: float = _NAN
    tau_duration_stderr: float = _NAN
    duration_xmin: float = _NAN
    gamma_fit: float = _NAN
    gamma_predicted: float = _NAN
    crackling_deviation_sigma: float = _NAN
    is_power_law: bool = False
    branching_ratio: float = _NAN
    branching_ratio_stderr: float = _NAN
    branching_ratio_mr: float = _NAN
    susceptibility: float = _NAN
    mean_activity: float = _NAN
    ks_p_vs_model: float = _NAN  # nulls: two-sample KS p-value of their sizes against the model's
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, row: dict) -> AvalancheStats:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in row.items() if k in names})


def _decade(values: np.ndarray) -> bool:
    return values.size > 0 and values.max() >= 10 * values.min()


def fit_cascades(
    c: Cascades, *, source: str, n_boot: int = 0, seed: int = 0, n_jobs: int | None = None,
    require: bool = False, context: str = "", alternatives: tuple[str, ...] = ALTERNATIVES,
) -> AvalancheStats:
    """Fits of ``c``'s sizes and durations (see module doc). With ``require`` too few cascades raise a
    ``ValueError`` (saying how many there are and how many are needed), else the fields stay NaN.
    ``alternatives``: the laws compared with the power law on its tail (scans pass fewer: each costs an
    optimisation; the exponential, which ``is_power_law`` needs, is closed form)."""
    base = dict(source=source, lattice=c.lattice, n_avalanches=c.n, n_censored=c.n_censored)
    if c.n < MIN_AVALANCHES or np.unique(c.sizes).size < 3:
        msg = (f"only {c.n} complete avalanches{context} (and {c.n_censored} censored); need at least "
               f"{MIN_AVALANCHES} for a fit: pass more tokens (--max-tokens), raise --threshold if most sites are "
               "active (cascades merge), lower it if few are")
        if require:
            raise ValueError(msg)
        return AvalancheStats(**base, note=msg)
    sizes = c.sizes
    try:
        fit = stats.fit_power_law(sizes, discrete=True)
    except ValueError as exc:
        if require:
            raise ValueError(f"cannot fit the avalanche sizes{context}: {exc}") from None
        return AvalancheStats(**base, note=str(exc))
    out = dict(base, tau=fit.alpha, tau_stderr=fit.alpha_stderr, xmin=fit.xmin, n_tail=fit.n_tail,
               ks_distance=fit.ks_distance)
    notes = []
    lr = {}
    for name in dict.fromkeys(("exponential", *alternatives)):
        try:
            with warnings.catch_warnings():
                # quadrature of the truncated law's normalisation far in its tail may warn; the fit
                # reports non-convergence itself (AlternativeFit.converged)
                warnings.simplefilter("ignore", IntegrationWarning)
                warnings.simplefilter("ignore", RuntimeWarning)
                cmp = stats.compare(fit, sizes, name, significance=SIGNIFICANCE)
        except ValueError as exc:
            notes.append(f"{name}: {exc}")
            continue
        lr[name] = cmp
    if "exponential" in lr:
        out.update(lr_exponential=lr["exponential"].loglikelihood_ratio, p_exponential=lr["exponential"].p_value)
    if "lognormal" in lr:
        out.update(lr_lognormal=lr["lognormal"].loglikelihood_ratio, p_lognormal=lr["lognormal"].p_value)
    if "truncated_power_law" in lr:
        tail_tpl = lr["truncated_power_law"]
        out.update(lr_truncated=tail_tpl.loglikelihood_ratio, p_truncated=tail_tpl.p_value)
    # The seed's form s^-tau exp(-s/s_c) over the whole range: a cutoff shows where the KS-chosen tail
    # (often far out, past the bend) cannot see it.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", IntegrationWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            whole = stats.fit_power_law(sizes, discrete=True, xmin=float(sizes.min()))
            cut = stats.compare(whole, sizes, "truncated_power_law", significance=SIGNIFICANCE)
        out.update(tpl_xmin=float(sizes.min()), tpl_alpha=cut.alternative_fit.params["alpha"],
                   s_c=cut.alternative_fit.params["cutoff"], lr_cutoff=cut.loglikelihood_ratio, p_cutoff=cut.p_value)
    except ValueError as exc:
        notes.append(f"truncated power law over all sizes: {exc}")
    if n_boot > 0:
        gof = stats.goodness_of_fit(fit, sizes, n_boot=n_boot, seed=seed, n_jobs=n_jobs)
        out.update(gof_p=gof.p_value, gof_n_boot=n_boot)
    durations = c.durations.astype(np.float64)
    if _decade(durations):
        av = stats.Avalanches(sizes=sizes, durations=durations, starts=np.zeros(c.n, dtype=np.int64), dt=1.0,
                              n_bins=0, n_events=int(sizes.sum()))
        try:
            cr = stats.crackling_relation(av)
            out.update(tau_duration=cr.tau_t, tau_duration_stderr=cr.tau_t_stderr, duration_xmin=cr.duration_fit.xmin,
                       gamma_fit=cr.gamma_fit, gamma_predicted=cr.gamma_predicted,
                       crackling_deviation_sigma=cr.deviation_sigma)
        except ValueError as exc:
            notes.append(f"crackling relation: {exc}")
            try:
                dfit = stats.fit_power_law(durations, discrete=True)
                out.update(tau_duration=dfit.alpha, tau_duration_stderr=dfit.alpha_stderr, duration_xmin=dfit.xmin)
            except ValueError as exc2:
                notes.append(f"durations: {exc2}")
    else:
        lo, hi = (int(durations.min()), int(durations.max())) if durations.size else (0, 0)
        notes.append(f"durations span {lo}..{hi}, less than a decade: no duration exponent")
    beats_exp = "exponential" in lr and lr["exponential"].favours == "power_law"
    plausible = n_boot == 0 or out.get("gof_p", 0.0) > SIGNIFICANCE
    out["is_power_law"] = bool(beats_exp and plausible and not fit.alpha_at_bound)
    out["note"] = "; ".join(notes)
    return AvalancheStats(**out)


def ks_p_value(real_sizes: np.ndarray, null_sizes: np.ndarray) -> float:
    """Two-sample KS p-value of two size samples (NaN when either is empty)."""
    from scipy.stats import ks_2samp

    if real_sizes.size == 0 or null_sizes.size == 0:
        return _NAN
    return float(ks_2samp(real_sizes, null_sizes).pvalue)


def beats_null(real: AvalancheStats, real_sizes: np.ndarray, null: AvalancheStats, null_sizes: np.ndarray) -> bool:
    """True when the model's power law is not reproduced by ``null`` (see module doc)."""
    if not real.is_power_law:
        return False
    if null.is_power_law:
        gap = abs(real.tau - null.tau)
        if not gap > 2 * np.hypot(real.tau_stderr, null.tau_stderr):
            return False
    if null_sizes.size == 0:
        return True
    return bool(ks_p_value(real_sizes, null_sizes) < 0.01)
