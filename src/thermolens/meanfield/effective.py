"""Effective mean-field parameters of one layer: ``beta_eff`` from attention logits, ``K_eff`` from updates.

The noisy transformer on S^(d-1) (``sphere.py``; particles as in ``sphere_dynamics.py``) moves every
particle by

    dx_i = 2 K m_i dtau + sqrt(2) dB_i,   m_i = (1/n) sum_j exp(beta x_i . x_j) P_i x_j,   P_i = I - x_i x_i^T.

A real layer is read as one step of this dynamics, with the token directions ``u_i`` of the layer's input
and output as the particles:

* ``beta_eff``. The model attends with logits ``l_ij``; the particle model with ``beta u_i . u_j``. A softmax
  does not see a constant added to a row, so the slope of the row-centred logits on the row-centred
  cosines (least squares over every valid pair, per head) is the inverse temperature at which a head
  reads the token geometry. ``R^2`` of that fit says how much of the logits the cosine explains (1 for the
  particle model, small where queries and keys are not the tokens themselves).
* ``K_eff``. The tangent part ``Delta_i = P_i (u_i' - u_i)`` of the update is regressed on ``m_i`` (computed
  at ``beta_eff``): ``Delta = a m + r``. In the model ``a = 2 K dtau`` and ``r`` is tangent noise with
  ``E |r|^2 = 2 dtau (d - 1)``, so ``dtau = RSS / (2 (d - 1) N)`` and ``K = a / (2 dtau) = a (d - 1) N / RSS``
  (``N`` updates): a ratio of drift to noise in which the unknown step length cancels. Whatever the MLP,
  the value/output maps and the norms add to the update counts as noise here; isotropic noise in the
  ``d - 1`` tangent directions is an assumption, which the ratio ``K_eff / K_#(beta_eff, d)`` largely
  cancels (both grow like ``d``).

Uncertainties come from resampling sequences (systems) with replacement: every estimator here is a
smooth function of per-system sums, which :func:`bootstrap_sums` resamples.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from thermolens.meanfield.order import pairwise_cosines, unit_vectors

#: Updates with u . u' at or below this are left out of K_eff (the step is not a small tangent move).
MIN_OVERLAP = 0.1

__all__ = ["CouplingSums", "LogitSums", "bootstrap_sums", "coupling_sums", "interaction_field", "logit_sums"]


@functools.lru_cache(maxsize=8)
def _resample_counts(n: int, n_boot: int, seed: int) -> np.ndarray:
    """How often each of ``n`` systems is drawn in each of ``n_boot`` resamples (read-only, cached: every
    statistic of one run is resampled with the same draws, which keeps them consistent with each other)."""
    counts = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)
    counts.setflags(write=False)
    return counts


def bootstrap_sums(
    statistic: Callable[..., np.ndarray | float],
    sums: tuple[np.ndarray, ...],
    *,
    n_boot: int,
    seed: int,
    level: float = 0.95,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``statistic(*totals)`` on all systems and its percentile interval over resampled systems.

    ``sums``: arrays whose first axis is the system; ``totals`` are their sums over systems. Returns
    ``(estimate, low, high)`` with the shape of the statistic.
    """
    n = sums[0].shape[0]
    estimate = np.asarray(statistic(*(s.sum(axis=0) for s in sums)), dtype=np.float64)
    if n_boot <= 0 or n < 2:
        nan = np.full_like(estimate, np.nan)
        return estimate, nan, nan
    weights = _resample_counts(n, n_boot, seed)  # (n_boot, n)
    totals = [np.tensordot(weights, s, axes=(1, 0)) for s in sums]  # (n_boot, ...)
    with np.errstate(divide="ignore", invalid="ignore"):
        draws = np.asarray(statistic(*totals), dtype=np.float64)
    tail = 100 * (1 - level) / 2
    return estimate, np.nanpercentile(draws, tail, axis=0), np.nanpercentile(draws, 100 - tail, axis=0)


# --------------------------------------------------------------------------------------------------
# beta_eff from logits


@dataclass(frozen=True)
class LogitSums:
    """Per (system, head) sums of the row-centred fit ``l ~ beta c``: ``sxy = sum l c``, ``sxx = sum c^2``,
    ``syy = sum l^2`` over valid pairs. ``beta = sxy / sxx``, ``R^2 = sxy^2 / (sxx syy)`` (after summing)."""

    sxy: np.ndarray  # (n_systems, n_heads)
    sxx: np.ndarray
    syy: np.ndarray

    @staticmethod
    def beta(sxy, sxx, syy=None):
        return sxy / sxx

    @staticmethod
    def r2(sxy, sxx, syy):
        return sxy**2 / (sxx * syy)


def logit_sums(logits: np.ndarray, valid: np.ndarray, u: np.ndarray) -> LogitSums:
    """Sums for ``beta_eff`` of every head: ``logits`` ``(S, H, n, n)``, ``valid`` bool broadcastable to it
    (True where the key exists), ``u`` ``(S, n, d)`` the token states entering the layer (any norms).

    Row centring is done algebraically, ``sum_j (l_j - <l>)(c_j - <c>) = sum_j l_j c_j - (sum_j l_j)(sum_j c_j)/n``
    over each row's ``n`` valid keys, so no centred copy of the logits is made.
    """
    logits = np.asarray(logits)
    if logits.ndim != 4 or logits.shape[-1] != logits.shape[-2]:
        raise ValueError(f"logits must be (systems, heads, n, n), got shape {logits.shape}")
    u = unit_vectors(u)
    if u.shape[:2] != (logits.shape[0], logits.shape[-1]):
        raise ValueError(f"token states {u.shape} do not match logits {logits.shape}")
    S, H, n, _ = logits.shape
    w = np.asarray(valid, dtype=bool)
    w = np.broadcast_to(w, (S, w.shape[1] if w.ndim == 4 else 1, n, n))  # (S, 1 or H, n, n)
    y = np.where(np.broadcast_to(w, logits.shape), logits, 0.0).astype(np.float64)  # masked keys hold -inf
    x = np.where(w, pairwise_cosines(u)[:, None], 0.0)  # (S, 1 or H, n, n) cosines at valid keys
    count = np.maximum(w.sum(axis=-1), 1)  # (S, 1 or H, n)
    sum_y, sum_x = y.sum(axis=-1), x.sum(axis=-1)  # (S, H, n), (S, 1 or H, n)

    def pair_sum(a, b):  # sum over (i, j) of a * b, heads broadcast
        return (a.reshape(S, a.shape[1], 1, n * n) @ b.reshape(S, b.shape[1], n * n, 1))[..., 0, 0]

    def row_sum(a, b):  # sum over rows of a * b / count
        return ((a * b) / count).sum(axis=-1)

    sxx = pair_sum(x, x) - row_sum(sum_x, sum_x)
    return LogitSums(
        sxy=pair_sum(y, x) - row_sum(sum_y, sum_x),
        sxx=np.broadcast_to(sxx, (S, H)).copy(),
        syy=np.einsum("shij,shij->sh", y, y) - row_sum(sum_y, sum_y),
    )


# --------------------------------------------------------------------------------------------------
# K_eff from updates


#: Systems larger than this get the interaction field in row chunks (direct) or by Fourier series (circle).
_DIRECT_ROWS = 2048


def _circle_field(u: np.ndarray, beta: float) -> np.ndarray:
    """``m`` on the circle (d = 2) by the noisy transformer's Fourier series, ``O(n M)`` per system.

    With ``u_i = (cos 2 pi theta_i, sin 2 pi theta_i)`` and ``t_i`` the unit tangent,
    ``P_i u_j = sin 2 pi (theta_j - theta_i) t_i``, and ``W'(x) = -2 pi sin(2 pi x) exp(beta cos 2 pi x)``, so
    ``m_i = (1/n) sum_j W'(theta_i - theta_j) / (2 pi) t_i``: the circle's ``fourier_force`` over ``2 pi``.
    """
    from thermolens.meanfield.dynamics import force_modes, fourier_force
    from thermolens.meanfield.kernels import noisy_transformer

    kernel = noisy_transformer(beta)
    w_hat = kernel.w_hat(np.arange(force_modes(kernel) + 1))
    theta = np.arctan2(u[..., 1], u[..., 0]) / (2 * np.pi)  # (S, n)
    tangent = np.stack([-u[..., 1], u[..., 0]], axis=-1)
    along = np.stack([fourier_force(t, w_hat) for t in theta]) / (2 * np.pi)  # (S, n)
    return along[..., None] * tangent


def interaction_field(u: np.ndarray, beta: float, *, dtype=np.float64) -> np.ndarray:
    """``m_i = (1/n) sum_j exp(beta u_i . u_j) P_i u_j`` for unit ``u`` ``(S, n, d)``; the noisy transformer's
    drift per unit ``2 K``. ``exp(beta (c - 1))`` keeps large ``beta`` finite; the factor ``exp(beta)`` is
    restored at the end. Large systems: Fourier series on the circle, row chunks elsewhere (memory
    ``O(_DIRECT_ROWS n)``). ``dtype`` of the products (float32 halves the measurement's cost; the result is
    float64 either way; the particle simulation keeps float64)."""
    n = u.shape[1]
    if n > _DIRECT_ROWS and u.shape[2] == 2 and beta > 0:
        return _circle_field(u, beta)
    out = np.empty(u.shape, dtype=np.float64)
    for system in range(u.shape[0]):
        x = u[system].astype(dtype)
        for start in range(0, n, _DIRECT_ROWS):
            rows = x[start : start + _DIRECT_ROWS]
            cos = np.clip(rows @ x.T, -1.0, 1.0)  # (rows, n)
            weight = np.exp(beta * (cos - 1.0))
            pulled = (weight @ x).astype(np.float64)
            out[system, start : start + _DIRECT_ROWS] = pulled - (weight * cos).sum(
                axis=-1, keepdims=True, dtype=np.float64) * rows
    return out * (np.exp(beta) / n)


@dataclass(frozen=True)
class CouplingSums:
    """Per-system sums of the regression ``Delta = a m + r``: ``sdm = sum Delta.m``, ``smm = sum |m|^2``,
    ``sdd = sum |Delta|^2`` and ``count`` (updates). ``d`` is the dimension of the sphere's ambient space."""

    sdm: np.ndarray  # (n_systems,)
    smm: np.ndarray
    sdd: np.ndarray
    count: np.ndarray
    d: int

    def statistic(self, what: str) -> Callable[..., np.ndarray]:
        """``K``, ``dtau`` or ``a`` as a function of the four totals (for :func:`bootstrap_sums`)."""
        d = self.d

        def a(sdm, smm, sdd, count):
            return sdm / smm

        def rss(sdm, smm, sdd, count):
            return sdd - sdm**2 / smm

        fns = {
            "a": a,
            "K": lambda *t: a(*t) * (d - 1) * t[3] / rss(*t),
            "dtau": lambda *t: rss(*t) / (2 * (d - 1) * t[3]),
        }
        return fns[what]

    @property
    def totals(self) -> tuple[np.ndarray, ...]:
        return self.sdm, self.smm, self.sdd, self.count


def coupling_sums(x_in: np.ndarray, x_out: np.ndarray, beta: float) -> CouplingSums:
    """Sums for ``K_eff`` of one layer: token states entering (``x_in``) and leaving (``x_out``) it,
    ``(S, n, d)`` each (any norms), and the layer's ``beta``.

    The tangent step is read through the inverse of the projective retraction,
    ``Delta_i = P_i u_i' / (u_i . u_i')``, which recovers the step ``s`` of ``u' = (u + s)/|u + s|`` exactly
    (a plain difference would shrink large steps by ``1/|u + s|``). Tokens that turn by more than
    ``arccos(MIN_OVERLAP)`` in one layer have no such step and are left out (``count`` says how many stay).
    """
    if not np.isfinite(beta):
        raise ValueError(f"beta={beta} must be finite")
    u, v = unit_vectors(np.asarray(x_in, np.float64)), unit_vectors(np.asarray(x_out, np.float64))
    if u.shape != v.shape:
        raise ValueError(f"states entering {u.shape} and leaving {v.shape} the layer differ in shape")
    overlap = np.einsum("snd,snd->sn", u, v)
    keep = overlap > MIN_OVERLAP
    # Inverse of the projective retraction v = (u + s)/|u + s|: s = P_u v / (u . v), exact for any step size.
    delta = np.where(keep[..., None], (v - overlap[..., None] * u) / np.where(keep, overlap, 1.0)[..., None], 0.0)
    m = np.where(keep[..., None], interaction_field(u, beta, dtype=np.float32), 0.0)  # m enters sums only
    return CouplingSums(
        sdm=np.einsum("snd,snd->s", delta, m),
        smm=np.einsum("snd,snd->s", m, m),
        sdd=np.einsum("snd,snd->s", delta, delta),
        count=keep.sum(axis=1).astype(np.float64),
        d=int(u.shape[2]),
    )
