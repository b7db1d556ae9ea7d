"""Input checks shared by the fitters: one place that turns bad samples into ValueErrors that say what to do."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

MIN_TAIL = 50  # fewest points above xmin a fit accepts (Clauset et al. 2009 warn below ~50; arXiv:0706.1062 §3.3)


def as_sample(x: ArrayLike, *, discrete: bool, name: str = "x") -> np.ndarray:
    """Return ``x`` as a sorted 1-D float64 array, or raise ``ValueError`` saying what is wrong.

    Refuses: empty data, NaN/inf, values <= 0 (power laws live on x > 0), non-integers when
    ``discrete``, and data whose values are all equal.
    """
    try:
        arr = np.asarray(x, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numbers; could not convert it to floats") from None
    if arr.size == 0:
        raise ValueError(f"{name} is empty; pass at least {MIN_TAIL} positive values")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ValueError(
            f"{name} has {int(bad.sum())} NaN or infinite values (first at index {int(np.argmax(bad))}); "
            "remove them before fitting"
        )
    if (arr <= 0).any():
        raise ValueError(
            f"{name} has {int((arr <= 0).sum())} values <= 0 (smallest {arr.min():g}); power-law fits need "
            "positive data: drop zeros (e.g. x[x > 0]) or shift the data"
        )
    if discrete and not np.all(arr == np.round(arr)):
        first = arr[np.argmax(arr != np.round(arr))]
        raise ValueError(f"discrete fit needs integers but {name} contains {first:g}; drop --discrete or round the data")
    if arr.min() == arr.max():
        raise ValueError(f"all {arr.size} values of {name} equal {arr[0]:g}; a distribution cannot be fitted to one value")
    return np.sort(arr)


def check_tail(n_tail: int, xmin: float, *, what: str = "xmin") -> None:
    if n_tail < MIN_TAIL:
        raise ValueError(
            f"{what}={xmin:g} leaves {n_tail} points in the tail; need at least {MIN_TAIL}: lower xmin or pass more data"
        )
