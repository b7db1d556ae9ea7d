"""Avalanche extraction and the crackling-noise relation on critical branching (mean field:
tau = 3/2, tau_t = 2, gamma = 2; Sethna, Dahmen & Myers 2001, arXiv:cond-mat/0102091)."""

import numpy as np
import pytest

from thermolens import stats


def _critical_cascades(n, seed, max_generations=3000):
    """Generation sizes of critical Galton-Watson trees (Poisson(1) offspring), one tree per avalanche,
    separated by one quiet bin; trees still alive after ``max_generations`` are left out. Returns
    (counts, sizes, durations)."""
    rng = np.random.default_rng(seed)
    pieces, sizes, durations = [np.zeros(1)], [], []
    for _ in range(n):
        z, gens = 1, []
        while z > 0 and len(gens) < max_generations:
            gens.append(z)
            z = rng.poisson(z)
        if z > 0:  # still alive at the cap: not a complete avalanche, leave it out
            continue
        pieces += [np.array(gens, dtype=float), np.zeros(1)]
        sizes.append(sum(gens))
        durations.append(len(gens))
    return np.concatenate(pieces), np.array(sizes, dtype=float), np.array(durations)


def test_extraction_is_exact():
    counts, sizes, durations = _critical_cascades(500, seed=1)
    av = stats.avalanches_from_counts(counts)
    assert np.array_equal(av.sizes, sizes) and np.array_equal(av.durations, durations)
    assert av.n_events == sizes.sum()


def test_event_times_binning_and_incomplete_edges():
    # bins of width 0.5 starting at the first event: [0,.5) [.5,1) [1,1.5) [1.5,2) [2,2.5) [2.5,3) [3,3.5)
    times = [0.0, 0.1, 0.6, 2.0, 2.1, 2.2, 3.2]
    av = stats.avalanches(times, dt=0.5)
    assert av.sizes.tolist() == [3.0, 3.0, 1.0] and av.durations.tolist() == [2, 1, 1]
    # activity that starts or ends active has incomplete avalanches at the edges: dropped
    av = stats.avalanches_from_counts([2, 1, 0, 3, 0, 4])
    assert av.sizes.tolist() == [3.0]
    frame = av.to_frame()
    assert frame["duration"].tolist() == [1.0]


def test_crackling_relation_mean_field():
    counts, _, _ = _critical_cascades(20000, seed=2)
    cr = stats.crackling_relation(stats.avalanches_from_counts(counts))
    assert cr.tau == pytest.approx(1.5, abs=0.03)  # Borel/critical GW size exponent 3/2
    assert cr.tau_t == pytest.approx(2.0, abs=0.1)  # duration exponent 2
    assert cr.gamma_fit == pytest.approx(2.0, abs=0.2)  # <S>(T) ~ T^2, finite-T corrections make it ~1.9
    assert cr.deviation_sigma < 3  # the scaling relation holds within its uncertainty


def test_crackling_relation_detects_a_violation():
    # shuffling sizes against durations keeps both marginals (tau, tau_t) but flattens <S>(T): gamma ~ 0
    counts, sizes, durations = _critical_cascades(20000, seed=3)
    av = stats.avalanches_from_counts(counts)
    shuffled = np.random.default_rng(0).permutation(av.sizes)
    fake = stats.Avalanches(shuffled, av.durations, av.starts, 1.0, av.n_bins, av.n_events)
    cr = stats.crackling_relation(fake, gamma_range=(2, 1000))
    assert abs(cr.gamma_fit) < 0.5 and cr.gamma_predicted == pytest.approx(2.0, abs=0.3)
    assert cr.deviation_sigma > 3


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: stats.avalanches([], dt=1), "no events"),
        (lambda: stats.avalanches([0.0, np.nan], dt=1), "finite"),
        (lambda: stats.avalanches([0.0, 1.0], dt=0), "dt=0"),
        (lambda: stats.avalanches_from_counts([1, -1, 0]), ">= 0"),
        (lambda: stats.crackling_relation(stats.avalanches_from_counts([0, 1, 0] * 20)), "need at least 100"),
    ],
)
def test_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()
