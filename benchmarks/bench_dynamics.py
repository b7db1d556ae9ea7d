"""Dynamics benchmark (issue 17): ``thermolens dynamics`` on MiniLM against plain forward passes over the same
tokens (target: the default job within 2x one forward pass per temperature), and the particle model at
N = 10^4 on the circle (target: seconds), its Fourier drift against the direct O(N^2) sum."""

from __future__ import annotations

import statistics
import time

import numpy as np


def _row(*cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _best(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _model() -> list[str]:
    import torch

    from thermolens import models
    from thermolens.experiments.dynamics.measure import MeasureConfig
    from thermolens.experiments.dynamics.study import DynamicsConfig, _sweep, run_dynamics, sequences
    from thermolens.experiments.dynamics.trace import trace
    from thermolens.models.attention import forward_kwargs

    loaded = models.load_model(None, device="cpu")
    config = DynamicsConfig(measure=MeasureConfig(n_boot=500))
    tokens, special = sequences(loaded, None, config)

    def plain():
        with torch.no_grad():
            for start in range(0, tokens.shape[0], config.batch_size):
                ids = tokens[start : start + config.batch_size]
                loaded.base_model(**forward_kwargs(loaded, ids, torch.ones_like(ids)))

    t_forward = _best(plain)
    t_trace = _best(lambda: trace(loaded, tokens, batch_size=config.batch_size))
    t_default = _best(lambda: run_dynamics(loaded, tokens, config, name="MiniLM", special=special), repeats=1)
    result = run_dynamics(loaded, tokens, config, name="MiniLM", special=special)
    temps = tuple(float(t) for t in np.geomspace(0.25, 4, 9))
    sweep_config = DynamicsConfig(temperatures=temps, measure=config.measure)
    t_sweep = _best(lambda: _sweep(loaded, tokens, sweep_config, result.effective, None), repeats=1) / len(temps)
    n = tokens.numel()
    return [
        f"MiniLM (all-MiniLM-L6-v2), {tokens.shape[0]} sequences x {tokens.shape[1]} tokens ({n} tokens), float32, "
        f"batches of {config.batch_size}, 500 bootstrap resamples; best of 3 for the passes:",
        "",
        _row("work", "seconds", "x one plain forward pass", "target"),
        _row("---", "---", "---", "---"),
        _row("plain forward pass (the reference)", f"{t_forward:.2f}", "1.00", ""),
        _row("trace: states, head outputs, logit fits", f"{t_trace:.2f}", f"{t_trace / t_forward:.2f}", ""),
        _row("default job (T = 1): trace + every table", f"{t_default:.2f}", f"{t_default / t_forward:.2f}", ""),
        _row("sweep, per temperature (9 temperatures)", f"{t_sweep:.2f}", f"{t_sweep / t_forward:.2f}", "<= 2"),
        "",
        f"Default-job split: trace {result.timings['trace_s']:.2f} s, tables {result.timings['measure_s']:.2f} s.",
        "",
    ]


def _particles() -> list[str]:
    from thermolens.experiments.dynamics.measure import MeasureConfig
    from thermolens.experiments.dynamics.simulate import SimulationConfig, run_simulation
    from thermolens.meanfield.dynamics import direct_force, fourier_force, force_modes
    from thermolens.meanfield.kernels import noisy_transformer

    default = SimulationConfig()
    lines = [f"Particles (noisy transformer on the circle, N = 10^4 per system, {default.n_sequences} systems, K = "
             f"{default.K_ratio:g} K_#, {default.n_layers} recorded steps tau = {default.tau_layer:g} apart plus the "
             "probe steps, measured by the same tables; no annealing):", "",
             _row("beta", "simulate + measure (s)", "of which simulate (s)", "K_eff / K (last step)", "target"),
             _row("---", "---", "---", "---", "---")]
    for beta in (1.0, 3.0):
        config = SimulationConfig(betas=(beta,), anneal_ratios=(), measure=MeasureConfig(n_boot=200))
        start = time.perf_counter()
        result = run_simulation(config)
        total = time.perf_counter() - start
        eff = result.effective
        lines.append(_row(f"{beta:g}", f"{total:.1f}", f"{result.timings[f'simulate_beta{beta:g}_s']:.1f}",
                          f"{eff['K_eff'].iloc[-1] / eff['K_true'].iloc[-1]:.3f}", "seconds"))
    kernel = noisy_transformer(3.0)
    w_hat = kernel.w_hat(np.arange(force_modes(kernel) + 1))
    theta = np.random.default_rng(0).uniform(0, 1, 10_000)
    t_fourier = statistics.median(_best(lambda: fourier_force(theta, w_hat), 1) for _ in range(5))
    t_direct = _best(lambda: direct_force(theta, kernel.derivative), 1)
    lines += ["", f"One drift evaluation at N = 10^4, beta = 3: Fourier series {t_fourier * 1e3:.1f} ms "
              f"({force_modes(kernel)} modes), direct O(N^2) sum {t_direct * 1e3:.0f} ms "
              f"({t_direct / t_fourier:.0f}x).", ""]
    return lines


def main() -> str:
    lines = ["## dynamics", ""]
    lines += _model()
    lines += _particles()
    return "\n".join(lines)


if __name__ == "__main__":
    print(main())
