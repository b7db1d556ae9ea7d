"""Order parameters of a cloud of particles on the sphere: the tokens of a sequence as points of S^(d-1).

In the interacting-particle picture of self-attention (Geshkovski, Letrouit, Polyanskiy & Rigollet,
arXiv:2312.10794) the ``n`` token states of a sequence are particles ``x_i`` on the sphere, each layer a
time step; they cluster as depth grows. The quantities here are functions of the directions
``u_i = x_i / |x_i|`` of one sequence (one particle system), computed for every sequence at once:

* ``r_1 = |(1/n) sum_i u_i|``: the first moment, the circle's ``|c_1|`` (degree-1 spherical harmonics);
* ``r_2 = sqrt(d / (d - 1)) ||(1/n) sum_i u_i u_i^T - I/d||_F``: the degree-2 (nematic) moment,
  normalised so that ``r_2 = 1`` when all ``u_i = +-e`` and ``r_2 = |c_2|`` on the circle (d = 2);
* ``mean_cosine``: the mean of ``u_i . u_j`` over pairs ``i != j``, equal to ``(n r_1^2 - 1)/(n - 1)``;
* ``n_clusters``: the number of clusters of average-linkage agglomeration on the cosine distance cut at
  cosine ``cluster_cosine`` (a choice, stated in every result), the empirical counterpart of the
  "number of clusters" of the particle picture.

For ``n`` independent uniform directions ``E r_1^2 = 1/n`` and ``E mean_cosine = 0`` whatever ``d`` is,
which is why every measurement is reported next to the null of :func:`random_directions` (the same
norms, isotropic directions): finite ``n`` alone gives ``r_1 ~ n^(-1/2)``.

Components that fake clustering. A direction shared by every token of every sequence (the residual
stream's "anisotropy"), a position-dependent offset, or special tokens make tokens of one sequence look
alike without any interaction among them. :func:`without_global_mean` and :func:`without_position_mean`
remove the corpus-wide and the per-position mean state before the directions are taken, so the
measurement can be repeated without them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "OrderParameters",
    "pairwise_cosines",
    "cosine_histogram",
    "order_parameters",
    "random_directions",
    "unit_vectors",
    "without_global_mean",
    "without_position_mean",
]

#: Past this many particles, cluster counts come from a random subset of this size (linkage is O(n^2)).
MAX_CLUSTER_POINTS = 1000


def _check_cloud(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 3 or x.shape[1] < 2 or x.shape[2] < 2:
        raise ValueError(
            f"particles must be an array (n_systems, n_particles >= 2, d >= 2), got shape {x.shape}"
        )
    return x


def _float_type(x: np.ndarray) -> type:
    return np.float32 if x.dtype == np.float32 else np.float64


def unit_vectors(x: np.ndarray) -> np.ndarray:
    """Directions ``x / |x|``, ``(n_systems, n, d)``: float32 stays float32 (norms taken in float64), anything
    else becomes float64. A zero vector has no direction and is refused."""
    x = _check_cloud(x)
    dtype = _float_type(x)
    norms = np.sqrt(np.einsum("snd,snd->sn", x, x, dtype=np.float64))[..., None]
    if not np.all(np.isfinite(norms)) or np.any(norms == 0):
        raise ValueError("a token state is zero or not finite; its direction is undefined")
    return (x / norms).astype(dtype, copy=False)


@dataclass(frozen=True)
class OrderParameters:
    """Per-system order parameters, each ``(n_systems,)``; see the module docstring for the formulas."""

    r1: np.ndarray
    r2: np.ndarray
    mean_cosine: np.ndarray
    n_clusters: np.ndarray | None  # None when not asked for
    cluster_cosine: float

    def to_frame(self):
        import pandas as pd

        frame = pd.DataFrame({"r1": self.r1, "r2": self.r2, "mean_cosine": self.mean_cosine})
        if self.n_clusters is not None:
            frame["n_clusters"] = self.n_clusters
        return frame


def pairwise_cosines(u: np.ndarray, dtype=np.float64) -> np.ndarray:
    """``u_i . u_j`` of every system for unit ``u`` ``(S, n, d)``: ``(S, n, n)``, clipped to [-1, 1].

    One 2-D product per system: numpy's stacked matmul against a transposed view skips BLAS (~10x slower).
    """
    u = u.astype(dtype, copy=False)
    return np.clip(np.stack([system @ system.T for system in u]), -1.0, 1.0)


def _gram(u: np.ndarray) -> np.ndarray:
    """Cosines in float32 products, kept in float64 (enough for order parameters, half the time)."""
    return pairwise_cosines(u, np.float32).astype(np.float64)


def _second_moment_norm2(u: np.ndarray, gram: np.ndarray | None) -> np.ndarray:
    """``||(1/n) sum u_i u_i^T||_F^2`` per system, from the Gram matrix or (many particles) the d x d one."""
    n = u.shape[1]
    if gram is not None:
        return np.einsum("sij,sij->s", gram, gram) / n**2
    second = np.stack([system.T @ system for system in u]).astype(np.float64) / n  # (S, d, d), 2-D BLAS each
    return np.einsum("sij,sij->s", second, second)


def _cluster_count(u: np.ndarray, gram: np.ndarray | None, cluster_cosine: float, rng: np.random.Generator) -> int:
    from scipy.cluster.hierarchy import linkage

    if gram is not None:
        distance = 1.0 - gram[np.triu_indices(gram.shape[0], k=1)]  # condensed cosine distances
        tree = linkage(np.clip(distance, 0.0, 2.0), method="average")
    else:
        if u.shape[0] > MAX_CLUSTER_POINTS:
            u = u[rng.choice(u.shape[0], MAX_CLUSTER_POINTS, replace=False)]
        tree = linkage(u, method="average", metric="cosine")
    # Average linkage is monotone (merge heights never decrease), so cutting the tree at distance t leaves
    # one cluster per merge above t: n - (merges at or below t); fcluster's validation would cost more.
    return int(u.shape[0] - np.count_nonzero(tree[:, 2] <= 1.0 - cluster_cosine))


def order_parameters(
    x: np.ndarray,
    *,
    clusters: bool = True,
    cluster_cosine: float = 0.5,
    seed: int = 0,
) -> OrderParameters:
    """``r_1``, ``r_2``, the mean pairwise cosine and (``clusters``) the cluster count of every system.

    ``x``: ``(n_systems, n, d)`` particle states (any norms; only directions count). ``cluster_cosine``:
    two groups merge while their average pairwise cosine is at least this. ``seed`` picks the subset
    when a system has more than ``MAX_CLUSTER_POINTS`` particles.
    """
    if not -1.0 < cluster_cosine < 1.0:
        raise ValueError(f"cluster_cosine={cluster_cosine} must lie strictly between -1 and 1 (e.g. 0.5)")
    u = unit_vectors(x)
    n, d = u.shape[1], u.shape[2]
    # The Gram matrix when it is the smaller one or the cluster count needs it; else the d x d moment.
    gram = _gram(u) if n <= d or (clusters and n <= MAX_CLUSTER_POINTS // 4) else None
    r1 = np.linalg.norm(u.mean(axis=1, dtype=np.float64), axis=-1)
    r2 = np.sqrt(np.clip(_second_moment_norm2(u, gram) - 1.0 / d, 0.0, None) * d / (d - 1))
    mean_cosine = (n * r1**2 - 1.0) / (n - 1)
    counts = None
    if clusters:
        rng = np.random.default_rng(seed)
        counts = np.array([
            _cluster_count(system, None if gram is None else gram[i], cluster_cosine, rng) for i, system in enumerate(u)
        ])
    return OrderParameters(r1, r2, mean_cosine, counts, float(cluster_cosine))


def cosine_histogram(x: np.ndarray, edges: np.ndarray, *, max_pairs: int = 200_000, seed: int = 0) -> np.ndarray:
    """Counts of the pairwise cosines ``u_i . u_j`` (``i < j``, within each system, pooled) in the bins ``edges``.

    Systems with more than ``max_pairs`` pairs contribute a uniform random sample of that many pairs.
    """
    u = unit_vectors(x)
    n = u.shape[1]
    upper = np.triu_indices(n, k=1)
    if upper[0].size <= max_pairs:
        cos = pairwise_cosines(u, np.float32)[:, upper[0], upper[1]]
    else:
        rng = np.random.default_rng(seed)
        i = rng.integers(0, n, (u.shape[0], max_pairs))
        j = (i + rng.integers(1, n, i.shape)) % n  # j != i
        cos = np.einsum("spd,spd->sp", np.take_along_axis(u, i[..., None], 1), np.take_along_axis(u, j[..., None], 1))
    return np.histogram(np.clip(cos, -1.0, 1.0), bins=edges)[0]


def random_directions(x: np.ndarray, *, seed: int) -> np.ndarray:
    """The null: every state keeps its norm and gets an isotropic random direction (float64)."""
    x = _check_cloud(x)
    g = np.random.default_rng(seed).standard_normal(x.shape)
    return g / np.linalg.norm(g, axis=-1, keepdims=True) * np.linalg.norm(x, axis=-1, keepdims=True)


def without_global_mean(x: np.ndarray) -> np.ndarray:
    """States minus their mean over every token of every system (the corpus-wide common direction); the
    mean is taken in float64, the result keeps the input's float type."""
    x = _check_cloud(x)
    return (x - x.mean(axis=(0, 1), keepdims=True, dtype=np.float64)).astype(_float_type(x), copy=False)


def without_position_mean(x: np.ndarray) -> np.ndarray:
    """States minus the mean state at their position over systems (position and fixed special tokens).

    Needs at least two systems: with one, every state would be zero.
    """
    x = _check_cloud(x)
    if x.shape[0] < 2:
        raise ValueError("removing the per-position mean needs at least 2 sequences")
    return (x - x.mean(axis=0, keepdims=True, dtype=np.float64)).astype(_float_type(x), copy=False)
