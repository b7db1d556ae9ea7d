"""thermolens: a thermodynamic lens on transformers.

The public API is loaded lazily so that ``import thermolens`` (and ``thermolens --help``) stays fast:
torch and transformers are imported only when a function that needs them is first used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "scan": "thermolens.experiments.scan.heads",
    "ScanResult": "thermolens.experiments.scan.heads",
    "ScanConfig": "thermolens.experiments.scan.heads",
    "detect_critical_point": "thermolens.experiments.scan.critical",
    "avalanches": "thermolens.experiments.avalanches.measure",
    "AvalancheResult": "thermolens.experiments.avalanches.measure",
    "AvalancheConfig": "thermolens.experiments.avalanches.measure",
}
_SUBPACKAGES = ("data", "models", "thermo", "stats", "meanfield", "committee", "experiments", "report", "io")

__all__ = [*_LAZY, *_SUBPACKAGES]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBPACKAGES:
        return importlib.import_module(f"thermolens.{name}")
    raise AttributeError(f"module 'thermolens' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
