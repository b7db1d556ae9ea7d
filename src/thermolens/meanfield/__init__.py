"""Mean-field attention models on the circle (and sphere): kernels, stationary states, transitions, dynamics.

Convention (arXiv:2604.16288): ``F_K(rho) = int rho log rho - K int int W(theta - theta') rho rho`` on
``theta in [0, 1)``; ``K_# = 1/(2 max_k W_hat(k))``. See docs/meanfield.md for every formula.
"""

from thermolens.meanfield.dynamics import (
    ParticleRun,
    PDERun,
    direct_force,
    fourier_force,
    linear_decay_rate,
    simulate_particles,
    simulate_pde,
)
from thermolens.meanfield.kernels import (
    KERNEL_NAMES,
    Kernel,
    LinearStability,
    doi_onsager,
    from_callable,
    from_coefficients,
    hegselmann_krause,
    kuramoto_daido,
    linear_stability,
    make_kernel,
    noisy_transformer,
)
from thermolens.meanfield.sphere import funk_hecke_eigenvalue, sphere_landau, sphere_threshold
from thermolens.meanfield.stationary import (
    Branch,
    Landscape,
    StationaryState,
    follow_branch,
    follow_state,
    free_energy_landscape,
    global_minimize,
    solve_stationary,
    uniform_state,
)
from thermolens.meanfield.transition import (
    CriticalCoupling,
    LandauExpansion,
    PhaseDiagram,
    Threshold,
    TruncationWarning,
    branch_expansion,
    critical_coupling,
    landau_expansion,
    phase_diagram,
    threshold,
    transition_boundary,
)

__all__ = [
    "KERNEL_NAMES", "Kernel", "LinearStability", "doi_onsager", "from_callable", "from_coefficients",
    "hegselmann_krause", "kuramoto_daido", "linear_stability", "make_kernel", "noisy_transformer",
    "Branch", "Landscape", "StationaryState", "follow_branch", "follow_state", "free_energy_landscape", "global_minimize",
    "solve_stationary", "uniform_state",
    "CriticalCoupling", "LandauExpansion", "PhaseDiagram", "Threshold", "TruncationWarning", "branch_expansion",
    "critical_coupling", "landau_expansion", "phase_diagram", "threshold", "transition_boundary",
    "ParticleRun", "PDERun", "direct_force", "fourier_force", "linear_decay_rate", "simulate_particles",
    "simulate_pde",
    "funk_hecke_eigenvalue", "sphere_landau", "sphere_threshold",
]
