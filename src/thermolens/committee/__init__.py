"""Teacher-student committee machine: data, replica free entropy / state evolution, AMP, thresholds.

Reference: Aubin, Maillard, Barbier, Krzakala, Macris & Zdeborova, "The committee machine:
Computational to statistical gaps in learning a two-layers neural network", NeurIPS 2018,
arXiv:1806.05451. See docs/committee.md for the formulas and conventions.
"""

from thermolens.committee.amp import AMPConfig, AMPResult, AMPSummary, amp_over_seeds, run_amp
from thermolens.committee.data import CommitteeData, generate
from thermolens.committee.general_k import (
    SymmetricConfig,
    solve_symmetric,
    symmetric_state_evolution,
)
from thermolens.committee.generalization import gibbs_error, plugin_error
from thermolens.committee.large_k import (
    LargeKCurve,
    LargeKPoint,
    large_k_state_evolution,
    large_k_thresholds,
    solve_large_k,
)
from thermolens.committee.state_evolution import (
    FixedPoint,
    SECurve,
    SEConfig,
    solve_fixed_point,
    state_evolution,
)
from thermolens.committee.thresholds import Thresholds, find_thresholds

__all__ = [
    "AMPConfig",
    "AMPResult",
    "AMPSummary",
    "CommitteeData",
    "FixedPoint",
    "LargeKCurve",
    "LargeKPoint",
    "SECurve",
    "SEConfig",
    "SymmetricConfig",
    "Thresholds",
    "amp_over_seeds",
    "find_thresholds",
    "generate",
    "gibbs_error",
    "large_k_state_evolution",
    "large_k_thresholds",
    "plugin_error",
    "run_amp",
    "solve_fixed_point",
    "solve_large_k",
    "solve_symmetric",
    "state_evolution",
    "symmetric_state_evolution",
]
