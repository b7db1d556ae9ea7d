"""The seed paper's two scaling claims, tested on a trained family (issue 8, parts 4 and 5).

Theorem 1 (Aranda Barois 2024): head ``k`` has a critical temperature ``T_c(k) = T_0 (d/d_0)^(-alpha_k)``
with universal exponents ``alpha_k``. ``temperature_scaling`` reads ``T*`` of every head of every
member (the scan of ``experiments.family.scan_heads``), indexes the heads of each (member, layer) by
rank of ``T*`` (``k = 0`` the coldest head, ``k = N - 1`` the hottest: heads carry no identity
across independently trained models, so the rank is the only index they share) and fits by least
squares, per ``k`` and pooled over ``k``::

    log T* = log T_0 - alpha log(d / d_0) - alpha_n log(n / n_0)

with ``n = L`` the context length (the finite-size variable of the ensemble, Karakida & Hayase 2026,
arXiv:2605.12697). Heads whose ``C(T)`` maximum sits at the grid edge are left out (``T*`` is only a
bound there). CIs are percentile intervals of a cluster bootstrap over members (a member's heads
are resampled together). Universality: an F-test of the per-``k`` model against the one with a
common ``alpha`` (per-``k`` intercepts and ``alpha_n`` kept in both). The F-test assumes independent
errors; heads of one member are not, so its p-value is indicative and the bootstrap CIs of ``alpha_k``
are reported beside it. The same fits on the Gaussian-null ``T*`` of each head (matched in keys and
logit spread, DESIGN.md §3) give ``alpha_null``: random logits freeze at ``beta sigma ~ sqrt(2 ln n)``,
so ``T*`` scales with ``d`` through the logit spread alone; the measured scaling is called different
from the null only if the bootstrap CI of ``alpha - alpha_null`` (paired resamples) excludes 0.

Theorem 3 (same paper): the optimal head count ``N`` and dimension ``d`` satisfy
``N d = C sqrt(L H)`` (``L`` context length, ``H`` entropy rate of the input in bits/token).
``architecture_scaling`` compares, at equal parameter count, i.e. within each (L, H, d) group (with
``d_model = d`` fixed, the head count does not change the parameter count), the head counts by mean
validation loss over seeds; the best one ``N*`` gives the point ``(L H, d, N* d)``; then
``log(N* d) = log C + e log(L H) + g log(d / d_0)`` by least squares: the claim is ``e = 1/2`` and
``g = 0`` (the optimal ``N d`` set by ``L H`` alone). CIs: percentile bootstrap that resamples seeds
within every (member) cell and the groups themselves.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

#: reference width and context length of the Theorem 1 fits (T_0 is T* at d = D0, n = N0)
D0 = 64
N0 = 64

CLAIMED_EXPONENT = 0.5

#: a group whose best member is further than this above the entropy-rate floor (bits/token) compares
#: models that have not learned the source; the verdict counts such groups
UNLEARNED_BITS = 0.5


# --------------------------------------------------------------------------------------------------
# least squares pieces


def _lstsq(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float, int]:
    """Coefficients, residual sum of squares and rank of ``y ~ X``."""
    coef, _, rank, _ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ coef
    return coef, float(resid @ resid), int(rank)


def _design(points: pd.DataFrame, d0: float, n0: float) -> tuple[np.ndarray, np.ndarray]:
    x1 = np.log(points["d"].to_numpy(float) / d0)
    x2 = np.log(points["L"].to_numpy(float) / n0)
    return x1, x2


def _fit_one(x1: np.ndarray, x2: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """``(log T_0, alpha, alpha_n)`` of ``y = a - alpha x1 - alpha_n x2``; NaN where not identified.

    With a single context length, ``alpha_n`` is not identified and the fit drops it (NaN)."""
    if y.size < 2 or np.ptp(x1) == 0:
        return math.nan, math.nan, math.nan
    use_n = np.ptp(x2) > 0 and y.size >= 3
    X = np.column_stack([np.ones_like(x1), x1, x2] if use_n else [np.ones_like(x1), x1])
    coef, _, rank = _lstsq(X, y)
    if rank < X.shape[1]:
        return math.nan, math.nan, math.nan
    return float(coef[0]), float(-coef[1]), float(-coef[2]) if use_n else math.nan


def _fits(points: pd.DataFrame, column: str, ks: list[int], d0: float, n0: float) -> np.ndarray:
    """``(len(ks) + 1, 3)``: per-k fits, then the pooled fit (last row), of ``log column``."""
    x1, x2 = _design(points, d0, n0)
    y = np.log(points[column].to_numpy(float))
    k = points["k"].to_numpy()
    out = np.full((len(ks) + 1, 3), np.nan)
    for i, kk in enumerate(ks):
        sel = k == kk
        out[i] = _fit_one(x1[sel], x2[sel], y[sel])
    out[-1] = _fit_one(x1, x2, y)
    return out


def universality_test(points: pd.DataFrame, d0: float = D0, n0: float = N0) -> dict[str, float]:
    """F-test of a common ``alpha`` against one ``alpha_k`` per head index (other terms per k in both).

    Returns ``F``, ``df1``, ``df2``, ``p_value`` (NaN when there is a single k or too few points).
    """
    from scipy.stats import f as f_dist

    x1, x2 = _design(points, d0, n0)
    y = np.log(points["T_star"].to_numpy(float))
    ks = sorted(points["k"].unique())
    onehot = np.column_stack([(points["k"].to_numpy() == kk).astype(float) for kk in ks])
    use_n = np.ptp(x2) > 0
    per_k_n = [onehot * x2[:, None]] if use_n else []
    full = np.column_stack([onehot, onehot * x1[:, None], *per_k_n])
    restricted = np.column_stack([onehot, x1, *per_k_n])
    nan = {"F": math.nan, "df1": math.nan, "df2": math.nan, "p_value": math.nan}
    if len(ks) < 2:
        return nan
    _, rss_f, rank_f = _lstsq(full, y)
    _, rss_r, rank_r = _lstsq(restricted, y)
    df1, df2 = rank_f - rank_r, y.size - rank_f
    if df1 < 1 or df2 < 1 or rss_f <= 0:
        return nan
    F = ((rss_r - rss_f) / df1) / (rss_f / df2)
    return {"F": float(F), "df1": float(df1), "df2": float(df2), "p_value": float(f_dist.sf(F, df1, df2))}


# --------------------------------------------------------------------------------------------------
# Theorem 1


def head_points(heads: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Heads indexed by ``k`` (rank of T* within each member and layer, ascending), edge heads removed.

    Returns the points and the number of heads left out (T* at the grid edge or not finite); the
    rank is taken before removal, so ``k`` means the same in every member.
    """
    frame = heads.copy()
    frame["k"] = frame.groupby(["member", "layer"])["T_star"].rank(method="first", na_option="bottom").astype(int) - 1
    keep = (~frame["at_edge"].astype(bool) & np.isfinite(frame["T_star"]) & (frame["T_star"] > 0)
            & np.isfinite(frame["T_star_null_gauss"]) & (frame["T_star_null_gauss"] > 0))
    return frame.loc[keep].reset_index(drop=True), int((~keep).sum())


@dataclass(frozen=True)
class TemperatureScaling:
    """Theorem 1 fits. ``per_k``: one row per head index k (``n_points, n_members, alpha, alpha_lo,
    alpha_hi, T0, T0_lo, T0_hi, alpha_n, alpha_n_lo, alpha_n_hi, alpha_null, alpha_null_lo,
    alpha_null_hi, diff_lo, diff_hi``, ``diff`` = alpha - alpha_null); ``pooled``: the same keys for
    all k together; ``universality``: the F-test; ``points``: the heads used."""

    per_k: pd.DataFrame
    pooled: dict[str, float]
    universality: dict[str, float]
    d0: float
    n0: float
    ci: float
    n_boot: int
    n_left_out: int
    points: pd.DataFrame
    verdict: str

    def summary(self) -> dict[str, Any]:
        return {
            "theorem": "T_c(k) = T_0 (d/d_0)^(-alpha_k)", "d0": self.d0, "n0": self.n0, "ci": self.ci,
            "ordering": "k = rank of T* within a layer, 0 = coldest head",
            "alpha_k": self.per_k[["k", "alpha", "alpha_lo", "alpha_hi", "n_points"]].to_dict(orient="records"),
            "T_0": {k: self.pooled[k] for k in ("T0", "T0_lo", "T0_hi")},
            "T_0_k": self.per_k[["k", "T0", "T0_lo", "T0_hi"]].to_dict(orient="records"),
            "pooled": self.pooled, "per_k": self.per_k.to_dict(orient="records"),
            "universality": self.universality, "n_points": int(len(self.points)),
            "n_left_out_at_edge": self.n_left_out, "verdict": self.verdict,
        }


_KEYS = ("T0", "alpha", "alpha_n")


def temperature_scaling(
    heads: pd.DataFrame, *, d0: float = D0, n0: float = N0, n_boot: int = 1000, ci: float = 0.95, seed: int = 0,
) -> TemperatureScaling:
    """Theorem 1 on a family's head table (``FamilyData.heads``: member, layer, head, d, L, T_star,
    at_edge, T_star_null_gauss, ...); see the module docstring."""
    if n_boot < 1:
        raise ValueError(f"n_boot={n_boot} must be >= 1 (1000 is typical)")
    if not 0 < ci < 1:
        raise ValueError(f"ci={ci} must lie in (0, 1)")
    points, n_out = head_points(heads)
    if points["d"].nunique() < 2:
        raise ValueError(
            f"Theorem 1 needs at least two widths with bracketed T*; the family has {sorted(points['d'].unique())} "
            "— train more widths"
        )
    ks = sorted(points["k"].unique())
    real = _fits(points, "T_star", ks, d0, n0)  # (K + 1, 3): log T0, alpha, alpha_n
    null = _fits(points, "T_star_null_gauss", ks, d0, n0)
    members = points["member"].unique()
    groups = {m: idx for m, idx in points.groupby("member").indices.items()}
    rng = np.random.default_rng(seed)
    boot_real = np.full((n_boot, len(ks) + 1, 3), np.nan)
    boot_null = np.full((n_boot, len(ks) + 1, 3), np.nan)
    for b in range(n_boot):
        pick = rng.choice(members, size=members.size, replace=True)
        sample = points.iloc[np.concatenate([groups[m] for m in pick])]
        boot_real[b] = _fits(sample, "T_star", ks, d0, n0)
        boot_null[b] = _fits(sample, "T_star_null_gauss", ks, d0, n0)
    lo_q, hi_q = (1 - ci) / 2, 1 - (1 - ci) / 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        q_real = np.nanquantile(boot_real, [lo_q, hi_q], axis=0)  # (2, K + 1, 3)
        q_null = np.nanquantile(boot_null, [lo_q, hi_q], axis=0)
        q_diff = np.nanquantile(boot_real[..., 1] - boot_null[..., 1], [lo_q, hi_q], axis=0)  # (2, K + 1)

    def row(i: int) -> dict[str, float]:
        out: dict[str, float] = {}
        for j, key in enumerate(_KEYS):
            value, lo, hi = real[i, j], q_real[0, i, j], q_real[1, i, j]
            if key == "T0":
                value, lo, hi = math.exp(value), math.exp(lo), math.exp(hi)
            out[key], out[f"{key}_lo"], out[f"{key}_hi"] = float(value), float(lo), float(hi)
        out["alpha_null"], out["alpha_null_lo"], out["alpha_null_hi"] = (
            float(null[i, 1]), float(q_null[0, i, 1]), float(q_null[1, i, 1]))
        out["alpha_n_null"] = float(null[i, 2])
        out["diff"], out["diff_lo"], out["diff_hi"] = float(real[i, 1] - null[i, 1]), float(q_diff[0, i]), float(q_diff[1, i])
        return out

    per_k = pd.DataFrame([
        {"k": int(kk), "n_points": int((points["k"] == kk).sum()),
         "n_members": int(points.loc[points["k"] == kk, "member"].nunique()), **row(i)}
        for i, kk in enumerate(ks)
    ])
    pooled = {"n_points": int(len(points)), "n_members": int(members.size), **row(len(ks))}
    test = universality_test(points, d0, n0)
    return TemperatureScaling(
        per_k=per_k, pooled=pooled, universality=test, d0=float(d0), n0=float(n0), ci=float(ci), n_boot=int(n_boot),
        n_left_out=n_out, points=points, verdict=_temperature_verdict(per_k, pooled, test, ci),
    )


def _interval(lo: float, hi: float) -> str:
    return f"[{lo:.3g}, {hi:.3g}]"


def _temperature_verdict(per_k: pd.DataFrame, pooled: dict[str, float], test: dict[str, float], ci: float) -> str:
    pct = f"{100 * ci:.0f}%"
    parts = [f"Pooled over head indices, T* ~ d^(-alpha) with alpha = {pooled['alpha']:.3g} "
             f"({pct} CI {_interval(pooled['alpha_lo'], pooled['alpha_hi'])}), T_0 = {pooled['T0']:.3g}."]
    if np.isfinite(pooled["alpha_n"]):
        parts.append(f"Against context length, alpha_n = {pooled['alpha_n']:.3g} "
                     f"{_interval(pooled['alpha_n_lo'], pooled['alpha_n_hi'])}.")
    if np.isfinite(pooled["diff_lo"]):
        differs = not pooled["diff_lo"] <= 0 <= pooled["diff_hi"]
        parts.append(
            f"The Gaussian null of the same heads gives alpha_null = {pooled['alpha_null']:.3g}; "
            f"alpha - alpha_null has CI {_interval(pooled['diff_lo'], pooled['diff_hi'])}, so the width scaling "
            + ("differs from what random logits of the same spread give." if differs
               else "is not distinguishable from that of random logits of the same spread (it is a logit-scale effect).")
        )
    if np.isfinite(test["p_value"]):
        same = test["p_value"] >= 0.05
        parts.append(f"Equal alpha_k across k: F = {test['F']:.3g}, p = {test['p_value']:.3g} — "
                     + ("no evidence against a universal exponent." if same
                        else "the exponents differ between head indices (not universal)."))
    if pooled["alpha_lo"] > 0:
        parts.append("Sign and form: T* falls with width as Theorem 1 says.")
    elif pooled["alpha_hi"] < 0:
        parts.append("Sign: T* rises with width (alpha < 0), the opposite of Theorem 1's decreasing law.")
    else:
        parts.append("No width dependence of T* is resolved (the CI of alpha contains 0).")
    return " ".join(parts)


# --------------------------------------------------------------------------------------------------
# Theorem 3


def _optimal_heads(members: pd.DataFrame) -> pd.DataFrame:
    """Per (L, H, d) group: the head count with the lowest mean validation loss over seeds."""
    cells = members.groupby(["L", "H", "d", "N"], as_index=False).agg(
        val_loss=("val_loss", "mean"), val_loss_sd=("val_loss", "std"), n_seeds=("val_loss", "size"))
    best = cells.loc[cells.groupby(["L", "H", "d"])["val_loss"].idxmin()].reset_index(drop=True)
    best["LH"] = best["L"] * best["H"]
    best["Nd"] = best["N"] * best["d"]
    best["excess_bits"] = best["val_loss"] / math.log(2) - best["H"]  # above the entropy-rate floor
    return best


def _fit_architecture(lh: np.ndarray, d: np.ndarray, nd: np.ndarray, d0: float) -> tuple[np.ndarray, float]:
    """``(e, log C, g)`` of ``log(N* d) = log C + e log(L H) + g log(d / d0)`` and the OLS standard
    error of ``e``. The width term is dropped (``g`` NaN) with a single width; all NaN when ``L H``
    takes a single value."""
    nan = np.full(3, np.nan)
    x1, x2, y = np.log(lh), np.log(d / d0), np.log(nd)
    if x1.size < 2 or np.ptp(x1) == 0:
        return nan, math.nan
    use_d = np.ptp(x2) > 0
    X = np.column_stack([np.ones_like(x1), x1, x2] if use_d else [np.ones_like(x1), x1])
    coef, rss, rank = _lstsq(X, y)
    if rank < X.shape[1]:
        return nan, math.nan
    dof = y.size - X.shape[1]
    se = math.sqrt(rss / dof * np.linalg.inv(X.T @ X)[1, 1]) if dof > 0 else math.nan
    return np.array([coef[1], coef[0], coef[2] if use_d else math.nan]), se


@dataclass(frozen=True)
class ArchitectureScaling:
    """Theorem 3 fit. ``optimal``: one row per (L, H, d) group with the best N, N*d, its mean loss,
    seed spread, ``excess_bits`` (its loss above the entropy-rate floor) and ``stability`` (share of bootstrap replicates choosing the same N); ``exponent``,
    ``C`` and ``width_exponent`` of ``N* d = C (L H)^e (d/d0)^g`` with percentile CIs (the claim:
    ``e = 1/2``, ``g = 0``); ``exponent_se``: the OLS standard error of ``e``."""

    optimal: pd.DataFrame
    exponent: float
    exponent_lo: float
    exponent_hi: float
    exponent_se: float
    C: float
    C_lo: float
    C_hi: float
    width_exponent: float
    width_exponent_lo: float
    width_exponent_hi: float
    d0: float
    ci: float
    n_boot: int
    verdict: str

    def summary(self) -> dict[str, Any]:
        return {
            "theorem": "N d = C sqrt(L H)", "claimed_exponent": CLAIMED_EXPONENT,
            "exponent": self.exponent, "exponent_lo": self.exponent_lo, "exponent_hi": self.exponent_hi,
            "exponent_se": self.exponent_se, "C": self.C, "C_lo": self.C_lo, "C_hi": self.C_hi,
            "width_exponent": self.width_exponent, "width_exponent_lo": self.width_exponent_lo,
            "width_exponent_hi": self.width_exponent_hi, "d0": self.d0, "ci": self.ci,
            "n_groups": int(len(self.optimal)), "optimal": self.optimal.to_dict(orient="records"),
            "verdict": self.verdict,
        }


def architecture_scaling(
    members: pd.DataFrame, *, d0: float = D0, n_boot: int = 1000, ci: float = 0.95, seed: int = 0,
) -> ArchitectureScaling:
    """Theorem 3 on a family's member table (``FamilyData.members``: L, H, d, N, seed, val_loss).

    Fits ``log(N* d) = log C + e log(L H) + g log(d / d0)`` over the (L, H, d) groups: ``e`` is the
    claimed 1/2; ``g`` = 0 if, as claimed, the optimal ``N d`` does not depend on the width
    (``C`` is the constant at ``d = d0``)."""
    if n_boot < 1:
        raise ValueError(f"n_boot={n_boot} must be >= 1 (1000 is typical)")
    if not 0 < ci < 1:
        raise ValueError(f"ci={ci} must lie in (0, 1)")
    if members["H"].isna().any():
        raise ValueError("some members have no entropy rate H (a source whose estimate failed); Theorem 3 needs H")
    best = _optimal_heads(members)
    if np.unique(best["LH"]).size < 2:
        raise ValueError("Theorem 3 needs at least two values of L*H; train more context lengths or sources")
    if members["N"].nunique() < 2:
        raise ValueError("Theorem 3 needs at least two head counts to choose from; train more --heads")

    def fit(frame: pd.DataFrame) -> tuple[np.ndarray, float]:
        return _fit_architecture(frame["LH"].to_numpy(float), frame["d"].to_numpy(float),
                                 frame["Nd"].to_numpy(float), d0)

    point, se = fit(best)
    rng = np.random.default_rng(seed)
    cells = list(members.groupby(["L", "H", "d", "N"]).indices.values())
    boot = np.full((n_boot, 3), np.nan)
    same = np.zeros(len(best))
    for b in range(n_boot):
        rows = np.concatenate([rng.choice(idx, size=idx.size, replace=True) for idx in cells])  # seeds
        replicate = _optimal_heads(members.iloc[rows])  # same (L, H, d) order as `best`
        same += replicate["N"].to_numpy() == best["N"].to_numpy()
        boot[b] = fit(replicate.iloc[rng.integers(0, len(replicate), size=len(replicate))])[0]  # and groups
    best["stability"] = same / n_boot
    lo_q, hi_q = (1 - ci) / 2, 1 - (1 - ci) / 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        (e_lo, c_lo, g_lo), (e_hi, c_hi, g_hi) = np.nanquantile(boot, [lo_q, hi_q], axis=0)
    return ArchitectureScaling(
        optimal=best, exponent=float(point[0]), exponent_lo=float(e_lo), exponent_hi=float(e_hi), exponent_se=se,
        C=float(math.exp(point[1])), C_lo=float(math.exp(c_lo)), C_hi=float(math.exp(c_hi)),
        width_exponent=float(point[2]), width_exponent_lo=float(g_lo), width_exponent_hi=float(g_hi),
        d0=float(d0), ci=float(ci), n_boot=int(n_boot),
        verdict=_architecture_verdict(float(point[0]), float(e_lo), float(e_hi), float(point[2]), float(g_lo),
                                      float(g_hi), best, ci),
    )


def _architecture_verdict(e: float, lo: float, hi: float, g: float, g_lo: float, g_hi: float,
                          best: pd.DataFrame, ci: float) -> str:
    pct = f"{100 * ci:.0f}%"
    text = (f"Across {len(best)} (L, H, d) groups, the loss-optimal N*d grows as (L H)^e with e = {e:.3g} "
            f"({pct} CI {_interval(lo, hi)}); the claim is e = 1/2. ")
    if lo <= CLAIMED_EXPONENT <= hi:
        text += "The data are consistent with 1/2"
        text += (", but also with no dependence at all (the CI contains 0)." if lo <= 0 <= hi else ".")
    else:
        text += "The data exclude 1/2" + (" and are consistent with no dependence (the CI contains 0)." if lo <= 0 <= hi
                                          else ".")
    if np.isfinite(g):
        text += (f" At fixed L H, N*d scales with the width as d^{g:.3g} ({pct} CI {_interval(g_lo, g_hi)}); the claim "
                 "(N d set by L H alone) needs 0, which the data "
                 + ("do not exclude." if g_lo <= 0 <= g_hi else "exclude: the optimal N*d depends on the width."))
    unlearned = int((best["excess_bits"] > UNLEARNED_BITS).sum())
    if unlearned:
        text += (f" In {unlearned} of {len(best)} groups even the best member is more than {UNLEARNED_BITS} bit/token "
                 "above the entropy-rate floor: there the choice of N compares models that have not learned the "
                 "source (raise the token budget).")
    unstable = float((best["stability"] < 0.5).mean())
    if unstable > 0:
        text += (f" In {100 * unstable:.0f}% of the groups the best head count changes in more than half of the "
                 "seed resamples: the loss differences between head counts are within the seed spread.")
    return text
