"""Criticality-aware training: K-FAC / diagonal-Fisher preconditioning, per-head temperature control,
sharpness diagnostics and critical initialization (docs/optimize.md)."""

from thermolens.optim.critical import CriticalOptimizer
from thermolens.optim.registry import OPTIMIZERS, make_optimizer
from thermolens.optim.temperature import CriticalLaw, TemperatureConfig, load_law, measure_critical_temperatures

__all__ = [
    "OPTIMIZERS",
    "CriticalLaw",
    "CriticalOptimizer",
    "TemperatureConfig",
    "load_law",
    "make_optimizer",
    "measure_critical_temperatures",
]
