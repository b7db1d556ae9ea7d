"""Sharpness by Lanczos / power iteration against explicit Hessians, and the stability thresholds."""

import numpy as np
import pytest
import torch

from thermolens.optim import sharpness


def _quadratic(H: np.ndarray):
    x = torch.nn.Parameter(torch.randn(H.shape[0], dtype=torch.float64))
    Ht = torch.tensor(H)
    return x, (lambda: 0.5 * x @ Ht @ x)


def test_lanczos_and_power_iteration_on_a_quadratic():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    eig = np.array([5.0, 2.0, 1.0, 0.5, 0.1, -0.2, -1.0, -3.0])
    H = q @ np.diag(eig) @ q.T  # Hessian of 0.5 x^T H x: closed form
    x, loss = _quadratic(H)
    top = sharpness.hessian_sharpness(loss, [x], n_iter=8, tol=1e-14)
    assert top.converged and top.value == pytest.approx(5.0, rel=1e-8)
    op = sharpness.hvp_operator(loss, [x])
    power = sharpness.power_iteration(op, [x], n_iter=500, tol=1e-12)
    assert power.value == pytest.approx(5.0, rel=1e-6)  # dominant |eigenvalue| is 5 here


def test_lanczos_finds_the_largest_algebraic_eigenvalue_when_a_negative_one_dominates():
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    H = q @ np.diag([2.0, 1.0, 0.3, -0.5, -1.0, -7.0]) @ q.T
    x, loss = _quadratic(H)
    assert sharpness.hessian_sharpness(loss, [x], n_iter=6, tol=1e-14).value == pytest.approx(2.0, rel=1e-8)


def test_preconditioned_sharpness_is_the_top_eigenvalue_of_p_inverse_h():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(5, 5))
    H = a @ a.T
    p_inv = rng.uniform(0.1, 3.0, size=5)
    x, loss = _quadratic(H)
    got = sharpness.preconditioned_sharpness(loss, [x], lambda v: [v[0] * torch.tensor(p_inv)], n_iter=2000)
    expected = np.linalg.eigvalsh(np.diag(np.sqrt(p_inv)) @ H @ np.diag(np.sqrt(p_inv)))[-1]
    assert got.value == pytest.approx(expected, rel=1e-5)


def test_sharpness_of_a_network_matches_its_explicit_hessian():
    torch.manual_seed(0)
    x, y = torch.randn(20, 3, dtype=torch.float64), torch.randn(20, dtype=torch.float64)
    w1 = torch.nn.Parameter(torch.randn(3, 4, dtype=torch.float64) * 0.7)
    w2 = torch.nn.Parameter(torch.randn(4, dtype=torch.float64) * 0.7)

    def loss_of(a, b):
        return ((torch.tanh(x @ a) @ b - y) ** 2).mean()

    H = torch.autograd.functional.hessian(loss_of, (w1, w2))  # explicit blocks
    n1 = w1.numel()
    full = np.zeros((n1 + 4, n1 + 4))
    full[:n1, :n1] = H[0][0].reshape(n1, n1)
    full[:n1, n1:] = H[0][1].reshape(n1, 4)
    full[n1:, :n1] = H[1][0].reshape(4, n1)
    full[n1:, n1:] = H[1][1]
    expected = np.linalg.eigvalsh(full)[-1]
    got = sharpness.hessian_sharpness(lambda: loss_of(w1, w2), [w1, w2], n_iter=16, tol=1e-14)
    assert got.value == pytest.approx(expected, rel=1e-8)


def test_thresholds():
    # Cohen et al. 2021: 2/eta; Cohen et al. 2022: (2 + 2 beta1) / ((1 - beta1) eta) = 38/eta at beta1 = 0.9
    assert sharpness.gd_threshold(0.01) == pytest.approx(200.0)
    assert sharpness.adam_threshold(1e-3, 0.9) == pytest.approx(38_000.0)


def test_adam_preconditioner_follows_cohen_2022():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64))
    opt = torch.optim.AdamW([p], lr=0.1, betas=(0.9, 0.99), eps=1e-8)
    for k in range(3):
        opt.zero_grad()
        (p ** 2 * torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)).sum().backward()
        opt.step()
    state = opt.state[p]
    t = 3
    vhat = state["exp_avg_sq"] / (1 - 0.99 ** t)
    P = (1 - 0.9 ** t) * (vhat.sqrt() + 1e-8)  # P = (1 - beta1^t) (diag(sqrt(v^)) + eps)
    v = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64)
    got = sharpness.inverse_preconditioner(opt)([v])[0]
    np.testing.assert_allclose(got.numpy(), (v / P).numpy(), rtol=1e-12)
    # the update Adam took is -lr P^{-1} m exactly
    m = state["exp_avg"]
    np.testing.assert_allclose((0.1 * m / P).numpy(), (0.1 * (m / (1 - 0.9 ** t)) / (vhat.sqrt() + 1e-8)).numpy())
