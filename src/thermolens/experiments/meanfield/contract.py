"""The mean-field studies behind the Mun & Rosenzweig claims (arXiv:2604.16288), as study contracts.

``CRITICAL_STUDY`` (``critical``): ``K_#``, ``K_c`` and the order of the transition of a kernel on a
parameter grid and around its Landau threshold, under several numerical resolutions, with the order
parameter of the global minimiser against ``K``. ``RATES_STUDY`` (``rates``): relaxation to the
uniform state at (and near) the critical coupling, by the PDE and by N particles per seed. Both run
as resumable sweeps; ``thermolens.claims.meanfield`` turns them into verdicts, on the configs of
``critical_preset`` and ``rates_preset`` (quick: minutes on 2 cores; full: evidence grade, hours).
"""

from __future__ import annotations

from thermolens.experiments.meanfield.critical import (
    CriticalConfig,
    CriticalResult,
    load_critical,
    run_critical,
)
from thermolens.experiments.meanfield.rates import RateCase, RatesConfig, RatesResult, load_rates, run_rates
from thermolens.runner.study import Study

__all__ = [
    "CRITICAL_STUDY",
    "RATES_STUDY",
    "CriticalConfig",
    "CriticalResult",
    "RateCase",
    "RatesConfig",
    "RatesResult",
    "critical_preset",
    "rates_preset",
]

CRITICAL_STUDY = Study(
    name="meanfield-critical",
    config_type=CriticalConfig,
    run=run_critical,
    load=load_critical,
    summary=CriticalResult.summary,
)
RATES_STUDY = Study(
    name="meanfield-rates",
    config_type=RatesConfig,
    run=run_rates,
    load=load_rates,
    summary=RatesResult.summary,
)


# --------------------------------------------------------------------------------------------------
# the configs of the claims report (thermolens.claims.meanfield)

QUICK_BETAS = (0.5, 1.0, 2.0, 3.0, 5.0)
FULL_BETAS = (0.25, 0.5, 1.0, 1.5, 2.0, 2.25, 2.4, 2.5, 2.75, 3.0, 4.0, 5.0, 7.5)
QUICK_RS = (1.0, 1.5, 2.5, 3.0, 4.0, 6.0)
FULL_RS = (0.5, 1.0, 1.5, 2.0, 2.5, 2.75, 3.0, 3.5, 4.0, 5.0, 6.0, 8.0)


# --------------------------------------------------------------------------------------------------
# piece configs per preset


def critical_preset(kernel: str, preset: str) -> CriticalConfig:
    """The config of one kernel's piece of the claims report under ``preset`` (``"quick"`` or ``"full"``)."""

    quick = preset == "quick"
    if kernel == "doi-onsager":
        return CriticalConfig(
            kernel=kernel,
            n_modes=(0, 16, 32, 128) if quick else (0, 16, 32, 128, 256),
            n_starts=(8, 32) if quick else (8, 64),
            seeds=(0, 1) if quick else (0, 1, 2, 3),
            n_curve=31 if quick else 61,
        )
    if kernel == "noisy-transformer":
        return CriticalConfig(
            kernel=kernel,
            values=QUICK_BETAS if quick else FULL_BETAS,
            threshold_offsets=(-1e-2, -1e-3, 1e-3, 1e-2)
            if quick
            else (-1e-2, -3e-3, -1e-3, 1e-3, 3e-3, 1e-2),
            n_modes=(0, 32) if quick else (0, 32, 64),
            n_starts=(8, 32) if quick else (8, 64),
            seeds=(0, 1) if quick else (0, 1, 2),
            curve_values=(1.0, 2.5, 3.0) if quick else (0.5, 1.0, 2.0, 2.4, 2.5, 3.0, 5.0),
            n_curve=31 if quick else 61,
            boundary=(2.40, 2.50),
            boundary_tol=1e-4 if quick else 1e-6,
        )
    if kernel == "hegselmann-krause":
        return CriticalConfig(
            kernel=kernel,
            values=QUICK_RS if quick else FULL_RS,
            threshold_offsets=(-1e-2, 1e-3, 1e-2) if quick else (-1e-2, -1e-3, 1e-3, 1e-2),
            n_modes=(0, 32) if quick else (0, 32, 128),
            n_starts=(8, 32) if quick else (8, 64),
            seeds=(0,) if quick else (0, 1, 2),
            curve_values=(1.0, 2.5) if quick else (1.0, 2.0, 2.5, 3.0, 6.0),
            n_curve=31 if quick else 61,
            boundary=() if quick else (2.0, 2.3),
            boundary_tol=1e-6,
        )
    raise ValueError(f"no claim piece for kernel {kernel!r}")


def rates_preset(preset: str) -> RatesConfig:
    """The config of the mr-rates piece under ``preset``: critical cases (quartic ``beta = 1``, sextic
    ``beta_*``, Doi--Onsager), the off-critical reference at ``0.9 K_#``; particles as the budget allows."""

    off = RateCase("off-critical", K_factor=0.9, t_max=4.0)
    if preset == "quick":
        return RatesConfig(
            cases=(
                RateCase(
                    "quartic",
                    n_particles=50_000,
                    seeds=tuple(range(6)),
                    t_max=4.0,
                    long_t=200.0,
                    long_runs=((1e-2, 32), (5e-3, 64)),
                ),
                RateCase("sextic", tricritical=True, long_t=500.0, long_runs=((1e-2, 32), (2e-2, 32))),
                RateCase(
                    "doi-onsager",
                    kernel="doi-onsager",
                    parameter=None,
                    t_max=2.0,
                    long_t=50.0,
                    long_runs=((1e-2, 32), (5e-3, 64)),
                ),
                off,
            )
        )
    return RatesConfig(
        cases=(
            RateCase(
                "quartic",
                n_particles=1_000_000,
                seeds=tuple(range(10)),
                t_max=12.0,
                long_t=2000.0,
                long_runs=((1e-2, 32), (2e-3, 64)),
            ),
            RateCase("quartic-N2.5e5", n_particles=250_000, seeds=tuple(range(10)), t_max=12.0),
            RateCase(
                "quartic-N2.5e5-dt1e-3", n_particles=250_000, seeds=tuple(range(10)), dt=1e-3, t_max=12.0
            ),
            # Heun at dt = 2e-3 lets the sextic case decay too fast (N = 1e5: r(1) = 0.312 against the
            # PDE's 0.338; 0.336 at dt = 1e-3): its second harmonic carries half the force, so
            # (4 pi)^2 dt must stay small
            RateCase(
                "sextic",
                tricritical=True,
                n_particles=1_000_000,
                seeds=tuple(range(8)),
                dt=1e-3,
                t_max=30.0,
                long_t=20000.0,
                long_runs=((1e-2, 32), (5e-3, 64)),
            ),
            RateCase(
                "doi-onsager",
                kernel="doi-onsager",
                parameter=None,
                t_max=6.0,
                long_t=500.0,
                long_runs=((1e-2, 32), (2e-3, 128)),
            ),
            off,
        )
    )
