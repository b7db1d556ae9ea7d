"""PDE and particle dynamics against the static solver; the command line."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from thermolens.cli import app
from thermolens.meanfield import (
    direct_force,
    fourier_force,
    global_minimize,
    kuramoto_daido,
    linear_decay_rate,
    linear_stability,
    noisy_transformer,
    simulate_particles,
    simulate_pde,
)
from thermolens.meanfield.dynamics import fit_exponential_rate, fit_power_exponent, force_modes


def test_pde_free_energy_never_increases_and_reaches_static_state():
    kernel, K = noisy_transformer(1.0), 1.0
    run = simulate_pde(kernel, K, t_final=3.0, dt=1e-3, n_grid=128)
    assert np.max(np.diff(run.delta_F)) <= 1e-12
    static = global_minimize(kernel, K)[0]
    assert run.delta_F[-1] == pytest.approx(static.delta_F, abs=1e-10)
    assert run.order_parameter[-1] == pytest.approx(static.rho_hat[1], abs=1e-8)


def test_pde_decay_rate_below_K_sharp_matches_linear_theory():
    kernel, K, dt = noisy_transformer(1.0), 0.8, 1e-4
    run = simulate_pde(kernel, K, t_final=0.6, dt=dt, amplitude=1e-4, n_grid=64)
    late = run.times > 0.1
    fitted = fit_exponential_rate(run.times[late], run.distance[late])
    # continuum rate (2 pi)^2 (1 - 2 K W_hat(1)); the IMEX step multiplies the mode by
    # (1 + dt q^2 2 K W_hat) / (1 + dt q^2) per step, q = 2 pi: an O(dt q^2) = 0.4 % shift here.
    q2, g = (2 * np.pi) ** 2, 2 * K * kernel.w_hat(1)
    discrete = -np.log((1 + dt * q2 * g) / (1 + dt * q2)) / dt
    assert fitted == pytest.approx(discrete, rel=1e-4)
    assert fitted == pytest.approx(linear_decay_rate(kernel, K, 1), rel=5e-3)


@pytest.mark.slow
def test_pde_algebraic_decay_at_K_sharp():
    kernel = noisy_transformer(1.0)
    K = linear_stability(kernel).K_sharp
    run = simulate_pde(kernel, K, t_final=2000.0, dt=1e-2, amplitude=0.3, n_grid=32)
    late = run.times > 300
    # amplitude equation da/dt = -g a^3 -> a ~ t^(-1/2) (transition is continuous at beta = 1)
    assert fit_power_exponent(run.times[late], run.distance[late]) == pytest.approx(0.5, abs=0.01)


def test_fourier_force_equals_direct_sum():
    kernel = noisy_transformer(2.0)
    theta = np.random.default_rng(0).uniform(size=800)
    M = force_modes(kernel)
    np.testing.assert_allclose(
        fourier_force(theta, kernel.w_hat(np.arange(M + 1))),
        direct_force(theta, kernel.derivative),
        atol=1e-11,
    )


def test_particles_agree_with_static_solver_in_distribution():
    # Kuramoto (m = 0) at K = 2: static rho_hat(1) from the solver; N = 4000 particles fluctuate by ~0.01.
    kernel, K = kuramoto_daido(0.0), 2.0
    static = global_minimize(kernel, K)[0]
    run = simulate_particles(kernel, K, n_particles=4000, n_steps=1500, dt=2e-3, seed=3, n_records=60)
    late = run.moments[run.times > 1.0, 0]
    assert np.mean(late) == pytest.approx(static.rho_hat[1], abs=0.02)
    # the same seed gives the same numbers
    again = simulate_particles(kernel, K, n_particles=4000, n_steps=20, dt=2e-3, seed=3, n_records=5)
    np.testing.assert_array_equal(
        again.final.theta,
        simulate_particles(kernel, K, n_particles=4000, n_steps=20, dt=2e-3, seed=3, n_records=5).final.theta,
    )


def test_particle_blow_up_is_refused():
    with pytest.raises(ValueError, match="lower dt"):
        simulate_particles(kuramoto_daido(0.0), 50.0, n_particles=100, n_steps=5, dt=0.05, seed=0)


def test_pde_blow_up_is_refused():
    with pytest.raises(ValueError, match="lower dt"):
        simulate_pde(noisy_transformer(5.0), 5.0, t_final=1.0, dt=0.5, n_grid=64)


runner = CliRunner()


def test_cli_critical_json():
    res = runner.invoke(app, ["meanfield", "critical", "--kernel", "doi-onsager", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["transition"] == "continuous" and data["K_sharp"] == pytest.approx(3 * np.pi / 4)
    assert {"K_sharp", "K_c", "transition", "critical_mode"} <= set(data)


def test_cli_critical_run_directory(tmp_path):
    res = runner.invoke(
        app,
        [
            "meanfield",
            "critical",
            "--kernel",
            "noisy-transformer",
            "--beta",
            "3.0",
            "--json",
            "--out",
            str(tmp_path / "c"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["transition"] == "discontinuous"
    for name in ("manifest.json", "branches.parquet", "bifurcation.png", "landscape.png"):
        assert (tmp_path / "c" / name).is_file()


def test_cli_critical_on_the_sphere():
    res = runner.invoke(app, ["meanfield", "critical", "--beta", "1.0", "--dimension", "3", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    # d = 3, beta = 1: lambda_1 = (cosh 1 - sinh 1) = 1/e, so K_# = e / 2 (Funk--Hecke, sphere.py)
    assert data["K_sharp"] == pytest.approx(np.e / 2, rel=1e-12) and data["transition"] == "continuous"
    bad = runner.invoke(app, ["meanfield", "critical", "--kernel", "doi-onsager", "--dimension", "3"])
    assert bad.exit_code == 2


def test_cli_threshold_json():
    res = runner.invoke(app, ["meanfield", "threshold", "--kernel", "kuramoto-daido", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["parameter"] == "m" and data["threshold"] == pytest.approx(0.5)
    assert data["continuous_side"] == "below"


def test_cli_phase_diagram_and_simulate(tmp_path):
    res = runner.invoke(
        app,
        [
            "meanfield",
            "phase-diagram",
            "--kernel",
            "noisy-transformer",
            "--beta",
            "2:3:3",
            "--out",
            str(tmp_path / "pd"),
            "--quiet",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["threshold"] == pytest.approx(2.4469183112890, abs=1e-8)
    assert (tmp_path / "pd" / "phase_diagram.png").is_file()
    res = runner.invoke(
        app,
        [
            "meanfield",
            "simulate",
            "--beta",
            "1",
            "--K",
            "1.2",
            "--particles",
            "500",
            "--steps",
            "50",
            "--out",
            str(tmp_path / "sim"),
            "--quiet",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["pde_free_energy_monotone"] is True


@pytest.mark.parametrize(
    "args",
    [
        ["critical", "--kernel", "noisy-transformer", "--beta", "0"],
        ["critical", "--kernel", "hegselmann-krause", "--R", "-1"],
        ["critical", "--kernel", "nonsense"],
        ["threshold", "--kernel", "doi-onsager"],
        ["simulate", "--K", "-0.5"],
        ["phase-diagram", "--kernel", "noisy-transformer", "--beta", "-1:2:3"],
    ],
)
def test_cli_bad_input_exits_2(args):
    res = runner.invoke(app, ["meanfield", *args])
    assert res.exit_code == 2, res.output


def test_too_small_truncation_warns_with_estimated_error():
    from thermolens.meanfield import TruncationWarning, critical_coupling, hegselmann_krause

    with pytest.warns(TruncationWarning, match="truncation error"):
        critical_coupling(hegselmann_krause(1.0), n_modes=16)
    res = runner.invoke(
        app, ["meanfield", "critical", "--kernel", "hegselmann-krause", "--R", "1", "--modes", "16", "--json"]
    )
    assert res.exit_code == 0
    assert "truncation error" in res.output
