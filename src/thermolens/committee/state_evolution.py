"""Replica-symmetric free entropy and state evolution of the committee machine, K = 1 and K = 2.

Aubin, Maillard, Barbier, Krzakala, Macris & Zdeborova (2018), arXiv:1806.05451, Theorem 1: with
rho = E[w w^T] = I_K,

    f_RS(alpha) = sup over fixed points of  psi_P0(R) + alpha Psi_out(Q) - Tr(Q R) / 2,

where the fixed points (Q, R) (K x K overlaps) solve the state-evolution equations

    R = alpha E[g_out g_out^T] = 2 alpha grad_Q Psi_out(Q),     Q = E[f_w f_w^T] = 2 grad_R psi_P0(R).

Iterating them is exactly the state evolution of AMP. Two initialisations give the two branches:
*uninformed* (what AMP from a random start finds): Q0 = (q0 / K) 1 1^T + 1e-5 I, the 1e-5 in q_d
breaking the symmetry between hidden units; *informed* (started from the teacher): Q0 = (1 - 1e-4) I,
(1 - 1e-8) I for the Rademacher prior.
The equilibrium is the converged fixed point of larger free entropy. A fixed point that does not
meet the tolerance is returned with ``converged=False`` and NaN values, and its residual.

For the Rademacher prior Q = I (perfect generalization) is itself a fixed point (R -> infinity) with
f = -K log 2 exactly (zero label entropy left, prior entropy K log 2 per row); iterations that reach
max |I - Q| < 1e-12 are reported as that point (``perfect=True``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from thermolens.committee.data import check_model
from thermolens.committee.generalization import gibbs_error, plugin_error
from thermolens.committee.quadrature import output_integrals, prior_integrals

BRANCHES = ("uninformed", "informed")
_PERFECT = 1e-12


@dataclass(frozen=True)
class SEConfig:
    """State-evolution settings. ``tol``: converged when max |F(Q) - Q| <= tol (the fixed-point
    residual); ``max_iter``: iterations before giving up; ``damping``: fraction of the old Q kept
    each step; ``polish``: finish with a Newton solve (scipy ``hybr``) once iteration is close,
    keeping the root only if it is a stable fixed point near the iterate. ``quad_step`` (the K = 2
    output integrals' double-exponential trapezoid step; error ~ exp(-c / step)) and ``prior_nodes``
    (Gauss-Hermite nodes per dimension of the Rademacher prior; None: 1000 for K = 1, 200 for K = 2)
    set the quadrature resolution, for checking that a result does not depend on it."""

    K: int = 2
    prior: str = "gaussian"
    activation: str = "sign"
    tol: float = 1e-9
    max_iter: int = 4000
    damping: float = 0.0
    polish: bool = True
    q0: float = 1e-3
    quad_step: float = 0.1
    prior_nodes: int | None = None

    def __post_init__(self) -> None:
        check_model(self.K, self.prior, self.activation)
        if self.K > 2:
            raise ValueError(
                f"K={self.K}: exact state evolution is implemented for K = 1, 2; for larger K use the "
                "committee-symmetric large-K equations (thermolens.committee.large_k_state_evolution)"
            )
        if not (0.0 < self.tol <= 1e-6):
            raise ValueError(f"tol={self.tol} must lie in (0, 1e-6]; fixed points are checked to 1e-8")
        if self.max_iter < 1:
            raise ValueError(f"max_iter={self.max_iter} must be >= 1")
        if not (0.0 <= self.damping < 1.0):
            raise ValueError(f"damping={self.damping} must lie in [0, 1)")
        if not (0.0 < self.q0 < 0.5):
            raise ValueError(f"q0={self.q0} (uninformed start) must lie in (0, 0.5)")
        if not (0.0 < self.quad_step <= 0.5):
            raise ValueError(f"quad_step={self.quad_step} must lie in (0, 0.5] (default 0.1)")
        if self.prior_nodes is not None and self.prior_nodes < 20:
            raise ValueError(f"prior_nodes={self.prior_nodes}; use >= 20, or None for the default")

    @property
    def rule(self) -> dict:
        """The quadrature settings, as keyword arguments of :func:`se_map`."""
        return {"quad_step": self.quad_step, "prior_nodes": self.prior_nodes}


@dataclass(frozen=True)
class FixedPoint:
    """One state-evolution fixed point at ``alpha``.

    ``Q``/``R_hat`` (K, K) overlaps and conjugates; ``q_d``/``q_a``: committee-symmetric projection
    Q ~ q_d I + (q_a / K) 1 1^T (K = 1: q_d = Q, q_a = 0); ``eps_g``: Gibbs generalization error;
    ``eps_plugin``: error of the posterior-mean committee (what AMP's test error measures);
    ``residual``: max |F(Q) - Q|; ``stable``: the point attracts the iteration (reached by iterating,
    or checked with ``is_attracting`` after a Newton polish; None when not converged). NaN values
    when ``converged`` is False.
    """

    alpha: float
    branch: str
    Q: np.ndarray
    R_hat: np.ndarray
    q_d: float
    q_a: float
    free_entropy: float
    eps_g: float
    eps_plugin: float
    residual: float
    n_iter: int
    converged: bool
    perfect: bool
    stable: bool | None


def se_map(
    Q: np.ndarray, alpha: float, prior: str, *, quad_step: float = 0.1, prior_nodes: int | None = None
) -> tuple[np.ndarray, np.ndarray, float]:
    """One state-evolution step: Q -> (Q', R_hat, free entropy evaluated at (Q, R_hat)).

    ``quad_step`` and ``prior_nodes``: the quadrature resolution (:class:`SEConfig`)."""
    psi_out, gg = output_integrals(Q, step=quad_step)
    R_hat = alpha * gg
    psi_in, Q_new = prior_integrals(prior, R_hat, prior_nodes)
    f = psi_in + alpha * psi_out - 0.5 * float(np.sum(Q * R_hat))
    return Q_new, R_hat, f


def project_overlap(Q: np.ndarray) -> tuple[float, float]:
    """Committee-symmetric projection (q_d, q_a) of Q ~ q_d I + (q_a / K) 1 1^T; K = 1: (Q, 0)."""
    K = Q.shape[0]
    if K == 1:
        return float(Q[0, 0]), 0.0
    off = (Q.sum() - np.trace(Q)) / (K * (K - 1))
    return float(np.trace(Q) / K - off), float(K * off)


def _pack(Q: np.ndarray) -> np.ndarray:
    return Q[np.triu_indices(Q.shape[0])]


def _unpack(theta: np.ndarray, K: int) -> np.ndarray:
    Q = np.zeros((K, K))
    Q[np.triu_indices(K)] = theta
    return Q + np.triu(Q, 1).T


def is_attracting(
    Q: np.ndarray, alpha: float, prior: str, *, kick: float = 1e-6, steps: int = 6, **rule
) -> bool:
    """Whether iterating the map pulls a kicked copy of the fixed point ``Q`` back towards it.

    The kick adds a positive semi-definite ``kick * (I + e_0 e_0^T)``: non-specialized fixed points
    (q_d = 0) sit on the boundary of the cone Q >= 0, where the map is not differentiable in every
    direction, so a finite-difference Jacobian would be wrong there; a kick into the cone is not.
    Attracting when the distance to ``Q`` still shrinks between step ``steps/2`` and step ``steps``.
    ``rule``: the quadrature keywords of :func:`se_map` (``SEConfig.rule``).
    """
    K = Q.shape[0]
    delta = kick * (np.eye(K) + np.diag(np.eye(K)[0]))
    if float(np.linalg.eigvalsh(Q + delta).max()) >= 1.0 - 1e-9:
        delta = -delta
    Qk = Q + delta
    dist = []
    for _ in range(steps):
        Qk = se_map(Qk, alpha, prior, **rule)[0]
        dist.append(float(np.max(np.abs(Qk - Q))))
    # after the first steps the slowest mode dominates: compare its size half-way and at the end
    return dist[-1] < dist[steps // 2 - 1]


def _newton(Q: np.ndarray, alpha: float, prior: str, **rule) -> np.ndarray | None:
    from scipy.optimize import root

    K = Q.shape[0]

    def G(theta):
        Qt = _unpack(theta, K)
        if np.any(np.linalg.eigvalsh(Qt) < -1e-12) or np.any(np.linalg.eigvalsh(np.eye(K) - Qt) <= 1e-12):
            return np.full_like(theta, 1e3)  # outside 0 <= Q < I: push the solver back
        return _pack(se_map(Qt, alpha, prior, **rule)[0]) - theta

    sol = root(G, _pack(Q), method="hybr", options={"xtol": 1e-13})
    return _unpack(sol.x, K) if sol.success else None


def initial_overlap(branch: str, config: SEConfig) -> np.ndarray:
    K = config.K
    if branch == "informed":
        # Rademacher: Q = I is a fixed point for every alpha > 0 (1 - q' ~ exp(-c alpha / sqrt(1 - q))),
        # reached from any start close enough to it; Gaussian: Q = I needs R = infinity, start nearby.
        return (1.0 - (1e-8 if config.prior == "binary" else 1e-4)) * np.eye(K)
    if branch == "uninformed":
        if K == 1:
            return np.array([[config.q0]])
        return (config.q0 / K) * np.ones((K, K)) + 1e-5 * np.eye(K)
    raise ValueError(f"unknown branch {branch!r}; choose one of {', '.join(BRANCHES)}")


def _result(alpha, branch, Q, R_hat, f, residual, n_iter, converged, perfect, stable) -> FixedPoint:
    if not converged:
        nan = np.full_like(Q, np.nan)
        return FixedPoint(alpha, branch, nan, nan, math.nan, math.nan, math.nan, math.nan, math.nan,
                          residual, n_iter, False, False, None)
    q_d, q_a = project_overlap(Q)
    return FixedPoint(alpha, branch, Q, R_hat, q_d, q_a, f, gibbs_error(Q), plugin_error(Q), residual,
                      n_iter, True, perfect, stable)


def solve_fixed_point(
    alpha: float, config: SEConfig = SEConfig(), *, branch: str = "uninformed", Q0: np.ndarray | None = None
) -> FixedPoint:
    """Iterate the state evolution at ``alpha`` from the branch's initial overlap (or ``Q0``)."""
    if not np.isfinite(alpha) or alpha < 0:
        raise ValueError(f"alpha={alpha} must be a finite number >= 0 (samples per parameter)")
    K, prior = config.K, config.prior
    Q = initial_overlap(branch, config) if Q0 is None else np.array(Q0, dtype=float)
    if Q.shape != (K, K):
        raise ValueError(f"Q0 has shape {Q.shape}; expected ({K}, {K})")
    residual = math.inf
    for it in range(1, config.max_iter + 1):
        Q_new, R_hat, f = se_map(Q, alpha, prior, **config.rule)
        residual = float(np.max(np.abs(Q_new - Q)))
        if prior == "binary" and float(np.max(np.abs(np.eye(K) - Q_new))) < _PERFECT:
            I = np.eye(K)
            return _result(alpha, branch, I, np.full((K, K), np.inf), -K * math.log(2.0),
                           float(np.max(np.abs(I - Q_new))), it, True, True, True)
        if residual <= config.tol:
            return _result(alpha, branch, Q, R_hat, f, residual, it, True, False, True)
        Q = config.damping * Q + (1.0 - config.damping) * Q_new
        if config.polish and it % 15 == 0 and residual < 1e-3:
            Qn = _newton(Q, alpha, prior, **config.rule)
            if Qn is not None and float(np.max(np.abs(Qn - Q))) < max(100 * residual, 1e-3):
                Q_chk, R_chk, f_chk = se_map(Qn, alpha, prior, **config.rule)
                res_chk = float(np.max(np.abs(Q_chk - Qn)))
                if res_chk <= config.tol and is_attracting(Qn, alpha, prior, **config.rule):
                    return _result(alpha, branch, Qn, R_chk, f_chk, res_chk, it, True, False, True)
    return _result(alpha, branch, Q, Q, math.nan, residual, config.max_iter, False, False, None)


@dataclass(frozen=True)
class SECurve:
    """Both branches of state evolution over an alpha grid, and the equilibrium between them."""

    config: SEConfig
    alpha: np.ndarray
    uninformed: tuple[FixedPoint, ...]
    informed: tuple[FixedPoint, ...]
    equilibrium: tuple[str | None, ...] = field(default=())

    def branch(self, name: str) -> tuple[FixedPoint, ...]:
        return self.uninformed if name == "uninformed" else self.informed

    def equilibrium_points(self) -> list[FixedPoint | None]:
        return [None if e is None else self.branch(e)[i] for i, e in enumerate(self.equilibrium)]

    def _eq(self, attr: str) -> np.ndarray:
        return np.array([math.nan if p is None else getattr(p, attr) for p in self.equilibrium_points()])

    @property
    def eps_g(self) -> np.ndarray:
        return self._eq("eps_g")

    @property
    def free_entropy(self) -> np.ndarray:
        return self._eq("free_entropy")

    @property
    def q(self) -> np.ndarray:
        """Equilibrium overlap matrices, (n_alpha, K, K); NaN where no branch converged."""
        K = self.config.K
        return np.stack([np.full((K, K), np.nan) if p is None else p.Q for p in self.equilibrium_points()])

    @property
    def n_failed(self) -> int:
        """Fixed points attempted that did not converge (points not attempted have ``n_iter == 0``)."""
        return sum(not p.converged and p.n_iter > 0 for p in (*self.uninformed, *self.informed))

    def to_frame(self):
        import pandas as pd

        rows = []
        for name in BRANCHES:
            for i, p in enumerate(self.branch(name)):
                row = {"alpha": p.alpha, "branch": name, "equilibrium": self.equilibrium[i] == name,
                       "q_d": p.q_d, "q_a": p.q_a}
                for a in range(self.config.K):
                    for b in range(a, self.config.K):
                        row[f"Q{a}{b}"] = float(p.Q[a, b])
                row.update(free_entropy=p.free_entropy, eps_g=p.eps_g, eps_plugin=p.eps_plugin,
                           residual=p.residual, n_iter=p.n_iter, converged=p.converged, perfect=p.perfect)
                rows.append(row)
        return pd.DataFrame(rows)


def equilibrium_branch(u: FixedPoint, i: FixedPoint) -> str | None:
    """Branch of larger free entropy among the converged ones (uninformed on ties)."""
    if u.converged and i.converged:
        return "informed" if i.free_entropy > u.free_entropy + 1e-12 else "uninformed"
    if u.converged:
        return "uninformed"
    return "informed" if i.converged else None


def state_evolution(
    alphas: Sequence[float], config: SEConfig = SEConfig(), *, progress=None
) -> SECurve:
    """Solve both branches at every alpha of ``alphas`` (ascending, >= 0).

    ``progress`` is an optional callable taking an iterable and returning it (e.g. a progress bar).
    """
    alpha = np.asarray(alphas, dtype=float)
    if alpha.ndim != 1 or alpha.size == 0:
        raise ValueError("alphas must be a non-empty 1-d sequence")
    if np.any(~np.isfinite(alpha)) or np.any(alpha < 0):
        raise ValueError(f"alpha values must be finite and >= 0, got min {alpha.min()}")
    n = alpha.size
    uninformed: list[FixedPoint | None] = [None] * n
    informed: list[FixedPoint | None] = [None] * n
    # Continuation: the uninformed branch is followed upwards in alpha from the uninformed start (with
    # a 1e-5 kick of q_d at every step so that a specialization instability is never hidden), the
    # informed branch downwards from the informed start. Each point is still iterated to tol.
    order = [("uninformed", i) for i in range(n)] + [("informed", i) for i in reversed(range(n))]
    steps = order if progress is None else progress(order)
    prev: dict[str, FixedPoint | None] = {"uninformed": None, "informed": None}
    for name, i in steps:
        Q0 = _continuation_start(prev[name], name, config)
        point = solve_fixed_point(float(alpha[i]), config, branch=name, Q0=Q0)
        (uninformed if name == "uninformed" else informed)[i] = point
        prev[name] = point
    eq = tuple(equilibrium_branch(u, f) for u, f in zip(uninformed, informed))
    return SECurve(config, alpha, tuple(uninformed), tuple(informed), eq)


def _continuation_start(prev: FixedPoint | None, branch: str, config: SEConfig) -> np.ndarray | None:
    if prev is None or not prev.converged or prev.perfect:
        return None
    Q = prev.Q.copy()
    if branch == "uninformed" and config.K > 1:
        Q += 1e-5 * np.eye(config.K)
    return Q
