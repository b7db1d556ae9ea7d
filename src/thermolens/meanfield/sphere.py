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
Only this local (linear and quartic) analysis is done on the sphere.
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
    from scipy.special import gammaln, ive

    _check(d, beta)
    if degree < 1:
        raise ValueError("degree must be >= 1 (degree 0 carries the constant -1/beta as well)")
    nu = degree + d / 2 - 1
    log_val = (
        gammaln(d / 2) + (d / 2 - 1) * math.log(2 / beta) + math.log(ive(nu, beta)) + beta - math.log(beta)
    )
    return math.exp(log_val)


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


def sphere_threshold(d: int) -> float:
    """``beta_*(d)``: root of ``d I_(d/2+1)(beta) = I_(d/2)(beta)`` (Brent, xtol 1e-14)."""
    from scipy.optimize import brentq
    from scipy.special import ive

    _check(d)

    def f(beta: float) -> float:
        return d * ive(d / 2 + 1, beta) - ive(d / 2, beta)

    # The ratio I_(nu+1)/I_nu rises from 0 to 1; for small beta it is ~ beta/(d+2), so the root is O(1).
    hi = 1.0
    while f(hi) < 0:
        hi *= 2.0
    return float(brentq(f, 1e-6, hi, xtol=1e-14, rtol=1e-15))
