"""Goodness of fit of a power law: Clauset's semi-parametric bootstrap p-value (arXiv:0706.1062 §4.1).

Each synthetic data set has the size of the real one. With probability n_tail/n a point is drawn from
the fitted power law above xmin, otherwise it is resampled (with replacement) from the real data below
xmin. Every synthetic set is then fitted exactly like the real one (full xmin search unless xmin was
fixed), and p is the fraction of synthetic KS distances at least as large as the observed one. With
n_boot replicates p carries a binomial standard error sqrt(p(1 - p)/n_boot); Clauset et al. rule a
power law out when p <= 0.1.

Replicate ``r`` draws from ``numpy.random.default_rng([seed, r])`` whichever process runs it, so the
p-value is the same for a given seed on any number of cores.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from thermolens.stats._data import as_sample
from thermolens.stats.powerlaw import PowerLawFit, PowerLawSampler, fit_power_law


@dataclass(frozen=True)
class GoodnessOfFit:
    """Bootstrap goodness of fit. ``ks_synthetic`` holds one distance per successful replicate; replicates
    whose synthetic data could not be fitted (too few distinct tail values) are counted in ``n_failed``."""

    p_value: float
    p_stderr: float
    ks_observed: float
    ks_synthetic: np.ndarray
    n_boot: int
    n_failed: int
    seed: int
    plausible: bool  # p > 0.1, Clauset et al.'s threshold


@dataclass(frozen=True)
class _Job:
    body: np.ndarray  # real data below xmin
    sampler: PowerLawSampler
    n: int
    n_tail: int
    seed: int
    fixed_xmin: float | None
    min_tail: int


_JOB: _Job | None = None


def _init(job: _Job) -> None:
    global _JOB
    _JOB = job


def _replicate(job: _Job, r: int) -> float:
    rng = np.random.default_rng([job.seed, r])
    n_tail = rng.binomial(job.n, job.n_tail / job.n) if job.body.size else job.n
    tail = job.sampler.sample(n_tail, rng)
    body = job.body[rng.integers(0, job.body.size, job.n - n_tail)] if job.body.size else np.empty(0)
    data = np.concatenate([body, tail])
    try:
        fit = fit_power_law(
            data,
            discrete=job.sampler.discrete,
            xmin=job.fixed_xmin,
            xmax=job.sampler.xmax,
            min_tail=job.min_tail,
        )
    except ValueError:
        return float("nan")
    return fit.ks_distance


def _run_chunk(reps: list[int]) -> list[float]:
    return [_replicate(_JOB, r) for r in reps]  # type: ignore[arg-type]  # _JOB set by the pool initializer


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def goodness_of_fit(
    fit: PowerLawFit,
    x: ArrayLike,
    n_boot: int = 2500,
    seed: int = 0,
    *,
    n_jobs: int | None = None,
    min_tail: int = 50,
    progress: Callable[[int], None] | None = None,
) -> GoodnessOfFit:
    """Clauset et al.'s bootstrap p-value of ``fit`` (a result of ``fit_power_law`` on ``x``).

    ``n_jobs`` processes (default: every available core) share the replicates; ``progress`` is called
    with the number of replicates finished after each batch.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot={n_boot}: the bootstrap needs at least 1 replicate (2500 gives p to +-0.01)")
    data = as_sample(x, discrete=fit.discrete)
    if fit.xmax is not None:
        data = data[data <= fit.xmax]
    if data.size != fit.n:
        raise ValueError(f"x has {data.size} usable points but the fit used {fit.n}; pass the data that was fitted")
    job = _Job(
        body=data[data < fit.xmin],
        sampler=PowerLawSampler.build(fit.alpha, fit.xmin, discrete=fit.discrete, xmax=fit.xmax),
        n=fit.n,
        n_tail=fit.n_tail,
        seed=int(seed),
        fixed_xmin=fit.xmin if fit.xmin_fixed else None,
        min_tail=min_tail,
    )
    n_jobs = available_cores() if n_jobs is None else max(1, int(n_jobs))
    n_jobs = min(n_jobs, n_boot)
    batch = max(1, min(50, n_boot // (8 * n_jobs)))
    chunks = [list(range(s, min(s + batch, n_boot))) for s in range(0, n_boot, batch)]
    results: dict[int, list[float]] = {}
    done = 0
    if n_jobs == 1:
        for c, reps in enumerate(chunks):
            results[c] = [_replicate(job, r) for r in reps]
            done += len(reps)
            if progress is not None:
                progress(done)
    else:
        with ProcessPoolExecutor(max_workers=n_jobs, initializer=_init, initargs=(job,)) as pool:
            futures = {pool.submit(_run_chunk, reps): c for c, reps in enumerate(chunks)}
            for fut in as_completed(futures):
                results[futures[fut]] = fut.result()
                done += len(chunks[futures[fut]])
                if progress is not None:
                    progress(done)
    ks = np.array([d for c in range(len(chunks)) for d in results[c]])
    ok = np.isfinite(ks)
    if not ok.any():
        raise ValueError("no bootstrap replicate could be fitted; the tail has too few distinct values")
    ks_ok = ks[ok]
    p = float(np.mean(ks_ok >= fit.ks_distance))
    return GoodnessOfFit(
        p_value=p,
        p_stderr=float(np.sqrt(max(p * (1 - p), 1.0 / ks_ok.size) / ks_ok.size)),
        ks_observed=fit.ks_distance,
        ks_synthetic=ks_ok,
        n_boot=int(n_boot),
        n_failed=int((~ok).sum()),
        seed=int(seed),
        plausible=p > 0.1,
    )

