"""Committee gap benchmark (issue 16): AMP at K = 3, n = 1e4, alpha = 10 against its 60 s target and its
state-evolution prediction; AMP's cost per iteration against K; a 10-alpha x 10-seed gap study at
n = 2000 against its 30 min target. The peer (sphinxteam/tramp) is reported in the README's
committee section (benchmarks/peer_tramp.py, its own virtual environment)."""

from __future__ import annotations

import time

import numpy as np


def _row(*cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _k3_large() -> list[str]:
    from thermolens.committee import AMPConfig, generate, run_amp
    from thermolens.committee.general_k import SymmetricConfig, solve_symmetric

    t0 = time.perf_counter()
    data = generate(10_000, 10.0, 3, "gaussian", seed=np.random.default_rng([0, 0]))
    t_gen = time.perf_counter() - t0
    run = run_amp(data, AMPConfig(K=3, prior="gaussian", n_test=20_000), seed=0)
    se = solve_symmetric(10.0, SymmetricConfig(K=3), branch="uninformed")
    del data
    return [
        "AMP, K = 3, Gaussian prior, n = 10^4, alpha = 10 (m = 10^5, X 4 GB float32), random start:",
        "",
        _row("quantity", "AMP", "SE (uninformed branch)", "target"),
        _row("---", "---", "---", "---"),
        _row("iterations (wall)", f"{run.seconds:.1f} s ({run.n_iter} iterations, converged {run.converged})", "",
             "< 60 s"),
        _row("per iteration", f"{run.seconds / run.n_iter:.2f} s", "", ""),
        _row("drawing the instance", f"{t_gen:.1f} s", "", ""),
        _row("q_d", f"{run.q_d:.4f}", f"{se.q_d:.4f}", ""),
        _row("q_a", f"{run.q_a:.4f}", f"{se.q_a:.4f}", ""),
        _row("test error (20 000 fresh samples)", f"{run.eps_test:.4f}", f"plug-in {se.eps_plugin:.4f}", ""),
        "",
    ]


def _cost_per_k() -> list[str]:
    from thermolens.committee import AMPConfig, generate, run_amp

    lines = ["Cost per AMP iteration against K (n = 2000, m = 20 000, Gaussian prior, random start, 8 iterations; "
             "K = 1, 2 exact channel, odd K committee-symmetric):", "",
             _row("K", "s / iteration", "ratio to K = 1"), _row("---", "---", "---")]
    base = None
    for K in (1, 2, 3, 5, 7, 9, 11):
        data = generate(2000, 10.0, K, "gaussian", seed=np.random.default_rng([0, 0]))
        run_amp(data, AMPConfig(K=K, max_iter=1, n_test=100), seed=0)  # compile, warm the caches
        run = run_amp(data, AMPConfig(K=K, max_iter=8, tol=1e-12, n_test=100), seed=0)
        per = run.seconds / run.n_iter
        base = base or per
        lines.append(_row(K, f"{per:.3f}", f"{per / base:.1f}"))
    return lines + [""]


def _gap_study() -> list[str]:
    from thermolens.committee import AMPConfig
    from thermolens.committee.gap import GapConfig, gap_study

    config = GapConfig(K=2, prior="binary", alphas=tuple(np.round(np.linspace(1.5, 2.4, 10), 6)), ns=(2000,),
                       seeds=tuple(range(10)), amp=AMPConfig(n_test=20_000))
    t0 = time.perf_counter()
    study = gap_study(config)
    total = time.perf_counter() - t0
    s = study.summary()
    return [
        "Gap study, K = 2 Rademacher prior, 10 alphas (1.5..2.4) x 10 seeds at n = 2000, AMP from both starts "
        "(200 runs) and SE from the same starts:",
        "",
        _row("part", "wall time", "target"), _row("---", "---", "---"),
        _row("whole study", f"{total / 60:.1f} min", "< 30 min"),
        _row("AMP (200 runs)", f"{study.seconds['amp'] / 60:.1f} min", ""),
        _row("SE (10 alphas, 2 starts)", f"{study.seconds['se']:.0f} s", ""),
        "",
        "success_random: " + ", ".join(f"{a:g}: {v:.1f}" for a, v in zip(s["alpha"], s["success_random"])),
        "",
    ]


def main() -> str:
    return "\n".join(["## gap", ""] + _k3_large() + _cost_per_k() + _gap_study())
