"""``thermolens meanfield``: phase transitions of mean-field attention models on the circle."""

from __future__ import annotations

from pathlib import Path

import typer

from thermolens.cli._common import console, handle_errors, parse_grid, print_json, track

app = typer.Typer(
    help="Mean-field attention on the circle: K_#, K_c, order of the transition, dynamics.",
    no_args_is_help=True,
)

KERNEL_HELP = "noisy-transformer | doi-onsager | hegselmann-krause | kuramoto-daido"
_GRID_OPTION = {"noisy-transformer": "beta", "hegselmann-krause": "R", "kuramoto-daido": "m"}


def _kernel(kernel: str, beta: float | None, R: float | None, m: float | None, coefficients: str | None):
    from thermolens.meanfield import from_coefficients, make_kernel

    if coefficients:
        try:
            values = [float(v) for v in coefficients.split(",") if v.strip()]
        except ValueError:
            raise ValueError(
                f"cannot read --coefficients '{coefficients}'; give W_hat(0),W_hat(1),..."
            ) from None
        return from_coefficients(values)
    return make_kernel(kernel, beta=beta, R=R, m=m)


def _critical(ker, **kwargs):
    """``critical_coupling`` with its truncation warning printed as one line on stderr."""
    import warnings

    from thermolens.meanfield import critical_coupling

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = critical_coupling(ker, **kwargs)
    for w in caught:
        console.print(f"[yellow]warning:[/] {w.message}", soft_wrap=True)
    return res


@app.command("critical")
@handle_errors
def critical(
    kernel: str = typer.Option("noisy-transformer", "--kernel", help=KERNEL_HELP),
    beta: float = typer.Option(None, "--beta", help="inverse temperature of the noisy transformer (> 0)"),
    R: float = typer.Option(None, "--R", help="Hegselmann-Krause interaction radius in radians (> 0)"),
    m: float = typer.Option(None, "--m", help="Kuramoto-Daido second-harmonic weight"),
    coefficients: str = typer.Option(None, "--coefficients", help="custom kernel: W_hat(0),W_hat(1),..."),
    modes: int = typer.Option(None, "--modes", help="Fourier truncation (default: from the kernel's decay)"),
    starts: int = typer.Option(8, "--starts", help="random starts of the global minimisation at K_#"),
    seed: int = typer.Option(0, "--seed", help="seed of the random starts"),
    out: Path = typer.Option(
        None, "--out", help="optional run directory: branches, bifurcation and free-energy-landscape figures"
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="reuse a non-empty --out"),
    dimension: int = typer.Option(
        2, "--dimension", help="noisy transformer on the sphere S^(d-1) in R^d (2 = the circle)"
    ),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object to stdout"),
    quiet: bool = typer.Option(False, "--quiet", help="no human output"),
) -> None:
    """K_# (linear instability), K_c (global minimiser) and whether the transition is continuous."""
    if kernel == "noisy-transformer" and beta is None and coefficients is None:
        beta = 1.0
    if dimension != 2:
        _critical_sphere(kernel, dimension, beta, json_out, quiet)
        return
    ker = _kernel(kernel, beta, R, m, coefficients)
    res = _critical(ker, n_modes=modes, n_starts=starts, seed=seed)
    summary = res.summary()
    if out is not None and res.branch is not None:
        _write_critical_run(
            out,
            overwrite,
            ker,
            res,
            {
                "kernel": kernel,
                "beta": beta,
                "R": R,
                "m": m,
                "coefficients": coefficients,
                "modes": modes,
                "starts": starts,
            },
            seed,
        )
    if json_out:
        print_json(summary)
    elif not quiet:
        console.print(
            f"{res.kernel}: K_# = {res.K_sharp:.12g}, K_c = {res.K_c:.12g} ({res.transition}, "
            f"critical mode {res.critical_mode}, jump {res.jump:.6g})"
        )


def _critical_sphere(kernel: str, d: int, beta: float, json_out: bool, quiet: bool) -> None:
    from thermolens.meanfield import sphere_critical, sphere_landau

    if kernel != "noisy-transformer":
        raise ValueError(f"--dimension applies to the noisy transformer only, not {kernel}")
    res, landau = sphere_critical(d, beta), sphere_landau(d, beta)
    summary = {
        "kernel": kernel, "dimension": d, "beta": beta, "K_sharp": res.K_sharp, "K_c": res.K_c,
        "transition": res.transition, "critical_mode": 1, "jump": res.jump,
        "landau_quartic": landau.quartic, "eigenvalue_ratio": landau.eigenvalue_ratio,
    }  # fmt: skip
    if json_out:
        print_json(summary)
    elif not quiet:
        console.print(f"noisy transformer on S^{d - 1}: K_# = {res.K_sharp:.12g}, K_c = {res.K_c:.12g} "
                      f"({res.transition})")  # fmt: skip


def _write_critical_run(out: Path, overwrite: bool, ker, res, config: dict, seed: int) -> None:
    import numpy as np
    import pandas as pd

    from thermolens import io
    from thermolens.meanfield import free_energy_landscape
    from thermolens.meanfield.kernels import bifurcation_couplings
    from thermolens.meanfield.stationary import follow_branch, follow_state
    from thermolens.report import meanfield as fig

    run_dir = io.prepare_run_dir(out, kind="meanfield-critical", overwrite=overwrite)
    with io.RunRecorder(run_dir, "meanfield-critical", io.command_line(), config, seed=seed) as rec:
        rec.summary.update(res.summary())
        # the critical branch plus up to two more that bifurcate from uniform inside the drawn window
        branches = [res.branch] + [
            follow_branch(ker, k, K_max=1.5 * res.K_sharp, n_modes=res.n_modes)
            for k, _ in bifurcation_couplings(ker, K_max=1.15 * res.K_sharp)
            if k != res.critical_mode and k <= res.n_modes
        ][:2]
        if res.minimizer is not None and not any(
            res.minimizer.delta_F == s.delta_F for s in res.branch.states
        ):
            # K_c is set by a state found by the global search: draw its own branch too
            branches.append(follow_state(ker, res.minimizer, K_limits=(0.0, 1.5 * res.K_sharp)))
        io.write_table(run_dir / "branches.parquet", pd.concat([b.to_frame() for b in branches]))
        K_lo = min(min(float(b.K.min()) for b in branches), res.K_c)
        window = (K_lo - 0.5 * (res.K_sharp - K_lo) - 0.02 * res.K_sharp, 1.15 * res.K_sharp)
        io.save_figure(
            fig.bifurcation_diagram(branches, K_sharp=res.K_sharp, K_c=res.K_c, K_window=window).figure,
            run_dir / "bifurcation.png",
        )
        K_values = res.K_sharp * np.array([0.97, 0.99, 1.0, 1.01, 1.03])
        if res.K_c < res.K_sharp:
            K_values = np.sort(np.append(K_values, res.K_c))
        r_hi = float(np.interp(K_values.max(), *_sorted_stable(res.branch))) if res.branch.states else 0.2
        r_max = float(min(0.95, max(0.2, 1.3 * max(r_hi, res.jump))))
        land = free_energy_landscape(ker, K_values, mode=res.critical_mode, r_max=r_max, n_modes=res.n_modes)
        io.write_table(run_dir / "landscape.parquet", pd.DataFrame(land.to_frame()))
        io.save_figure(fig.free_energy_landscape(land).figure, run_dir / "landscape.png")


def _sorted_stable(branch):
    """``(K, r)`` of the stable part of a branch, sorted by K (for interpolation)."""
    import numpy as np

    K, r = branch.K[branch.stable], branch.r[branch.stable]
    order = np.argsort(K)
    return K[order], r[order]


@app.command("threshold")
@handle_errors
def threshold_cmd(
    kernel: str = typer.Option("noisy-transformer", "--kernel", help=KERNEL_HELP),
    starts: int = typer.Option(8, "--starts", help="random starts of each global check"),
    seed: int = typer.Option(0, "--seed", help="seed of the random starts"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object to stdout"),
    quiet: bool = typer.Option(False, "--quiet", help="no human output"),
) -> None:
    """Parameter value where the transition turns from continuous to discontinuous (Landau root, checked)."""
    from thermolens.meanfield import threshold

    res = threshold(kernel, n_starts=starts, seed=seed)
    if json_out:
        print_json(res.summary())
    elif not quiet:
        console.print(
            f"{kernel}: {res.parameter}_* = {res.threshold:.12g}; continuous {res.continuous_side}; "
            f"global check {'agrees' if res.consistent else 'DISAGREES'}"
        )


@app.command("phase-diagram")
@handle_errors
def phase_diagram_cmd(
    kernel: str = typer.Option("noisy-transformer", "--kernel", help=KERNEL_HELP),
    beta: str = typer.Option(None, "--beta", help="grid of beta: start:stop:count or x,y,z"),
    R: str = typer.Option(None, "--R", help="grid of R: start:stop:count or x,y,z"),
    m: str = typer.Option(None, "--m", help="grid of m: start:stop:count or x,y,z"),
    modes: int = typer.Option(None, "--modes", help="Fourier truncation (default: from the kernel's decay)"),
    starts: int = typer.Option(8, "--starts", help="random starts of the global minimisation per point"),
    seed: int = typer.Option(0, "--seed", help="seed of the random starts"),
    out: Path = typer.Option(Path("runs/meanfield-phase-diagram"), "--out", help="run directory"),
    overwrite: bool = typer.Option(False, "--overwrite", help="reuse a non-empty --out"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object to stdout"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
) -> None:
    """K_# and K_c along a grid of the kernel parameter; table, figure and manifest in --out."""
    import time
    import warnings

    from thermolens import io
    from thermolens.meanfield import phase_diagram

    if kernel not in _GRID_OPTION:
        raise ValueError(f"kernel {kernel!r} has no parameter; use one of {', '.join(_GRID_OPTION)}")
    name = _GRID_OPTION[kernel]
    text = {"beta": beta, "R": R, "m": m}[name]
    if text is None:
        raise ValueError(f"give the --{name} grid, e.g. --{name} 0.1:5:64")
    values = parse_grid(text, name=name, positive=name != "m")
    run_dir = io.prepare_run_dir(out, kind="meanfield-phase-diagram", overwrite=overwrite)
    config = {"kernel": kernel, name: values, "modes": modes, "starts": starts}
    with io.RunRecorder(run_dir, "meanfield-phase-diagram", io.command_line(), config, seed=seed) as rec:
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = phase_diagram(
                kernel,
                values,
                n_modes=modes,
                n_starts=starts,
                seed=seed,
                progress=lambda it: track(it, total=len(values), description="phase diagram", quiet=quiet),
            )
        if caught:
            console.print(
                f"[yellow]warning:[/] {len(caught)} of {len(values)} points: {caught[0].message}",
                soft_wrap=True,
            )
        rec.summary["truncation_warnings"] = len(caught)
        rec.timings["solve"] = time.perf_counter() - start
        io.write_table(run_dir / "phase_diagram.parquet", res.to_frame())
        from thermolens.report import meanfield as fig

        ax = fig.phase_diagram(res)
        io.save_figure(ax.figure, run_dir / "phase_diagram.png")
        rec.summary.update(
            {
                "parameter": name,
                "threshold": res.landau_threshold,
                "n_discontinuous": sum(t == "discontinuous" for t in res.transition),
                "n_points": len(values),
                "seconds": rec.timings["solve"],
            }
        )
    if json_out:
        print_json({**rec.summary, "out": str(run_dir)})
    elif not quiet:
        console.print(f"wrote {run_dir} ({len(values)} points in {rec.timings['solve']:.1f} s)")


@app.command("simulate")
@handle_errors
def simulate(
    kernel: str = typer.Option("noisy-transformer", "--kernel", help=KERNEL_HELP),
    beta: float = typer.Option(None, "--beta", help="inverse temperature of the noisy transformer (> 0)"),
    R: float = typer.Option(None, "--R", help="Hegselmann-Krause interaction radius in radians (> 0)"),
    m: float = typer.Option(None, "--m", help="Kuramoto-Daido second-harmonic weight"),
    K: float = typer.Option(..., "--K", help="coupling K (>= 0)"),
    particles: int = typer.Option(100_000, "--particles", help="number of particles N"),
    steps: int = typer.Option(5000, "--steps", help="time steps of the particle system"),
    dt: float = typer.Option(0.002, "--dt", help="time step of the particle system (Heun)"),
    pde_dt: float = typer.Option(1e-3, "--pde-dt", help="time step of the PDE"),
    seed: int = typer.Option(0, "--seed", help="seed of the particle noise and initial positions"),
    out: Path = typer.Option(Path("runs/meanfield-simulate"), "--out", help="run directory"),
    overwrite: bool = typer.Option(False, "--overwrite", help="reuse a non-empty --out"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object to stdout"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
) -> None:
    """Particles (Fourier-series interaction, cost O(N M)) and the PDE, compared with the static solver."""
    import time

    import numpy as np

    from thermolens import io
    from thermolens.meanfield import global_minimize, linear_stability, simulate_particles, simulate_pde

    if K < 0:
        raise ValueError(f"--K {K} must be >= 0")
    if kernel == "noisy-transformer" and beta is None:
        beta = 1.0
    ker = _kernel(kernel, beta, R, m, None)
    mode = linear_stability(ker).critical_mode or 1
    run_dir = io.prepare_run_dir(out, kind="meanfield-simulate", overwrite=overwrite)
    config = {
        "kernel": kernel,
        "beta": beta,
        "R": R,
        "m": m,
        "K": K,
        "particles": particles,
        "steps": steps,
        "dt": dt,
        "pde_dt": pde_dt,
    }
    with io.RunRecorder(run_dir, "meanfield-simulate", io.command_line(), config, seed=seed) as rec:
        t0 = time.perf_counter()
        states = global_minimize(ker, K, seed=seed)
        target = abs(states[0].rho_hat[mode]) if states else 0.0
        t1 = time.perf_counter()
        prun = simulate_particles(
            ker,
            K,
            n_particles=particles,
            n_steps=steps,
            dt=dt,
            seed=seed,
            progress=lambda it: track(it, total=steps + 1, description="particles", quiet=quiet),
        )
        t2 = time.perf_counter()
        pde = simulate_pde(ker, K, t_final=steps * dt, dt=pde_dt, mode=mode)
        t3 = time.perf_counter()
        rec.timings.update({"static": t1 - t0, "particles": t2 - t1, "pde": t3 - t2})
        io.write_table(run_dir / "particles.parquet", prun.to_frame())
        io.write_table(run_dir / "pde.parquet", pde.to_frame())
        from thermolens.report import meanfield as fig

        io.save_figure(
            fig.convergence(pde, prun, target=target, mode=mode).figure, run_dir / "convergence.png"
        )
        ax = fig.density_snapshots(pde, stationary=states[0] if states else None, particles=prun.final.theta)
        io.save_figure(ax.figure, run_dir / "snapshots.png")
        late = prun.moments[len(prun.moments) // 2 :, mode - 1]
        rec.summary.update(
            {
                "K_sharp": linear_stability(ker).K_sharp,
                "mode": mode,
                "static_order_parameter": target,
                "pde_order_parameter": float(pde.order_parameter[-1]),
                "particle_order_parameter": float(np.mean(late)),
                "particle_order_parameter_std": float(np.std(late)),
                "pde_free_energy_monotone": bool(np.all(np.diff(pde.delta_F) <= 1e-12)),
                "force_modes": prun.n_force_modes,
                "seconds_per_particle_step": (t2 - t1) / steps,
            }
        )
    if json_out:
        print_json({**rec.summary, "out": str(run_dir)})
    elif not quiet:
        s = rec.summary
        console.print(
            f"|rho_hat({mode})|: static {s['static_order_parameter']:.5f}, PDE "
            f"{s['pde_order_parameter']:.5f}, particles {s['particle_order_parameter']:.5f} "
            f"+- {s['particle_order_parameter_std']:.5f}; wrote {run_dir}"
        )
