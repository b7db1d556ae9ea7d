"""Figures of the statistics engine draw what the results hold (no physics computed in report/)."""

import numpy as np

from thermolens import stats
from thermolens.report.stats import plot_branching, plot_ccdf, plot_mean_size


def test_ccdf_figure_has_data_fit_and_alternatives():
    x = stats.sample_power_law(2.3, 2, 2000, discrete=True, seed=1)
    fit = stats.fit_power_law(x, discrete=True, xmin=2)
    comps = [stats.compare(fit, x, "exponential"), stats.compare(fit, x, "truncated_power_law")]
    ax = plot_ccdf(x, fit, comps)
    lines = ax.get_lines()
    assert len(lines) == 4  # data, power law, two alternatives
    data_x, data_y = lines[0].get_data()
    assert data_y[0] == 1.0 and np.all(np.diff(data_y) < 0)  # P(X >= xmin) = 1, decreasing
    model_x, model_y = lines[1].get_data()
    assert model_y[0] == 1.0


def test_branching_and_mean_size_figures():
    a = stats.simulate_branching(0.9, n_steps=5000, h=10.0, seed=2)[0]
    res = stats.branching_ratio(a, 40, n_boot=10)
    ax = plot_branching(res)
    assert np.allclose(ax.get_lines()[-1].get_ydata(), res.fitted())
    sizes = np.round(stats.sample_power_law(1.5, 1, 3000, discrete=True, seed=3))
    durations = np.clip(np.round(np.sqrt(sizes)), 1, None)
    av = stats.Avalanches(sizes, durations.astype(int), np.arange(sizes.size), 1.0, sizes.size, int(sizes.sum()))
    cr = stats.crackling_relation(av, gamma_range=(1, 100), min_count=3)
    ax = plot_mean_size(cr)
    assert len(ax.get_lines()) == 3
