"""Attention as a canonical ensemble: exact thermodynamics of attention heads (DESIGN.md §3).

``ensemble``/``boltzmann``: exact per-row potentials and the project's one softmax at temperature;
``sequence_sums``: the fast additive per-sequence sums a scan accumulates; ``curves``: row-averaged
F, U, S, C, correlation length and susceptibility per head; ``critical_temperature`` and
``bootstrap_critical_temperature``: T* as the refined peak of C(T); null models in ``null``.
"""

from thermolens.thermo.critical import (
    BootstrapCriticalPoint,
    CriticalPoint,
    NullComparison,
    bootstrap_critical_temperature,
    compare_to_null,
    critical_temperature,
)
from thermolens.thermo.curves import Curves, curves
from thermolens.thermo.ensemble import Ensemble, boltzmann, ensemble, entropy, heat_capacity, log_partition
from thermolens.thermo.null import gaussian_null_logits, logit_std, shuffled_null_logits, within_row_sums
from thermolens.thermo.sums import SequenceBlocks, SequenceSums, sequence_sums

__all__ = [
    "BootstrapCriticalPoint",
    "CriticalPoint",
    "Curves",
    "Ensemble",
    "NullComparison",
    "SequenceBlocks",
    "SequenceSums",
    "boltzmann",
    "bootstrap_critical_temperature",
    "compare_to_null",
    "critical_temperature",
    "curves",
    "ensemble",
    "entropy",
    "gaussian_null_logits",
    "heat_capacity",
    "log_partition",
    "logit_std",
    "sequence_sums",
    "shuffled_null_logits",
    "within_row_sums",
]
