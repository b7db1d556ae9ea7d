"""Input checks shared by the fitters: one place that turns bad samples into ValueErrors that say what to do.

Samples can hold 1e8 values (800 MB as float64), so the checks run over blocks of ``BLOCK`` values (no
n-sized temporaries but booleans) and a sample is copied at most once: an input that is already a sorted
float64 array is used as it is, and one that had to be converted (ints, float32, lists) is sorted in place.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from numpy.typing import ArrayLike

MIN_TAIL = (
    50  # fewest points above xmin a fit accepts (Clauset et al. 2009 warn below ~50; arXiv:0706.1062 §3.3)
)
BLOCK = 1 << 22  # values per block of the checks (32 MB of float64)


def blocks(size: int, step: int = BLOCK) -> Iterator[slice]:
    """Consecutive slices of at most ``step`` covering ``range(size)``."""
    for lo in range(0, size, step):
        yield slice(lo, min(size, lo + step))


def _count_and_first(arr: np.ndarray, test) -> tuple[int, int]:
    """How many values satisfy ``test`` (a vectorised predicate) and the index of the first one (-1: none)."""
    count, first = 0, -1
    for sl in blocks(arr.size):
        hit = test(arr[sl])
        k = int(np.count_nonzero(hit))
        if k and first < 0:
            first = sl.start + int(np.argmax(hit))
        count += k
    return count, first


def is_sorted(arr: np.ndarray) -> bool:
    """True when the 1-D ``arr`` is non-decreasing (checked block by block; stops at the first descent)."""
    for sl in blocks(max(arr.size - 1, 0)):
        if (arr[sl.start + 1 : sl.stop + 1] < arr[sl]).any():
            return False
    return True


def as_sample(x: ArrayLike, *, discrete: bool, name: str = "x") -> np.ndarray:
    """Return ``x`` as a sorted 1-D float64 array, or raise ``ValueError`` saying what is wrong.

    Refuses: empty data, NaN/inf, values <= 0 (power laws live on x > 0), non-integers when
    ``discrete``, and data whose values are all equal. The result may be ``x`` itself (when it is already
    a sorted float64 array); it is never written to by the fitters.
    """
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numbers; could not convert it to floats") from None
    if arr.ndim != 1:
        arr = arr.ravel()
    # a converted or flattened copy belongs to us and may be sorted in place; the caller's data may not
    owned = isinstance(x, (list, tuple)) or (isinstance(x, np.ndarray) and not np.may_share_memory(arr, x))
    if arr.size == 0:
        raise ValueError(f"{name} is empty; pass at least {MIN_TAIL} positive values")
    n_bad, first_bad = _count_and_first(arr, lambda b: ~np.isfinite(b))
    if n_bad:
        raise ValueError(
            f"{name} has {n_bad} NaN or infinite values (first at index {first_bad}); remove them before fitting"
        )
    n_neg, _ = _count_and_first(arr, lambda b: b <= 0)
    if n_neg:
        smallest = min(float(arr[sl].min()) for sl in blocks(arr.size))
        raise ValueError(
            f"{name} has {n_neg} values <= 0 (smallest {smallest:g}); power-law fits need "
            "positive data: drop zeros (e.g. x[x > 0]) or shift the data"
        )
    if discrete:
        n_frac, first_frac = _count_and_first(arr, lambda b: b != np.round(b))
        if n_frac:
            raise ValueError(
                f"discrete fit needs integers but {name} contains {arr[first_frac]:g}; drop --discrete or round the data"
            )
    if is_sorted(arr):
        data = arr
    elif owned:
        arr.sort()
        data = arr
    else:
        data = np.sort(arr)
    if data[0] == data[-1]:
        raise ValueError(
            f"all {data.size} values of {name} equal {data[0]:g}; a distribution cannot be fitted to one value"
        )
    return data


def check_tail(n_tail: int, xmin: float, *, what: str = "xmin") -> None:
    if n_tail < MIN_TAIL:
        raise ValueError(
            f"{what}={xmin:g} leaves {n_tail} points in the tail; need at least {MIN_TAIL}: lower xmin or pass more data"
        )
