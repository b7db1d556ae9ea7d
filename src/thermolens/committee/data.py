"""Teacher-student data for the committee machine (Aubin et al. 2018, arXiv:1806.05451, Sec. 2).

Inputs ``X`` (m x n) have i.i.d. N(0, 1) entries; the teacher's first-layer weights ``W*`` (n x K) have
i.i.d. rows drawn from the prior (``"gaussian"``: N(0, I_K); ``"binary"``: Rademacher +-1 per entry);
the label of a row ``x`` is the sign committee

    y = sign( sum_l sign( x . W*_l / sqrt(n) ) ),       sign(0) = 0,

so for even K a tied committee gives ``y = 0`` (for K = 2, ``y = (s_1 + s_2) / 2`` in {-1, 0, +1}, the
convention of the paper). ``alpha = m / n`` is the number of samples per parameter of one hidden unit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

PRIORS = ("gaussian", "binary")
ACTIVATIONS = ("sign",)


def check_model(K: int, prior: str, activation: str = "sign") -> None:
    """Raise ``ValueError`` (with the fix) for an unknown prior/activation or a bad K."""
    if isinstance(K, bool) or not isinstance(K, (int, np.integer)) or K < 1:
        raise ValueError(f"K={K!r} hidden units is invalid; K must be an integer >= 1")
    if prior not in PRIORS:
        raise ValueError(f"unknown prior {prior!r}; choose one of {', '.join(PRIORS)}")
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"unknown activation {activation!r}; the committee machine here uses {', '.join(ACTIVATIONS)}"
        )


def committee_output(h: np.ndarray) -> np.ndarray:
    """Sign committee of pre-activations ``h`` (..., K) -> labels (...) in {-1, 0, +1}."""
    return np.sign(np.sign(h).sum(axis=-1))


def sample_teacher(n: int, K: int, prior: str, rng: np.random.Generator) -> np.ndarray:
    """Teacher weights (n, K) with i.i.d. rows from the prior; E[w w^T] = I_K for both priors."""
    if prior == "gaussian":
        return rng.standard_normal((n, K))
    return rng.choice(np.array([-1.0, 1.0]), size=(n, K))


@dataclass(frozen=True)
class CommitteeData:
    """One teacher-student instance.

    ``X`` (m, n) float32 inputs, ``W_star`` (n, K) teacher weights, ``y`` (m,) labels in {-1, 0, +1}.
    """

    X: np.ndarray
    W_star: np.ndarray
    y: np.ndarray
    prior: str

    @property
    def n(self) -> int:
        return int(self.X.shape[1])

    @property
    def m(self) -> int:
        return int(self.X.shape[0])

    @property
    def K(self) -> int:
        return int(self.W_star.shape[1])

    @property
    def alpha(self) -> float:
        return self.m / self.n


def labels(X: np.ndarray, W: np.ndarray) -> np.ndarray:
    """Committee labels of inputs ``X`` (m, n) under weights ``W`` (n, K); float32 products, float64 out."""
    n = X.shape[1]
    h = (X @ W.astype(X.dtype)).astype(np.float64) / math.sqrt(n)  # (m, K)
    return committee_output(h)


def generate(
    n: int, alpha: float, K: int = 2, prior: str = "gaussian", *, seed: int | np.random.Generator = 0,
    activation: str = "sign", W_star: np.ndarray | None = None,
) -> CommitteeData:
    """Draw a teacher (unless ``W_star`` is given) and ``m = round(alpha n)`` labelled Gaussian inputs.

    The same ``seed`` gives the same instance. Passing the teacher of an earlier instance draws fresh
    samples from the same rule (test sets).
    """
    check_model(K, prior, activation)
    if not np.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"alpha={alpha} must be a positive number of samples per parameter")
    if n < 1:
        raise ValueError(f"n={n} must be a positive input dimension")
    m = int(round(alpha * n))
    if m < 1:
        raise ValueError(f"alpha={alpha} with n={n} gives no samples; raise n or alpha")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    if W_star is None:
        W_star = sample_teacher(n, K, prior, rng)
    elif W_star.shape != (n, K):
        raise ValueError(f"W_star has shape {W_star.shape}; expected (n, K) = ({n}, {K})")
    X = rng.standard_normal((m, n), dtype=np.float32)
    return CommitteeData(X=X, W_star=np.asarray(W_star, dtype=np.float64), y=labels(X, W_star), prior=prior)
