"""Row-averaged thermodynamic curves of each head: F, U, S, C, correlation length and susceptibility.

``curves(sums, temperatures)`` turns ``SequenceSums`` (already added over batches and, for a
bootstrap, resampled over sequences) into per-(head, T) averages over all valid query rows of all
sequences. The observables, with ``p = softmax(l / T)`` over the ``n`` valid keys of a row:

* ``F, U, S, C``: row averages of the canonical potentials (``thermolens.thermo.ensemble``).
* Correlation length ``xi(T) = sqrt(<Var_p(j)>_rows)``, in tokens: the connected second moment
  (the cumulant ``<j^2>_p - <j>_p^2``) of where a query's attention falls, averaged over rows. It is
  the width of the attention profile: 0 when every query attends to one key (frozen), and at
  ``T -> infinity`` it tends to the width of uniform attention over the valid keys,
  ``xi_inf = sqrt(<Var_u(j)>_rows)`` (``(n^2 - 1) / 12`` for contiguous keys), the baseline that
  ``xi_ratio = xi / xi_inf`` is measured against. ``distance = sqrt(<<(j - i)^2>_p>_rows)`` (the
  rms query-key distance, i.e. the non-connected moment) is reported beside it.
* Order parameter ``q = (Y - 1/n) / (1 - 1/n)`` with the participation ratio ``Y = sum_j p_j^2``:
  0 for uniform attention, 1 when the row is frozen onto one key, for any ``n`` (the ``1/n``
  baseline of ``Y`` is removed so rows of different lengths are comparable). ``Y`` is the order
  parameter of the random energy model's freezing transition (Derrida 1981; its sample-to-sample
  fluctuations: Derrida & Toulouse 1985).
* Susceptibility ``chi(T) = Var_rows(q) = <q^2> - <q>^2`` over query rows: the fluctuation of the
  order parameter across rows (the quenched disorder of the head), which vanishes when every row
  is equally (un)frozen and is largest where rows freeze at different temperatures. ``q`` is
  intensive and bounded, and chi is a variance across samples of it (not a thermal fluctuation of
  an extensive sum), so no system-size factor is applied: chi is comparable across heads, models
  and row lengths, and lies in ``[0, 1/4]``.

All of these are ratios of additive sums, so a bootstrap over sequences recomputes them exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from thermolens.thermo.sums import SequenceSums


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def check_temperatures(temperatures: Any, betas: Any) -> np.ndarray:
    """``temperatures`` as float64, checked to be ``1 / betas`` of the sums (same order)."""
    t = np.asarray(temperatures, dtype=np.float64).reshape(-1)
    b = _to_numpy(betas).reshape(-1)
    if t.size != b.size or not np.allclose(t * b, 1.0, rtol=1e-9, atol=0):
        raise ValueError(f"temperatures ({t.size} values) are not 1/betas of the sums ({b.size} "
                         "betas); pass the grid the sums were computed with, in the same order")
    return t


def row_means(sums: SequenceSums) -> dict[str, np.ndarray]:
    """Per-(head, T) row averages of every summed field: ``(heads, n_T)`` float64.

    Sequences are summed first (the batch axis of ``sums``); heads without valid rows give NaN.
    """
    from thermolens.thermo.sums import SUM_FIELDS

    total = {k: _to_numpy(getattr(sums, k)).sum(axis=1) for k in SUM_FIELDS}  # (n_T, heads)
    with np.errstate(invalid="ignore", divide="ignore"):
        rows = np.where(total["rows"] > 0, total["rows"], np.nan)
        return {k: (v / rows).T for k, v in total.items() if k != "rows"} | {"rows": total["rows"].T}


@dataclass(frozen=True)
class Curves:
    """Row-averaged curves per (head, T); every array is ``(n_heads, n_T)`` unless noted.

    ``temperatures`` ``(n_T,)``; ``n_rows`` and ``mean_keys`` ``(n_heads,)``: the number of valid
    query rows and their mean number of valid keys ``n``. See the module docstring for xi and chi.
    """

    temperatures: np.ndarray
    free_energy: np.ndarray
    energy: np.ndarray
    entropy: np.ndarray
    heat_capacity: np.ndarray
    correlation_length: np.ndarray
    correlation_length_ratio: np.ndarray
    distance: np.ndarray
    concentration: np.ndarray
    susceptibility: np.ndarray
    n_rows: np.ndarray
    mean_keys: np.ndarray

    def to_frame(self) -> pd.DataFrame:
        """Long table: one line per (head, T)."""
        import pandas as pd

        n_heads, n_t = self.heat_capacity.shape
        cols: dict[str, np.ndarray] = {
            "head": np.repeat(np.arange(n_heads), n_t),
            "T": np.tile(self.temperatures, n_heads),
            "beta": np.tile(1.0 / self.temperatures, n_heads),
        }
        for name in ("free_energy", "energy", "entropy", "heat_capacity", "correlation_length",
                     "correlation_length_ratio", "distance", "concentration", "susceptibility"):
            cols[name] = getattr(self, name).reshape(-1)
        cols["n_rows"] = np.repeat(self.n_rows, n_t)
        cols["mean_keys"] = np.repeat(self.mean_keys, n_t)
        return pd.DataFrame(cols)


def curves(sums: SequenceSums, temperatures: Any) -> Curves:
    """Per-(head, T) curves from ``SequenceSums`` (``(n_T, batch, heads)``, summed over batch here).

    ``temperatures`` must be ``1 / sums.betas`` in the same order. Heads with no valid query row
    are NaN.
    """
    t = check_temperatures(temperatures, sums.betas)
    mean = row_means(sums)
    xi = np.sqrt(mean["spread"])
    xi_inf = np.sqrt(mean["uniform_spread"])
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(xi_inf > 0, xi / xi_inf, np.nan)
    chi = np.clip(mean["concentration_sq"] - mean["concentration"] ** 2, 0.0, None)
    return Curves(
        temperatures=t,
        free_energy=mean["free_energy"],
        energy=mean["energy"],
        entropy=mean["entropy"],
        heat_capacity=mean["heat_capacity"],
        correlation_length=xi,
        correlation_length_ratio=ratio,
        distance=np.sqrt(mean["distance"]),
        concentration=mean["concentration"],
        susceptibility=chi,
        n_rows=mean["rows"][:, 0].copy(),
        mean_keys=mean["keys"][:, 0].copy(),
    )
