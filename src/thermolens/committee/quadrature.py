"""Gaussian expectations of the committee machine's state evolution, to ~1e-8.

Every quantity of the replica formula (Aubin et al. 2018, arXiv:1806.05451, Theorem 1) is an
expectation over a K-dimensional Gaussian (K = 1, 2 here) or over the prior's sign vectors:

* output side, K = 2: ``E_{omega ~ N(0, Q)} sum_y F(Z_out(y; omega, I - Q))``. The integrand varies on
  the scale sqrt(V_ll) across the lines omega_l = 0 while omega spreads over sqrt(Q), so plain
  Gauss-Hermite converges slowly as Q -> I; an iterated double-exponential (sinh-map trapezoid) rule
  centred on those lines keeps ~1e-9 relative accuracy up to Q = 0.999 I;
* K = 1 output side: the perceptron integrals are done in the variable x = omega / sqrt(1 - q)
  where the integrand decays like a Gaussian, which keeps 1e-10 accuracy up to q -> 1;
* prior side: Gaussian prior in closed form; Rademacher prior by an exact sum over teacher sign
  vectors and Gauss-Hermite over the effective-channel noise.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy.special import log_ndtr, roots_hermitenorm

from thermolens.committee.channels import output_channel, prior_denoise, sign_configurations

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


@functools.lru_cache(maxsize=64)
def gauss_hermite(n_nodes: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Tensor Gauss-Hermite rule for E over N(0, I_dim): nodes (N^dim, dim), weights (N^dim,)."""
    x, w = roots_hermitenorm(n_nodes)
    w = w / math.sqrt(2.0 * math.pi)
    grids = np.meshgrid(*([x] * dim), indexing="ij")
    wgrids = np.meshgrid(*([w] * dim), indexing="ij")
    nodes = np.stack([g.ravel() for g in grids], axis=-1)
    weights = np.prod(np.stack([g.ravel() for g in wgrids], axis=-1), axis=-1)
    nodes.setflags(write=False)
    weights.setflags(write=False)
    return nodes, weights


def psd_sqrt(M: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix (negative rounding errors clipped to 0)."""
    vals, vecs = np.linalg.eigh(0.5 * (M + M.T))
    return (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T


# --------------------------------------------------------------------------------------------------
# output side


def perceptron_output(q: float, n_nodes: int = 160) -> tuple[float, float]:
    """K = 1 sign channel, rho = 1: Psi_out(q) = E sum_y Z log Z and m_hat(q) = E sum_y (dZ)^2 / Z.

    With t = sqrt(q / (1 - q)) and xi ~ N(0, 1): Psi_out = 2 E[Phi(t xi) log Phi(t xi)] and
    m_hat = 2 E[phi(t xi)^2 / Phi(t xi)] / (1 - q). For t > 1 the expectation is rewritten as
    int phi(x) G(x) phi(x / t) / t dx with G smooth, and done by Gauss-Hermite in x.
    """
    if q <= 0.0:
        # t = 0: Z = 1/2 for both labels
        return -math.log(2.0), 2.0 * (1.0 / (2.0 * math.pi)) / 0.5
    x, w = gauss_hermite(n_nodes, 1)
    x = x[:, 0]
    t = math.sqrt(q / (1.0 - q))
    if t <= 1.0:
        u = t * x
        logphi = -0.5 * u * u - _LOG_SQRT_2PI
        logPhi = log_ndtr(u)
        psi = 2.0 * np.sum(w * np.exp(logPhi) * logPhi)
        mhat = 2.0 * np.sum(w * np.exp(2.0 * logphi - logPhi)) / (1.0 - q)
        return float(psi), float(mhat)
    # x-space: E_xi F(t xi) = int F(x) phi(x/t)/t dx = E_{x ~ N(0,1)} [F(x)/phi(x)] phi(x/t)/t
    logphi = -0.5 * x * x - _LOG_SQRT_2PI
    logPhi = log_ndtr(x)
    dens = np.exp(-0.5 * (x / t) ** 2 - _LOG_SQRT_2PI) / t
    psi = 2.0 * np.sum(w * np.exp(logPhi - logphi) * logPhi * dens)
    mhat = 2.0 * np.sum(w * np.exp(logphi - logPhi) * dens) / (1.0 - q)
    return float(psi), float(mhat)


def sinh_rule(center: np.ndarray, width: float, reach: float, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of int f(x) dx by the trapezoid rule in u, x = center + width * sinh(u).

    The map puts nodes densely (spacing ~ width * step) near ``center`` and sparsely far away; for
    integrands analytic in a strip that decay like a Gaussian the error falls like exp(-c / step)
    (double-exponential quadrature, Takahasi & Mori 1974). ``center`` may be an array (one rule per
    entry, same node count); ``reach`` is the distance from the center that must be covered.
    """
    u_max = math.asinh(reach / width)
    n_half = int(math.ceil(u_max / step))
    u = np.arange(-n_half, n_half + 1) * step
    x = np.asarray(center)[..., None] + width * np.sinh(u)
    w = np.broadcast_to(width * np.cosh(u) * step, x.shape)
    return x, w


def _gaussian_nodes_k2(Q: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Nodes omega (N, 2) and weights (N,) for E over omega ~ N(0, Q), 2 x 2 Q, resolving the
    lines omega_1 = 0 and omega_2 = 0 near which Z_out varies on the scale sqrt(V_ll), V = I - Q.

    omega_1 = L11 xi_1, omega_2 = L21 xi_1 + L22 xi_2 (Cholesky): the line omega_1 = 0 is xi_1 = 0 and
    omega_2 = 0 is xi_2 = -L21 xi_1 / L22, so an outer sinh rule centred at 0 and, for every outer
    node, an inner sinh rule centred on that line put the nodes where the integrand is sharp.
    """
    V = np.eye(2) - Q
    sig = np.sqrt(np.clip(np.diag(V), 1e-300, None))
    L11 = math.sqrt(max(Q[0, 0], 0.0))
    if L11 < 1e-12:
        L21, L22 = 0.0, math.sqrt(max(Q[1, 1], 0.0))
    else:
        L21 = Q[1, 0] / L11
        L22 = math.sqrt(max(Q[1, 1] - L21 * L21, 0.0))
    reach = 9.0  # phi(9) ~ 1e-18
    if L11 < 1e-12:
        x1, w1 = np.zeros(1), np.ones(1)
    else:
        x1, w1 = sinh_rule(0.0, min(1.0, sig[0] / L11), reach, step)
        w1 = w1 * np.exp(-0.5 * x1 * x1) / math.sqrt(2 * math.pi)
    if L22 < 1e-12:
        x2, w2 = np.zeros((len(x1), 1)), np.ones((len(x1), 1))
    else:
        width = sig[1] / L22
        # a feature wider than the Gaussian needs no following: centre the rule on the bulk then
        center = np.clip(-L21 * x1 / L22, -reach, reach) if width < 1.0 else np.zeros_like(x1)
        x2, w2 = sinh_rule(center, min(1.0, width), 2 * reach, step)
        w2 = w2 * np.exp(-0.5 * x2 * x2) / math.sqrt(2 * math.pi)
    X1 = np.broadcast_to(x1[:, None], x2.shape)
    omega = np.stack([L11 * X1, L21 * X1 + L22 * x2], axis=-1).reshape(-1, 2)
    weights = (w1[:, None] * w2).ravel()
    return omega, weights


def output_integrals(Q: np.ndarray, step: float = 0.1) -> tuple[float, np.ndarray]:
    """``Psi_out(Q)`` and ``E[g_out g_out^T]`` (K x K) for the sign committee, K in {1, 2}.

    ``Psi_out(Q) = E_{omega ~ N(0,Q)} sum_y Z log Z`` with ``Z = Z_out(y; omega, I - Q)``; the second
    return is ``2 grad_Q Psi_out = E sum_y grad Z grad Z^T / Z`` (so that ``R_hat = alpha * it``).
    ``step`` is the trapezoid step of the K = 2 double-exponential rule (halving it squares the error).
    """
    K = Q.shape[0]
    if K == 1:
        psi, mhat = perceptron_output(float(Q[0, 0]))
        return psi, np.array([[mhat]])
    if K != 2:
        raise ValueError(f"exact output integrals are implemented for K = 1, 2, not K={K}")
    omega, w = _gaussian_nodes_k2(Q, step)
    V = np.eye(K) - Q
    _, Z, dZ, _ = output_channel(omega, V)  # (L, N), (L, N, K)
    safe = Z > 1e-300
    Zs = np.where(safe, Z, 1.0)
    zlogz = np.where(safe, Z * np.log(Zs), 0.0)
    psi = float(np.sum(w * zlogz.sum(axis=0)))
    fisher = np.where(safe[..., None, None], dZ[..., :, None] * dZ[..., None, :] / Zs[..., None, None], 0.0)
    mhat = np.einsum("n,lnij->ij", w, fisher)
    return psi, 0.5 * (mhat + mhat.T)


# --------------------------------------------------------------------------------------------------
# prior side


def prior_integrals(prior: str, R_hat: np.ndarray, n_nodes: int | None = None) -> tuple[float, np.ndarray]:
    """``psi_P0(R_hat)`` and ``Q = E[f_w f_w^T]`` for the effective channel ``B = R_hat w* + R_hat^{1/2} xi``.

    Gaussian prior, closed form: ``psi = (Tr R - log det(I + R)) / 2``, ``Q = (I + R)^{-1} R``.
    Rademacher prior: exact average over the teacher sign vectors, Gauss-Hermite over ``xi``.
    """
    K = R_hat.shape[0]
    if prior == "gaussian":
        M = np.eye(K) + R_hat
        psi = 0.5 * (np.trace(R_hat) - np.linalg.slogdet(M)[1])
        Q = np.linalg.solve(M, R_hat)
        return float(psi), 0.5 * (Q + Q.T)
    if prior == "binary":
        # tanh-like posterior means have poles ~ 1/sqrt(R) away from the real axis: many nodes
        xi, w = gauss_hermite(n_nodes or (1000 if K == 1 else 200), K)
        # w* and -w* contribute equally (flip xi too), so half of the sign vectors suffice
        S = sign_configurations(K)[: 2 ** (K - 1)]
        noise = xi @ psd_sqrt(R_hat)  # (N, K)
        psi = 0.0
        Q = np.zeros((K, K))
        for s in S:
            mean, _, log_z = prior_denoise("binary", R_hat, s @ R_hat + noise, with_cov=False)
            psi += float(np.sum(w * log_z))
            Q += np.einsum("n,ni,nj->ij", w, mean, mean)
        psi /= len(S)
        Q /= len(S)
        return psi, 0.5 * (Q + Q.T)
    raise ValueError(f"unknown prior {prior!r}; choose gaussian or binary")
