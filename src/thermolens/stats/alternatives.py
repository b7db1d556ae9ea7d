"""Alternatives to the power law above xmin, and likelihood-ratio tests against it (arXiv:0706.1062 §5).

Every law is normalised on x >= xmin (Clauset et al. 2009, Table 2.1). Continuous densities::

    exponential            lam e^{-lam (x - xmin)}
    lognormal              lognormal(mu, sigma) density / P(X >= xmin)
    stretched_exponential  beta lam^beta x^{beta-1} e^{-(lam x)^beta} / e^{-(lam xmin)^beta}
                           (fitted as rate = beta (lam xmin)^beta and beta, finite as beta -> 0)
    truncated_power_law    x^-alpha e^{-lam x} / int_xmin^inf t^-alpha e^{-lam t} dt

Discrete laws (integers >= xmin): the truncated power law is x^-alpha e^{-lam x} normalised by its sum
(the seed paper's Theorem 2 form P(s) ~ s^-tau exp(-s/s_c), s_c = 1/lam); exponential, lognormal and
stretched exponential put on each integer k the continuous mass of [k - 1/2, k + 1/2], renormalised to
[xmin - 1/2, inf) (for the exponential this is exactly the geometric law).

Tests. Non-nested pairs: Vuong's statistic, R = sum_i (l1_i - l2_i), normalised R / (sqrt(n) sigma),
p = erfc(|R| / sqrt(2 n sigma^2)) (Clauset eq. 5.4). Power law vs truncated power law is nested
(lam = 0 on the boundary): 2(l_tpl - l_pl) is distributed as 1/2 chi2_0 + 1/2 chi2_1 (Self & Liang
1987), so p = 1/2 P(chi2_1 >= 2(l_tpl - l_pl)), and p = 1 when the two likelihoods are equal.
R > 0 favours the power law, R < 0 the alternative.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike
from scipy import integrate, optimize, special

from thermolens.stats._data import as_sample, check_tail
from thermolens.stats.powerlaw import PowerLawFit, loglikelihoods as power_law_loglikelihoods

ALTERNATIVES = ("exponential", "lognormal", "stretched_exponential", "truncated_power_law")
_DISCRETE_SUM_TERMS = 4096  # exact terms of the discrete truncated-power-law sum before the integral tail


@dataclass(frozen=True)
class AlternativeFit:
    """A maximum-likelihood fit of one alternative law to the tail x >= xmin.

    ``at_bound`` is True when a parameter sits at the edge of its allowed range (for the truncated power
    law, lam = 0 means the fit is the pure power law)."""

    name: str
    params: dict[str, float]
    xmin: float
    discrete: bool
    n_tail: int
    loglikelihood: float
    converged: bool
    at_bound: bool


@dataclass(frozen=True)
class Comparison:
    """Power law vs ``alternative`` on the same tail. ``favours``: "power_law", the alternative's name, or
    "neither" when p > ``significance``."""

    alternative: str
    loglikelihood_ratio: float
    normalized_ratio: float
    p_value: float
    nested: bool
    favours: str
    alternative_fit: AlternativeFit
    significance: float = field(default=0.1)


# --------------------------------------------------------------------------------------------------
# log-normaliser of the truncated power law


def _log_tpl_integral(alpha: float, lam: float, a: float) -> float:
    """log int_a^inf t^-alpha e^{-lam t} dt (a > 0), via t = a e^u so the integrand is smooth and bounded."""
    z = lam * a
    if z == 0.0:
        return (1 - alpha) * np.log(a) - np.log(alpha - 1) if alpha > 1 else np.inf
    s = 1.0 - alpha
    u_peak = np.log(s / z) if (s > 0 and s / z > 1) else 0.0
    g_peak = s * u_peak - z * np.exp(u_peak)
    u_end = max(u_peak, np.log(80.0 / z + 1.0)) + 1.0
    if s < 0:
        u_end = min(u_end, u_peak + 80.0 / -s)
    val, _ = integrate.quad(
        lambda u: np.exp(s * u - z * np.exp(u) - g_peak), 0.0, u_end, points=[u_peak] if 0 < u_peak < u_end else None,
        limit=200, epsabs=0.0, epsrel=1e-11,
    )
    return s * np.log(a) + g_peak + np.log(val)


def _log_tpl_norm(alpha: float, lam: float, xmin: float, discrete: bool) -> float:
    if not discrete:
        return _log_tpl_integral(alpha, lam, xmin)
    if lam == 0.0:
        return float(np.log(special.zeta(alpha, xmin))) if alpha > 1 else np.inf
    k = xmin + np.arange(_DISCRETE_SUM_TERMS, dtype=np.float64)
    logs = -alpha * np.log(k) - lam * k
    head = special.logsumexp(logs)
    tail = _log_tpl_integral(alpha, lam, xmin + _DISCRETE_SUM_TERMS - 0.5)  # midpoint rule, error ~f''/24
    return float(np.logaddexp(head, tail))


# --------------------------------------------------------------------------------------------------
# pointwise log-likelihoods


def _expm1_over(beta: float, u: np.ndarray) -> np.ndarray:
    """(e^{beta u} - 1)/beta, accurate as beta -> 0 (where it tends to u)."""
    return np.expm1(beta * u) / beta


def _stretched_params(rate: float, beta: float, ref: float) -> dict[str, float]:
    """Stretched exponential S(x)/S(ref) = exp(-rate ((x/ref)^beta - 1)/beta), i.e. exp(-(lam x)^beta + (lam ref)^beta)
    with lam = (rate/beta)^(1/beta)/ref. The (rate, beta) form stays finite in the power-law limit beta -> 0
    (S -> (x/ref)^-rate), where lam overflows."""
    with np.errstate(over="ignore"):
        lam = float(np.exp((np.log(rate) - np.log(beta)) / beta - np.log(ref)))
    return {"rate": rate, "beta": beta, "lam": lam}


def _log_surv(name: str, p: dict[str, float], x: np.ndarray, ref: float) -> np.ndarray:
    """log P(X > x) of the (untruncated) continuous law, up to a constant; ``ref`` is the reference point
    of the stretched exponential's parameterisation (xmin, or xmin - 1/2 for discrete data)."""
    if name == "exponential":
        return -p["lam"] * (x - ref)
    if name == "lognormal":
        return special.log_ndtr(-(np.log(x) - p["mu"]) / p["sigma"])
    if name == "stretched_exponential":
        return -p["rate"] * _expm1_over(p["beta"], np.log(x / ref))
    raise ValueError(f"unknown law {name!r}")


def loglikelihoods(name: str, params: dict[str, float], x: ArrayLike, xmin: float, *, discrete: bool) -> np.ndarray:
    """Pointwise log p(x) of law ``name`` (``ALTERNATIVES`` or "power_law") for tail values x >= xmin."""
    x = np.asarray(x, dtype=np.float64)
    if name == "power_law":
        return power_law_loglikelihoods(x, params["alpha"], xmin, discrete=discrete)
    if name == "truncated_power_law":
        a, lam = params["alpha"], params["lam"]
        return -a * np.log(x) - lam * x - _log_tpl_norm(a, lam, xmin, discrete)
    if discrete:
        ref = xmin - 0.5
        lo = _log_surv(name, params, x - 0.5, ref)
        hi = _log_surv(name, params, x + 0.5, ref)
        with np.errstate(divide="ignore"):
            return lo + np.log(-np.expm1(hi - lo)) - _log_surv(name, params, np.array(ref), ref)
    if name == "exponential":
        return np.log(params["lam"]) - params["lam"] * (x - xmin)
    if name == "lognormal":
        mu, sigma = params["mu"], params["sigma"]
        zz = (np.log(x) - mu) / sigma
        return (
            -np.log(x) - np.log(sigma) - 0.5 * np.log(2 * np.pi) - 0.5 * zz**2
            - special.log_ndtr(-(np.log(xmin) - mu) / sigma)
        )
    if name == "stretched_exponential":
        rate, beta = params["rate"], params["beta"]
        u = np.log(x / xmin)
        return np.log(rate) + beta * u - np.log(x) - rate * _expm1_over(beta, u)
    raise ValueError(f"unknown law {name!r}; choose from {', '.join(ALTERNATIVES)}")


# --------------------------------------------------------------------------------------------------
# maximum-likelihood fits


def _tail_of(x: ArrayLike, xmin: float, discrete: bool) -> np.ndarray:
    data = as_sample(x, discrete=discrete)
    if xmin > data[-1]:
        raise ValueError(f"xmin={xmin:g} is above the largest value {data[-1]:g}; lower xmin")
    tail = data[data >= xmin]
    check_tail(tail.size, xmin)
    return tail


def _minimise(negll, starts, bounds):
    best = None
    for s0 in starts:
        res = optimize.minimize(negll, np.asarray(s0, dtype=np.float64), method="L-BFGS-B", bounds=bounds)
        if best is None or (np.isfinite(res.fun) and res.fun < best.fun):
            best = res
    return best


def _at_bound(theta, bounds) -> bool:
    return any(
        (lo is not None and abs(t - lo) < 1e-6 * max(1.0, abs(lo))) or (hi is not None and abs(t - hi) < 1e-6 * max(1.0, abs(hi)))
        for t, (lo, hi) in zip(theta, bounds)
    )


def fit_truncated_power_law(x: ArrayLike, *, xmin: float, discrete: bool = False, alpha0: float | None = None) -> AlternativeFit:
    """MLE of p(x) ~ x^-alpha e^{-lam x} on x >= xmin (cutoff s_c = 1/lam). Uses the sufficient statistics
    sum(log x) and sum(x), so each likelihood evaluation costs O(1) after one pass over the data."""
    tail = _tail_of(x, xmin, discrete)
    n = tail.size
    mean_log, mean_x = float(np.mean(np.log(tail))), float(np.mean(tail))
    scale = mean_x  # lam = zeta / scale keeps the optimiser's variables O(1)

    def negll(theta):
        a, zeta = theta
        lam = zeta / scale
        norm = _log_tpl_norm(a, lam, xmin, discrete)
        v = a * mean_log + lam * mean_x + norm
        return v if np.isfinite(v) else 1e300

    bounds = [(-10.0, 20.0), (0.0, 1e4)]
    a0 = alpha0 if alpha0 is not None else 1.0 + 1.0 / max(mean_log - np.log(xmin), 1e-3)
    res = _minimise(negll, [(min(max(a0, 1.001), 19.0), 0.0), (a0, 0.05), (max(a0 - 0.5, 0.0), 1.0)], bounds)
    a, zeta = res.x
    return AlternativeFit(
        name="truncated_power_law",
        params={"alpha": float(a), "lam": float(zeta / scale), "cutoff": float(scale / zeta) if zeta > 0 else np.inf},
        xmin=float(xmin),
        discrete=discrete,
        n_tail=int(n),
        loglikelihood=float(-res.fun * n),
        converged=bool(res.success),
        at_bound=_at_bound(res.x, bounds),
    )


def fit_alternative(x: ArrayLike, name: str, *, xmin: float, discrete: bool = False) -> AlternativeFit:
    """MLE of one of ``ALTERNATIVES`` to the tail x >= xmin."""
    if name == "truncated_power_law":
        return fit_truncated_power_law(x, xmin=xmin, discrete=discrete)
    if name not in ALTERNATIVES:
        raise ValueError(f"unknown alternative {name!r}; choose from {', '.join(ALTERNATIVES)}")
    tail = _tail_of(x, xmin, discrete)
    values, counts = np.unique(tail, return_counts=True)
    n = tail.size
    at_bound, converged = False, True
    if name == "exponential":
        if discrete:  # geometric: e^-lam = kbar / (1 + kbar)
            kbar = float(np.mean(tail - xmin))
            params = {"lam": float(np.log1p(1.0 / kbar))}
        else:
            params = {"lam": float(1.0 / np.mean(tail - xmin))}
    else:
        if name == "lognormal":
            logs = np.log(tail)
            starts = [(float(logs.mean()), float(np.log(max(logs.std(), 1e-3))))]
            starts.append((float(np.log(xmin)) - 1.0, float(np.log(max(logs.std(), 1e-3))) + 0.5))
            bounds = [(None, None), (-12.0, 6.0)]
            unpack = lambda t: {"mu": float(t[0]), "sigma": float(np.exp(t[1]))}  # noqa: E731
        else:
            ref = xmin - 0.5 if discrete else xmin
            a_pl = 1.0 + 1.0 / max(float(np.mean(np.log(tail / ref))), 1e-6)
            starts = [(np.log(a_pl - 1.0), np.log(1e-4)), (0.0, np.log(0.5)), (0.0, 0.0)]
            bounds = [(-30.0, 30.0), (np.log(1e-9), np.log(20.0))]
            unpack = lambda t: _stretched_params(float(np.exp(t[0])), float(np.exp(t[1])), ref)  # noqa: E731

        def negll(theta):
            v = -np.dot(counts, loglikelihoods(name, unpack(theta), values, xmin, discrete=discrete)) / n
            return v if np.isfinite(v) else 1e300

        res = _minimise(negll, starts, bounds)
        params, converged, at_bound = unpack(res.x), bool(res.success), _at_bound(res.x, bounds)
    ll = float(np.dot(counts, loglikelihoods(name, params, values, xmin, discrete=discrete)))
    return AlternativeFit(name, params, float(xmin), discrete, int(n), ll, converged, at_bound)


# --------------------------------------------------------------------------------------------------
# likelihood-ratio tests


def vuong(l1: np.ndarray, l2: np.ndarray) -> tuple[float, float, float]:
    """(R, R/(sqrt(n) sigma), two-sided p) for pointwise log-likelihoods of two non-nested models."""
    d = np.asarray(l1, dtype=np.float64) - np.asarray(l2, dtype=np.float64)
    n = d.size
    r = float(d.sum())
    sigma = float(d.std())
    if sigma == 0.0:
        return r, 0.0, 1.0
    normalized = r / (np.sqrt(n) * sigma)
    return r, float(normalized), float(special.erfc(abs(normalized) / np.sqrt(2.0)))


def compare(fit: PowerLawFit, x: ArrayLike, alternative: str, *, significance: float = 0.1) -> Comparison:
    """Likelihood-ratio test of the power law ``fit`` against ``alternative`` on the tail x >= fit.xmin."""
    if fit.xmax is not None:
        raise ValueError("comparisons are implemented for power laws without xmax; refit without xmax to compare")
    if not 0 < significance < 1:
        raise ValueError(f"significance={significance} must lie in (0, 1)")
    tail = _tail_of(x, fit.xmin, fit.discrete)
    if tail.size != fit.n_tail:
        raise ValueError(f"x has {tail.size} points above xmin but the fit had {fit.n_tail}; pass the data that was fitted")
    if alternative == "truncated_power_law":
        alt = fit_truncated_power_law(tail, xmin=fit.xmin, discrete=fit.discrete, alpha0=fit.alpha)
    else:
        alt = fit_alternative(tail, alternative, xmin=fit.xmin, discrete=fit.discrete)
    l_pl = power_law_loglikelihoods(tail, fit.alpha, fit.xmin, discrete=fit.discrete)
    l_alt = loglikelihoods(alt.name, alt.params, tail, fit.xmin, discrete=fit.discrete)
    nested = alternative == "truncated_power_law"
    if nested:
        r = float(l_pl.sum() - l_alt.sum())
        lr = max(0.0, -2.0 * r)
        p = 1.0 if lr == 0.0 else float(0.5 * special.chdtrc(1, lr))
        sd = float((l_pl - l_alt).std())
        normalized = r / (np.sqrt(tail.size) * sd) if sd > 0 else 0.0
    else:
        r, normalized, p = vuong(l_pl, l_alt)
    favours = "neither" if p > significance else ("power_law" if r > 0 else alternative)
    return Comparison(alternative, r, float(normalized), p, nested, favours, alt, significance)


def survival(name: str, params: dict[str, float], x: ArrayLike, xmin: float, *, discrete: bool) -> np.ndarray:
    """P(X >= x | X >= xmin) of law ``name`` (``ALTERNATIVES`` or "power_law") at points x >= xmin: the
    model curve drawn over the empirical CCDF."""
    x = np.asarray(x, dtype=np.float64)
    if name == "power_law":
        a = params["alpha"]
        return special.zeta(a, x) / special.zeta(a, xmin) if discrete else (x / xmin) ** (1.0 - a)
    if name == "truncated_power_law":
        a, lam = params["alpha"], params["lam"]
        norm = _log_tpl_norm(a, lam, xmin, discrete)
        return np.array([np.exp(_log_tpl_norm(a, lam, float(v), discrete) - norm) for v in x.ravel()]).reshape(x.shape)
    if name not in ALTERNATIVES:
        raise ValueError(f"unknown law {name!r}; choose from power_law, {', '.join(ALTERNATIVES)}")
    ref = xmin - 0.5 if discrete else xmin
    return np.exp(_log_surv(name, params, x - (xmin - ref), ref) - _log_surv(name, params, np.array(ref), ref))


@dataclass(frozen=True)
class TruncatedPowerLawProfile:
    """Maximum-likelihood fit of ``P(s) ~ s^-alpha exp(-lam s)`` on all sizes, with profile inference on alpha."""

    alpha: float
    lam: float
    s_c: float  # 1 / lam (inf when the fit is a pure power law)
    alpha_ci: tuple[float, float]
    p_tau: float  # H0: |alpha - tau| <= tolerance (likelihood ratio at the nearest null value)
    p_exact: float  # H0: alpha = tau
    lr_tau: float  # 2 (l_max - l(tau))
    lam_tau: float  # cutoff of the best fit with alpha = tau
    s_min: float
    n: int


def _tpl_loglik(values: np.ndarray, counts: np.ndarray, alpha: float, lam: float, smin: float) -> float:
    with np.errstate(all="ignore"):
        ll = float(counts @ loglikelihoods("truncated_power_law", {"alpha": alpha, "lam": lam}, values, smin,
                                           discrete=True))
    return ll if np.isfinite(ll) else -np.inf


def profile_truncated_power_law(sizes: ArrayLike, *, tau: float = 1.5, tolerance: float = 0.0,
                                level: float = 0.95) -> TruncatedPowerLawProfile:
    """The discrete law ``P(s) = s^-alpha exp(-lam s) / Z`` on every integer ``s >= min(sizes)`` (the seed
    paper's Theorem 2 form, Aranda Barois 2024, fitted without choosing an xmin), by maximum
    likelihood, with the profile-likelihood interval of ``alpha`` and likelihood-ratio tests of ``alpha ~ tau``.

    The profile ``l(a) = max_{lam >= 0} log L(a, lam)`` (``lam = 0`` only where the law normalises, a > 1);
    ``2 (l_max - l(a))`` is chi2 with 1 dof at the true ``a`` (Wilks), so the interval is where it stays below
    the ``level`` quantile. ``p_tau`` tests H0: ``|alpha - tau| <= tolerance`` at the null value nearest to the
    estimate (1 when the estimate lies inside), ``p_exact`` H0: ``alpha = tau``.
    """
    import warnings

    from scipy.stats import chi2

    sizes = np.asarray(sizes, dtype=np.float64)
    if sizes.size < 2 or not np.all(np.isfinite(sizes)) or np.any(sizes < 1):
        raise ValueError(f"need at least 2 finite sizes >= 1, got {sizes.size} values; pass avalanche sizes")
    values, counts = np.unique(sizes, return_counts=True)
    counts = counts.astype(np.float64)
    smin, scale = float(values[0]), float(sizes.mean())

    def profile(a: float) -> tuple[float, float]:
        res = optimize.minimize_scalar(lambda u: -_tpl_loglik(values, counts, a, np.exp(u) / scale, smin),
                                       bounds=(-25.0, 12.0), method="bounded", options={"xatol": 1e-7})
        best, lam = -float(res.fun), float(np.exp(res.x)) / scale
        if a > 1:
            at_zero = _tpl_loglik(values, counts, a, 0.0, smin)
            if at_zero > best:
                best, lam = at_zero, 0.0
        return best, lam

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        free = fit_truncated_power_law(sizes, xmin=smin, discrete=True)
        alpha = float(free.params["alpha"])
        l_max, lam = profile(alpha)
        l_max = max(l_max, free.loglikelihood)
        cut = chi2.ppf(level, 1) / 2

        def excess(a: float) -> float:
            return l_max - profile(a)[0] - cut

        bounds = []
        for sign in (-1.0, 1.0):
            step, edge = 0.02, alpha
            while step < 20 and excess(alpha + sign * step) < 0:
                edge, step = alpha + sign * step, step * 2
            far = alpha + sign * step
            bounds.append(optimize.brentq(excess, edge, far, xtol=1e-4) if excess(far) >= 0 else far)
        l_tau, lam_tau = profile(tau)
        nearest = min(max(alpha, tau - tolerance), tau + tolerance)
        l_near = l_max if nearest == alpha else profile(nearest)[0]
    stat, stat_near = max(0.0, 2 * (l_max - l_tau)), max(0.0, 2 * (l_max - l_near))
    return TruncatedPowerLawProfile(
        alpha=alpha, lam=lam, s_c=1 / lam if lam > 0 else float("inf"), alpha_ci=(bounds[0], bounds[1]),
        p_tau=float(chi2.sf(stat_near, 1)) if nearest != alpha else 1.0, p_exact=float(chi2.sf(stat, 1)),
        lr_tau=stat, lam_tau=lam_tau, s_min=smin, n=int(sizes.size),
    )
