"""Generalization error of the committee machine as a function of the overlaps.

Convention (Aubin et al. 2018, arXiv:1806.05451, Sec. 2): ``eps_g = E[(y - y_hat)^2] / 4`` on a fresh
input, so that for +-1 labels it is the misclassification rate, and for K = 2 (labels in {-1, 0, 1})
it is 1/4 at alpha = 0.

Two students are covered:

* the Gibbs student (a sample from the posterior), whose pre-activations are jointly Gaussian with
  the teacher's with E[z z^T] = E[zh zh^T] = I and E[z zh^T] = Q (Nishimori identity): this is the
  ``eps_g(Q)`` that state evolution reports;
* the plug-in student ``y_hat = phi(x W_hat / sqrt(n))`` built from the posterior mean (what AMP
  outputs): E[zh zh^T] = Q, E[z zh^T] = Q. Its error is what AMP's test error on fresh samples
  estimates. For K = 1 it is the Bayes-optimal error arccos(sqrt(q))/pi (Opper & Haussler 1991).

Closed forms. For K = 2 the committee is linear in the signs, ``phi(z) = (s_1 + s_2)/2``, so only
pairwise sign correlations enter, and E[sign(a) sign(b)] = (2/pi) arcsin(corr(a, b)) (Sheppard):

    eps = (1/16) [ 4 + (4/pi) arcsin c_tt - (4/pi) sum_{l,k} arcsin c_{lk} ],

with ``c_tt`` the correlation of the student's two units and ``c_lk`` the teacher-student
correlations. For K = 1: eps = arccos(c)/pi. For odd K >= 3 there is no such reduction and the error
is estimated by Monte Carlo.
"""

from __future__ import annotations

import math

import numpy as np

from thermolens.committee.data import committee_output


def _pair_error_k2(c_tt: float, C: np.ndarray) -> float:
    """(1/4) E[(phi(z) - phi(zh))^2] for K = 2, unit-variance z, zh; teacher units independent."""
    return (4.0 + (4.0 / math.pi) * math.asin(c_tt) - (4.0 / math.pi) * float(np.arcsin(C).sum())) / 16.0


def _check_Q(Q: np.ndarray) -> np.ndarray:
    Q = np.asarray(Q, dtype=float)
    if Q.ndim != 2 or Q.shape[0] != Q.shape[1]:
        raise ValueError(f"overlap matrix must be square K x K, got shape {Q.shape}")
    if not np.all(np.isfinite(Q)):
        raise ValueError("overlap matrix has non-finite entries (a non-converged fixed point?)")
    return 0.5 * (Q + Q.T)


def gibbs_error(Q: np.ndarray, *, n_mc: int = 400_000, seed: int = 0) -> float:
    """Generalization error of the Gibbs student at overlap ``Q`` (K x K, teacher norm I).

    Closed form for K = 1, 2; Monte Carlo (``n_mc`` samples, ``seed``) for K >= 3.
    """
    Q = _check_Q(Q)
    K = Q.shape[0]
    C = np.clip(Q, -1.0, 1.0)
    if K == 1:
        return math.acos(C[0, 0]) / math.pi
    if K == 2:
        return _pair_error_k2(0.0, C)
    return _mc_error(np.eye(K), Q, n_mc=n_mc, seed=seed)


def plugin_error(Q: np.ndarray, *, n_mc: int = 400_000, seed: int = 0) -> float:
    """Generalization error of ``phi(x W_hat / sqrt(n))`` when W_hat^T W_hat / n = W_hat^T W* / n = Q."""
    Q = _check_Q(Q)
    K = Q.shape[0]
    d = np.sqrt(np.clip(np.diag(Q), 1e-300, None))
    if np.any(np.diag(Q) <= 0):
        # a student unit with no overlap predicts independently of the teacher (its sign is a coin)
        return gibbs_error(np.zeros_like(Q), n_mc=n_mc, seed=seed)
    C = np.clip(Q / d[:, None], -1.0, 1.0)  # C[l, k] = corr(student l, teacher k)
    if K == 1:
        return math.acos(C[0, 0]) / math.pi
    if K == 2:
        return _pair_error_k2(float(np.clip(Q[0, 1] / (d[0] * d[1]), -1.0, 1.0)), C)
    return _mc_error(Q, Q, n_mc=n_mc, seed=seed)


def _mc_error(S: np.ndarray, Q: np.ndarray, *, n_mc: int, seed: int) -> float:
    """Monte Carlo of (1/4) E[(phi(z) - phi(zh))^2] with cov(z) = I, cov(zh) = S, cov(z, zh) = Q."""
    K = Q.shape[0]
    cov = np.block([[np.eye(K), Q], [Q.T, S]])
    vals, vecs = np.linalg.eigh(cov)
    root = vecs * np.sqrt(np.clip(vals, 0.0, None))
    g = np.random.default_rng(seed).standard_normal((n_mc, 2 * K)) @ root.T
    diff = committee_output(g[:, :K]) - committee_output(g[:, K:])
    return float(np.mean(diff * diff) / 4.0)
