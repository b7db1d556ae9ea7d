"""The noisy transformer on the sphere S^(d-1): linear stability and the Landau expansion in every d.

Free energy ``F_K(rho) = int rho log rho - K int int W(x . y) rho(x) rho(y)`` with ``rho`` a density with
respect to the uniform probability ``sigma`` on ``S^(d-1)`` and ``W(t) = (exp(beta t) - 1)/beta`` (the
follow-up of Mun & Rosenzweig on spheres, arXiv:2606.05140). By the Funk--Hecke formula the operator
``f -> int W(x . y) f(y) d sigma(y)`` acts on spherical harmonics of degree ``l`` by

    lambda_l = Gamma(d/2) (2/beta)^(d/2 - 1) I_(l + d/2 - 1)(beta) / beta          (l >= 1),

which for d = 2 is ``I_l(beta)/beta`` (the circle). Hence ``K_# = 1/(2 lambda_1)``. Writing ``u = x . e`` and
``rho = 1 + a u + b (u^2 - 1/d) + ...``, with ``E u^2 = 1/d``, ``E u^4 = 3/(d(d+2))`` under sigma, expanding
entropy to fourth order and eliminating the slaved degree-2 part gives

    F - F(1) = (1 - 2 K lambda_1) a^2 / (2 d) + c_4 a^4,   c_4 = [1 - (d - 1)/(d alpha_2)] / (4 d (d + 2)),

with ``alpha_2 = 1 - 2 K_# lambda_2 = 1 - lambda_2/lambda_1``. The bifurcation is supercritical exactly when
``lambda_2 / lambda_1 = I_(d/2+1)(beta) / I_(d/2)(beta) < 1/d``; for d = 2 this is the circle's
``I_2 < I_1 / 2``. The threshold ``beta_*(d)`` is the root of ``d I_(d/2+1)(beta) = I_(d/2)(beta)``.
``sphere_critical`` adds a global check within zonal densities (the degree-1 branch followed through its
fold, ``K_c`` where its free energy crosses the uniform one); for d = 2 it reproduces the circle solver.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def _check(d: int, beta: float | None = None) -> None:
    if not isinstance(d, (int, np.integer)) or d < 2:
        raise ValueError(f"d={d} must be an integer >= 2 (the sphere S^(d-1) sits in R^d)")
    if beta is not None and (not beta > 0 or not math.isfinite(beta)):
        raise ValueError(f"beta={beta} must be a positive finite number")


def funk_hecke_eigenvalue(d: int, beta: float, degree: int) -> float:
    """``lambda_l`` of ``W(t) = (exp(beta t) - 1)/beta`` on degree-``l`` harmonics of S^(d-1) (l >= 1)."""
    _check(d, beta)
    if degree < 1:
        raise ValueError("degree must be >= 1 (degree 0 carries the constant -1/beta as well)")
    return float(_zonal_eigenvalues(d, beta, degree)[degree])


@dataclass(frozen=True)
class SphereLandau:
    d: int
    beta: float
    K_sharp: float
    eigenvalue_ratio: float  # lambda_2 / lambda_1
    quartic: float

    @property
    def transition(self) -> str:
        """Local prediction: ``continuous`` when the bifurcation at ``K_#`` is supercritical."""
        return "continuous" if self.quartic > 0 else "discontinuous"


def sphere_landau(d: int, beta: float) -> SphereLandau:
    _check(d, beta)
    l1 = funk_hecke_eigenvalue(d, beta, 1)
    l2 = funk_hecke_eigenvalue(d, beta, 2)
    ratio = l2 / l1
    alpha = 1.0 - ratio
    quartic = (1.0 - (d - 1) / (d * alpha)) / (4.0 * d * (d + 2))
    return SphereLandau(int(d), float(beta), 1.0 / (2.0 * l1), ratio, quartic)


def _log_bessel_i(nu: np.ndarray | float, beta: float) -> np.ndarray:
    """``log I_nu(beta)`` without overflow or underflow, also for the large orders of wide models (d ~ 10^3).

    Where the scaled ``ive`` is representable, ``log ive + beta``; where it underflows (order far above
    ``beta``), the series ``I_nu(b) = (b/2)^nu / Gamma(nu + 1) * 0F1(; nu + 1; b^2/4)``, whose
    hypergeometric factor is then close to 1.
    """
    from scipy.special import gammaln, hyp0f1, ive

    nu = np.asarray(nu, dtype=np.float64)
    scaled = ive(nu, beta)
    with np.errstate(divide="ignore"):
        direct = np.log(scaled) + beta
        series = nu * math.log(beta / 2) - gammaln(nu + 1) + np.log(hyp0f1(nu + 1, beta**2 / 4))
    return np.where(scaled > 1e-250, direct, series)


def sphere_threshold(d: int) -> float:
    """``beta_*(d)``: root of ``d I_(d/2+1)(beta) = I_(d/2)(beta)`` (Brent, xtol 1e-14)."""
    from scipy.optimize import brentq

    _check(d)

    def f(beta: float) -> float:
        log_i = _log_bessel_i(np.array([d / 2, d / 2 + 1]), beta)
        return math.log(d) + float(log_i[1] - log_i[0])

    # The ratio I_(nu+1)/I_nu rises from 0 to 1; for small beta it is ~ beta/(d+2), so the root is O(1).
    hi = 1.0
    while f(hi) < 0:
        hi *= 2.0
    return float(brentq(f, 1e-6, hi, xtol=1e-14, rtol=1e-15))


# --------------------------------------------------------------------------------------------------
# global check among zonal densities


@dataclass(frozen=True)
class SphereCritical:
    """``K_#`` and ``K_c`` on S^(d-1) from the degree-1 branch of zonal states (see ``sphere_critical``)."""

    d: int
    beta: float
    K_sharp: float
    K_c: float
    transition: str
    jump: float  # <x . e> of the minimiser at K_c (0 when continuous)


def _zonal_eigenvalues(d: int, beta: float, n_degrees: int) -> np.ndarray:
    """``lambda_l`` for l = 0 .. n_degrees (l = 0 without the constant -1/beta; it never matters here)."""
    from scipy.special import gammaln

    nu = np.arange(n_degrees + 1) + d / 2 - 1
    log_lam = gammaln(d / 2) + (d / 2 - 1) * math.log(2 / beta) + _log_bessel_i(nu, beta) - math.log(beta)
    return np.exp(log_lam)


def _zonal_polynomials(d: int, n_degrees: int, n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss--Jacobi nodes' weights (summing to 1) and ``P_l(u)`` (``P_l(1) = 1``) at the nodes."""
    from scipy.special import eval_chebyt, eval_gegenbauer, roots_jacobi

    a = (d - 3) / 2
    u, w = roots_jacobi(n_nodes, a, a)  # weight (1 - u^2)^((d-3)/2): the law of x . e under sigma
    degrees = np.arange(n_degrees + 1)[:, None]
    if d == 2:
        P = eval_chebyt(degrees, u[None, :])
    else:
        P = eval_gegenbauer(degrees, (d - 2) / 2, u[None, :]) / eval_gegenbauer(degrees, (d - 2) / 2, 1.0)
    return w / w.sum(), P


def sphere_critical(
    d: int, beta: float, *, n_degrees: int = 40, n_nodes: int = 200, r_max: float = 0.95
) -> SphereCritical:
    """``K_c`` on S^(d-1) along the branch of zonal states born from degree-1 harmonics.

    ``W`` increases with ``x . y``, so by the rearrangement inequality on the sphere (Baernstein--Taylor)
    a global minimiser can be taken zonal and increasing in ``u = x . e``. With
    ``log rho = sum_l phi_l P_l(u) - log Z`` the self-consistency equation is ``phi_l = 2 K lambda_l a_l``,
    ``a_l = E[rho P_l]/E[P_l^2]``, solved by Newton along the branch parametrised by ``r = E_sigma[rho u]``
    (K unknown), with Gauss--Jacobi
    quadrature. ``K_c`` is the smallest K on that branch with ``F = F(uniform)``. Only this branch is
    searched (no random starts), so the result is a global statement only within that family.
    """
    from scipy.optimize import brentq

    from thermolens.meanfield.stationary import _newton

    _check(d, beta)
    lam = _zonal_eigenvalues(d, beta, n_degrees)[1:]
    weights, P = _zonal_polynomials(d, n_degrees, n_nodes)
    P = P[1:]  # (L, n_nodes), degrees 1 .. L
    norms = P**2 @ weights
    K_sharp = float(1.0 / (2.0 * lam[0]))

    def density(phi):
        pot = phi @ P
        top = pot.max()
        e = np.exp(pot - top)
        Z = e @ weights
        return e / Z, top + math.log(Z), pot

    def system(r):
        def fun(x):
            phi, K = x[:-1], x[-1]
            rho, _, _ = density(phi)
            a = (P * rho) @ weights / norms
            cov = (P * rho) @ (P * weights).T - np.outer((P * rho) @ weights, (P * rho) @ weights)
            res = np.append(phi - 2.0 * K * lam * a, (P[0] * rho) @ weights - r)
            jac = np.zeros((lam.size + 1, lam.size + 1))
            jac[:-1, :-1] = np.eye(lam.size) - 2.0 * K * (lam / norms)[:, None] * cov
            jac[:-1, -1] = -2.0 * lam * a
            jac[-1, :-1] = cov[0]
            return res, jac

        return fun

    def delta_F(x):
        phi, K = x[:-1], x[-1]
        rho, log_Z, pot = density(phi)
        a = (P * rho) @ weights / norms
        return float((rho * (pot - log_Z)) @ weights - K * np.sum(lam * a**2 * norms))

    x = np.zeros(lam.size + 1)
    x[-1] = K_sharp
    r, step, points = 1e-3, 1e-3, []
    x[0] = 2.0 * K_sharp * lam[0] * 1e-3 / norms[0]
    while r <= r_max:
        x_new, ok = _newton(system(r), x)
        if not ok:
            raise ValueError(f"sphere d={d}, beta={beta}: Newton failed at r={r:.3g}; raise n_degrees")
        points.append((r, x_new, delta_F(x_new)))
        if x_new[-1] > 1.5 * K_sharp:
            break
        x, step = x_new, min(2 * step, 0.02)
        r += step
    for (r1, x1, f1), (r2, x2, f2) in zip(points[:-1], points[1:]):
        if f1 >= 0.0 > f2:
            guess = {"x": x1}

            def f(rr):
                xx, ok = _newton(system(rr), guess["x"])
                guess["x"] = xx
                return delta_F(xx)

            root = brentq(f, r1, r2, xtol=1e-14, rtol=1e-15)
            K_c = float(guess["x"][-1])
            if K_c < K_sharp * (1 - 1e-10):
                return SphereCritical(int(d), float(beta), K_sharp, K_c, "discontinuous", float(root))
    return SphereCritical(int(d), float(beta), K_sharp, K_sharp, "continuous", 0.0)
