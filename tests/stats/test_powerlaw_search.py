"""The exact xmin search of ``fit_power_law`` (stats/_kssearch.py) against the O(n^2) definition of the KS
distance on the data where its pruning behaves differently: a uniform or lognormal body below the tail,
ties (few, in runs, integers), truncation at xmax, user grids; its Hurwitz zeta against scipy's; and the
sample handling that keeps 1e8 values to one copy."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import special

from thermolens import stats
from thermolens.stats import _kssearch
from thermolens.stats._data import as_sample


def _definition_ks(x, *, discrete=False, xmax=None, grid=None):
    """{xmin: (KS distance, alpha)} for every candidate with >= 50 points at or above it, from the definitions:
    continuous D = max_j |F(x_j) - (points below x_j)/m| over tail points (Clauset's plfit), discrete
    D = max over every integer u >= xmin of |P(X <= u) - fraction <= u|. The exponent is Clauset's closed form
    (eq. 3.1) for the continuous untruncated law, otherwise that of the fixed-xmin fit (tested elsewhere)."""
    x = np.sort(np.asarray(x, dtype=np.float64))
    if xmax is not None:
        x = x[x <= xmax]
    candidates = np.unique(x)[:-1] if grid is None else np.asarray(grid, dtype=np.float64)
    out = {}
    for xmin in candidates:
        tail = x[x >= xmin]
        if tail.size < 50 or xmin >= x[-1]:
            continue
        m = tail.size
        if not discrete and xmax is None:
            a = 1 + m / np.log(tail / xmin).sum()
        else:
            a = stats.fit_power_law(x, discrete=discrete, xmin=float(xmin), xmax=xmax).alpha
        if discrete:
            u = np.arange(xmin, tail[-1] + 1)
            z_top = 0.0 if xmax is None else special.zeta(a, xmax + 1)
            model = (special.zeta(a, xmin) - special.zeta(a, u + 1)) / (special.zeta(a, xmin) - z_top)
            emp = np.searchsorted(tail, u, side="right") / m
        else:
            model = 1 - (tail / xmin) ** (1 - a)
            if xmax is not None:
                model = model / (1 - (xmax / xmin) ** (1 - a))
            emp = np.searchsorted(tail, tail, side="left") / m
        out[float(xmin)] = (float(np.abs(model - emp).max()), float(a))
    return out


def _assert_exact(fit, reference):
    """The fit's xmin attains the smallest distance of the reference (ties within rounding: the smallest such
    xmin), with the same distance and exponent."""
    best = min(d for d, _ in reference.values())
    winners = sorted(k for k, (d, _) in reference.items() if d <= best * (1 + 1e-9))
    assert fit.xmin == winners[0] or (fit.xmin in winners and len(winners) > 1)
    assert fit.ks_distance == pytest.approx(reference[fit.xmin][0], rel=1e-9)
    assert fit.alpha == pytest.approx(reference[fit.xmin][1], rel=1e-9)
    assert fit.n_candidates == len(reference)


def _uniform_body(n, seed):
    rng = np.random.default_rng(seed)
    return np.concatenate(
        [rng.uniform(0.1, 1.0, n // 4), stats.sample_power_law(2.5, 1.0, n - n // 4, seed=seed + 1)]
    )


def _lognormal_body(n, seed, discrete=False):
    """A lognormal body and a power-law tail above 5 (20 when discrete): here the KS distances of candidates
    inside the body fall towards the tail, the case where pruning has the least to work with."""
    rng = np.random.default_rng(seed)
    if discrete:
        body = np.ceil(rng.lognormal(1.0, 1.0, n // 2))
        return np.concatenate(
            [body[body < 20], stats.sample_power_law(2.4, 20, n - n // 2, discrete=True, seed=seed)]
        )
    body = rng.lognormal(0.0, 1.0, n // 2)
    return np.concatenate([body[body < 5], stats.sample_power_law(2.5, 5.0, n - n // 2, seed=seed)])


@pytest.mark.parametrize(
    "name, x, discrete",
    [
        ("uniform body", _uniform_body(2500, 1), False),
        ("lognormal body", _lognormal_body(2500, 2), False),
        ("pure power law", stats.sample_power_law(1.8, 1.0, 2500, seed=3), False),
        # a few repeated values: candidates are the point indices, runs of ties are skipped
        ("few ties", np.round(_uniform_body(2500, 4), 4), False),
        # heavy ties: candidates are listed (one per distinct value)
        ("rounded", np.round(_lognormal_body(3000, 5), 1) + 0.1, False),
        ("discrete, lognormal body", _lognormal_body(3000, 6, discrete=True), True),
        ("discrete, pure", stats.sample_power_law(2.5, 1, 3000, discrete=True, seed=7), True),
    ],
)
def test_search_equals_definition(name, x, discrete):
    _assert_exact(stats.fit_power_law(x, discrete=discrete), _definition_ks(x, discrete=discrete))


@pytest.mark.parametrize("discrete", [False, True])
def test_truncated_search_equals_definition(discrete):
    if discrete:
        x = stats.sample_power_law(1.7, 2, 2000, discrete=True, xmax=300, seed=8)
        xmax = 300.0
    else:
        x = stats.sample_power_law(1.5, 1.0, 2000, xmax=200.0, seed=8)
        xmax = 200.0
    fit = stats.fit_power_law(x, discrete=discrete, xmax=xmax)
    _assert_exact(fit, _definition_ks(x, discrete=discrete, xmax=xmax))


@pytest.mark.parametrize("discrete", [False, True])
def test_grid_and_fixed_xmin_equal_definition(discrete):
    x = _lognormal_body(3000, 9, discrete=discrete)
    grid = [3.0, 5.0, 8.0, 13.0, 21.0, 34.0] if discrete else [0.7, 1.3, 2.9, 5.0, 7.5, 11.0]
    reference = _definition_ks(x, discrete=discrete, grid=grid)
    _assert_exact(stats.fit_power_law(x, discrete=discrete, xmin=grid), reference)
    for xmin, (d, a) in reference.items():
        fixed = stats.fit_power_law(x, discrete=discrete, xmin=xmin)
        assert fixed.ks_distance == pytest.approx(d, rel=1e-9) and fixed.alpha == pytest.approx(a, rel=1e-9)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.integers(min_value=1, max_value=400), min_size=60, max_size=400),
    st.booleans(),
    st.integers(min_value=0, max_value=2**31),
)
def test_search_equals_definition_on_arbitrary_samples(values, discrete, seed):
    # integers (with many ties) for the discrete law; for the continuous law the same numbers spread by a
    # random factor on most points, so both runs of ties and distinct values occur
    x = np.asarray(values, dtype=np.float64)
    if not discrete:
        rng = np.random.default_rng(seed)
        x = x * np.where(rng.random(x.size) < 0.7, rng.uniform(1.0, 1.5, x.size), 1.0)
    reference = _definition_ks(x, discrete=discrete)
    if not reference:
        with pytest.raises(ValueError):
            stats.fit_power_law(x, discrete=discrete)
        return
    _assert_exact(stats.fit_power_law(x, discrete=discrete), reference)


@pytest.mark.slow
def test_search_equals_definition_at_20000_points():
    x = _lognormal_body(20000, 10)
    _assert_exact(stats.fit_power_law(x), _definition_ks(x))


def test_runs_of_ties_are_found_from_any_point():
    # runs at both ends, single values, and runs longer than the galloping steps
    x = np.repeat([1.0, 2.0, 3.0, 5.0, 8.0, 9.0], [37, 1, 5, 1, 130, 17])
    for k in range(x.size):
        assert _kssearch._first(x, k) == np.searchsorted(x, x[k], side="left")
        assert _kssearch._end(x, k) == np.searchsorted(x, x[k], side="right")


# ---------------------------------------------------------------------------------------- Hurwitz zeta


@pytest.mark.parametrize("s", [1.0001, 1.05, 1.5, 2.5, 4.0, 12.0, 40.0])
@pytest.mark.parametrize("q", [1.0, 2.0, 3.0, 9.0, 10.0, 37.0, 1e3, 123456.0, 1e8, 3e9, 1e15])
def test_hurwitz_zeta_matches_scipy(s, q):
    # scipy.special.zeta(s, q) (Cephes: Euler-Maclaurin) as the reference
    assert _kssearch.hurwitz_zeta(s, q) == pytest.approx(special.zeta(s, q), rel=1e-13)


# ---------------------------------------------------------------------------------------- one copy at most


def test_sorted_float64_is_used_without_a_copy_and_inputs_are_never_modified():
    x = np.sort(stats.sample_power_law(2.5, 1.0, 1000, seed=11))
    assert as_sample(x, discrete=False) is x
    shuffled = np.random.default_rng(0).permutation(x)
    before = shuffled.copy()
    out = as_sample(shuffled, discrete=False)
    assert np.array_equal(shuffled, before) and np.array_equal(out, x)
    assert out.dtype == np.float64 and not np.may_share_memory(out, shuffled)


@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.int64, np.uint16])
def test_other_dtypes_give_the_same_fit_as_float64(dtype):
    x = stats.sample_power_law(2.3, 1, 5000, discrete=True, seed=12)
    x = x[x < 60000]  # fits every dtype here
    ref = stats.fit_power_law(x, discrete=True)
    converted = x.astype(dtype)
    fit = stats.fit_power_law(converted, discrete=True)
    assert (fit.alpha, fit.xmin, fit.ks_distance) == (ref.alpha, ref.xmin, ref.ks_distance)
    assert np.array_equal(converted, x.astype(dtype))  # the caller's array is left as it was


def test_read_only_memory_map_is_fitted(tmp_path):
    x = stats.sample_power_law(2.5, 1.0, 3000, seed=13)
    np.save(tmp_path / "x.npy", x)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    fit = stats.fit_power_law(mapped)
    ref = stats.fit_power_law(x)
    assert (fit.alpha, fit.xmin, fit.ks_distance) == (ref.alpha, ref.xmin, ref.ks_distance)


def test_nonfinite_values_are_counted_and_located():
    x = stats.sample_power_law(2.5, 1.0, 500, seed=14)
    x[[17, 40, 41]] = [np.nan, np.inf, -np.inf]
    with pytest.raises(ValueError, match=r"3 NaN or infinite values \(first at index 17\)"):
        stats.fit_power_law(x)
