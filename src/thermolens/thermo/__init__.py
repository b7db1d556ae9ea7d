"""Attention as a canonical ensemble: exact thermodynamics of attention heads (DESIGN.md §3)."""

from thermolens.thermo.ensemble import Ensemble, boltzmann, ensemble, entropy, heat_capacity, log_partition

__all__ = ["Ensemble", "boltzmann", "ensemble", "entropy", "heat_capacity", "log_partition"]
