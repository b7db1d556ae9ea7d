"""Statistics engine: power laws and alternatives, goodness of fit, likelihood ratios, branching ratios,
avalanches, entropy rates. Pure numpy/scipy (plus numba loops); no plotting here (figures live in ``thermolens.report.stats``)."""

from thermolens.stats.alternatives import (
    ALTERNATIVES,
    AlternativeFit,
    Comparison,
    TruncatedPowerLawProfile,
    compare,
    fit_alternative,
    fit_truncated_power_law,
    profile_truncated_power_law,
)
from thermolens.stats.avalanches import (
    Avalanches,
    CracklingResult,
    avalanches,
    avalanches_from_counts,
    crackling_relation,
)
from thermolens.stats.branching import BranchingResult, branching_ratio, coefficients, simulate_branching
from thermolens.stats.entropy import lz_entropy_rate, markov_entropy_rate, plugin_entropy_rate
from thermolens.stats.gof import GoodnessOfFit, goodness_of_fit
from thermolens.stats.powerlaw import PowerLawFit, PowerLawSampler, fit_power_law, sample_power_law

__all__ = [
    "ALTERNATIVES",
    "AlternativeFit",
    "Avalanches",
    "BranchingResult",
    "CracklingResult",
    "avalanches",
    "avalanches_from_counts",
    "branching_ratio",
    "coefficients",
    "crackling_relation",
    "simulate_branching",
    "Comparison",
    "TruncatedPowerLawProfile",
    "GoodnessOfFit",
    "PowerLawFit",
    "PowerLawSampler",
    "compare",
    "fit_alternative",
    "fit_power_law",
    "fit_truncated_power_law",
    "goodness_of_fit",
    "lz_entropy_rate",
    "markov_entropy_rate",
    "plugin_entropy_rate",
    "sample_power_law",
]
