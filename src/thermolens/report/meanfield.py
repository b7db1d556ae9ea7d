"""Figures for mean-field attention on the circle. Each function draws a result and returns its Axes."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _axes(ax):
    if ax is None:
        _, ax = plt.subplots(figsize=(6.0, 4.0))
    return ax


def phase_diagram(result, ax=None):
    """``K_#`` and ``K_c`` against the kernel parameter; continuous / discontinuous regions shaded."""
    ax = _axes(ax)
    x = result.values
    disc = np.array([t == "discontinuous" for t in result.transition])
    lo, hi = float(x.min()), float(x.max())
    edges = np.concatenate([[lo], (x[1:] + x[:-1]) / 2, [hi]])
    for i, d in enumerate(disc):
        ax.axvspan(edges[i], edges[i + 1], color="tab:red" if d else "tab:blue", alpha=0.12, lw=0)
    ax.plot(x, result.K_sharp, color="black", lw=1.5, label=r"$K_\#$ (linear instability)")
    ax.plot(x, result.K_c, color="tab:orange", lw=1.5, ls="--", label=r"$K_c$ (global minimiser)")
    if result.landau_threshold is not None:
        ax.axvline(result.landau_threshold, color="gray", ls=":", lw=1)
        ax.annotate(
            f"{result.parameter}$_*$ = {result.landau_threshold:.6f}",
            (result.landau_threshold, 0.02),
            xycoords=("data", "axes fraction"),
            rotation=90,
            ha="right",
            va="bottom",
            fontsize=8,
        )
    ax.plot([], [], color="tab:blue", alpha=0.3, lw=8, label="continuous")
    ax.plot([], [], color="tab:red", alpha=0.3, lw=8, label="discontinuous")
    ax.set_xlim(lo, hi)
    finite = result.K_sharp[np.isfinite(result.K_sharp)]
    if finite.size and finite.max() > 20 * finite.min():
        ax.set_yscale("log")
    ax.set_xlabel(result.parameter)
    ax.set_ylabel("coupling K")
    ax.set_title(f"{result.kernel}: phase diagram")
    ax.legend(fontsize=8)
    return ax


def bifurcation_diagram(branches, *, K_sharp: float, K_c: float | None = None, K_window=None, ax=None):
    """Order parameter ``rho_hat(k)`` of each branch against ``K``: solid stable, dashed unstable."""
    ax = _axes(ax)
    K_hi = max([float(b.K.max()) for b in branches] + [K_sharp * 1.2])
    K_lo = min([float(b.K.min()) for b in branches] + [K_sharp * 0.8])
    ax.plot([K_lo, K_sharp], [0, 0], color="black", lw=1.5, label="uniform")
    ax.plot([K_sharp, K_hi], [0, 0], color="black", lw=1.5, ls="--")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, b in enumerate(branches):
        c = colors[i % len(colors)]
        K, r, st = b.K, b.r, b.stable
        # one line per run of equal stability, overlapping by a point so the curve stays connected
        cuts = np.flatnonzero(st[1:] != st[:-1]) + 1
        for a, z in zip(np.r_[0, cuts], np.r_[cuts, len(K)]):
            ax.plot(K[a : z + 1], r[a : z + 1], color=c, lw=1.5, ls="-" if st[a] else "--")
        label = (
            f"mode {b.mode} branch"
            if np.isfinite(b.K_bifurcation)
            else rf"global minimiser's branch ($\hat\rho({b.mode})$)"
        )
        ax.plot([], [], color=c, label=label)
    if K_c is not None and K_c < K_sharp:
        ax.axvline(K_c, color="tab:orange", ls=":", lw=1, label=f"$K_c$ = {K_c:.6f}")
    ax.axvline(K_sharp, color="gray", ls=":", lw=1, label=rf"$K_\#$ = {K_sharp:.6f}")
    ax.plot([], [], color="gray", ls="--", label="unstable")
    if K_window is not None:
        ax.set_xlim(*K_window)
    ax.set_xlabel("coupling K")
    ax.set_ylabel(r"order parameter $\hat\rho(k)$")
    ax.set_title("bifurcation diagram")
    ax.legend(fontsize=8)
    return ax


def free_energy_landscape(landscape, ax=None):
    """Landau free energy ``Delta F(r)`` (constrained minimum at fixed order parameter), one curve per K."""
    ax = _axes(ax)
    cmap = plt.get_cmap("viridis")
    for i, K in enumerate(landscape.K):
        ax.plot(
            landscape.r,
            landscape.delta_F[i],
            color=cmap(i / max(1, len(landscape.K) - 1)),
            label=f"K = {K:.4f}",
        )
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xlabel(rf"order parameter $\hat\rho({landscape.mode})$")
    ax.set_ylabel(r"$F_K - F_K(\mathrm{uniform})$")
    ax.set_title("free-energy landscape")
    ax.legend(fontsize=8)
    return ax


def density_snapshots(pde_run, *, stationary=None, particles=None, ax=None):
    """PDE densities at the recorded times, the static solution and a particle histogram (all centred)."""
    ax = _axes(ax)
    n = pde_run.snapshots.shape[1]
    theta = np.arange(n) / n
    cmap = plt.get_cmap("Blues")
    for i, (t, rho) in enumerate(zip(pde_run.snapshot_times, pde_run.snapshots)):
        ax.plot(
            theta,
            _centre(rho),
            color=cmap(0.3 + 0.7 * i / max(1, len(pde_run.snapshots) - 1)),
            label=f"PDE t = {t:.3g}",
        )
    if stationary is not None:
        ax.plot(
            theta,
            _centre(stationary.density(theta)),
            color="tab:orange",
            ls="--",
            lw=2,
            label="static solver",
        )
    if particles is not None:
        hist, edges = np.histogram(particles, bins=64, range=(0, 1), density=True)
        ax.step(edges[:-1], _centre(hist), where="post", color="tab:green", lw=1, label="particles (final)")
    ax.set_xlabel(r"$\theta$ (centred on the main peak)")
    ax.set_ylabel(r"$\rho$")
    ax.set_title("density snapshots")
    ax.legend(fontsize=8)
    return ax


def _centre(values: np.ndarray) -> np.ndarray:
    """Rotate grid values so that the phase of the first Fourier mode sits at theta = 1/2."""
    n = values.size
    phase = np.angle(np.fft.rfft(values)[1])
    shift = int(round(phase / (2 * np.pi) * n)) + n // 2  # rfft phase is -2 pi theta_peak
    return np.roll(values, shift)


def convergence(pde_run=None, particle_run=None, *, target: float | None = None, mode: int = 1, ax=None):
    """``|rho_hat(mode)|`` against time for the PDE and the particles, with the static value."""
    ax = _axes(ax)
    if pde_run is not None:
        ax.plot(pde_run.times, pde_run.order_parameter, color="tab:blue", label="PDE")
    if particle_run is not None:
        ax.plot(
            particle_run.times,
            particle_run.moments[:, mode - 1],
            color="tab:green",
            lw=1,
            label=f"particles (N = {particle_run.n_particles})",
        )
    if target is not None:
        ax.axhline(target, color="tab:orange", ls="--", label="static solver")
    ax.set_xlabel("time t")
    ax.set_ylabel(rf"$|\hat\rho({mode})|$")
    ax.set_title("convergence to the stationary state")
    ax.legend(fontsize=8)
    return ax
