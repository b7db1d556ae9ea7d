"""K-FAC: captured factors equal their definitions, the damped Kronecker inverse equals the explicit
one, the optimizer's first K-FAC step is the damped natural-gradient step, fallbacks never give NaN."""

import numpy as np
import pytest
import torch

from thermolens.optim import CriticalOptimizer
from thermolens.optim.kfac import KFAC, BlockKey, eigen, precondition


class SplitLinear(torch.nn.Module):
    """y1 = x @ W[:, :2], y2 = x @ W[:, 2:] (the column-slice pattern of HookedTransformer's W_QKV),
    then an nn.Linear head (the F.linear pattern)."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.W = torch.nn.Parameter(torch.randn(4, 5, generator=g, dtype=torch.float64))
        self.head = torch.nn.Linear(5, 3, dtype=torch.float64)

    def forward(self, x):
        y = torch.cat([torch.matmul(x, self.W[:, :2]), torch.matmul(x, self.W[:, 2:])], dim=-1)
        return self.head(torch.tanh(y))


def test_captured_factors_are_the_definitions():
    model = SplitLinear()
    x = torch.randn(7, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    target = torch.randn(7, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    kfac = KFAC(dict(model.named_parameters()), damping=1e-3, stat_decay=0.0, max_dim=100, events=[])
    outputs = {}
    with kfac.capture():
        pre = torch.cat([torch.matmul(x, model.W[:, :2]), torch.matmul(x, model.W[:, 2:])], dim=-1)
        pre.retain_grad()
        hidden = torch.tanh(pre)
        out = model.head(hidden)
    out.retain_grad()
    loss = ((out - target) ** 2).mean()
    loss.backward()
    outputs = {"pre": pre.grad, "out": out.grad}
    kfac.update_factors()
    # definitions (kfac.py docstring): A = a^T a / M, G = M g^T g with M rows
    left, right = BlockKey("W", 0, 2, False), BlockKey("W", 2, 5, False)
    head = BlockKey("head.weight", 0, 3, True)
    assert set(kfac.factors) == {left, right, head}
    np.testing.assert_allclose(kfac.factors[left]["A"], (x.T @ x / 7).float(), rtol=1e-6)
    g = outputs["pre"][:, :2]
    np.testing.assert_allclose(kfac.factors[left]["G"], (7 * g.T @ g).float(), rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(kfac.factors[head]["A"], (hidden.T @ hidden / 7).detach().float(), rtol=1e-5)
    np.testing.assert_allclose(kfac.factors[head]["G"], (7 * outputs["out"].T @ outputs["out"]).float(), rtol=1e-5)


def test_damped_kronecker_inverse_equals_the_explicit_inverse():
    rng = np.random.default_rng(0)
    a, g = rng.normal(size=(4, 6)), rng.normal(size=(3, 5))
    A, G = a @ a.T / 6, g @ g.T / 5  # SPD factors (4x4, 3x3)
    D = rng.normal(size=(4, 3))
    damping = 0.05
    # (A (x) G) vec(D) = vec(A D G) for row-major vec: the explicit damped inverse
    expected = np.linalg.solve(np.kron(A, G) + damping * np.eye(12), D.reshape(-1)).reshape(4, 3)
    va, qa = eigen(torch.tensor(A), damping, "A", [])
    vg, qg = eigen(torch.tensor(G), damping, "G", [])
    got = precondition(torch.tensor(D), va, qa, vg, qg, damping)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10, atol=1e-12)
    # a diagonal factor (side longer than max_dim) is the same formula with Q = I
    vd, qd = eigen(torch.tensor(np.diag(G).copy()), damping, "Gdiag", [])
    expected_diag = np.linalg.solve(np.kron(A, np.diag(np.diag(G))) + damping * np.eye(12), D.reshape(-1))
    np.testing.assert_allclose(precondition(torch.tensor(D), va, qa, vd, qd, damping).numpy().reshape(-1),
                               expected_diag, rtol=1e-10)


def test_first_kfac_step_is_the_damped_natural_gradient_step():
    torch.manual_seed(0)
    layer = torch.nn.Linear(4, 3, bias=False, dtype=torch.float32)
    x, y = torch.randn(32, 4), torch.randn(32, 3)
    w0 = layer.weight.detach().clone()
    damping, lr = 0.1, 0.5
    opt = CriticalOptimizer(layer, lr=lr, preconditioner="kfac", graft="none", betas=(0.0, 0.999),
                            damping=damping, stat_decay=0.0, memory_factor=100.0)
    out = layer(x)
    loss = 0.5 * ((out - y) ** 2).sum(-1).mean()
    out.retain_grad()
    loss.backward()
    grad_out = out.grad.detach()
    D = layer.weight.grad.detach().T.double()  # (in, out) orientation
    opt.step()
    A = (x.T @ x / 32).double()
    G = (32 * grad_out.T @ grad_out).double()
    step = np.linalg.solve(np.kron(A, G) + damping * np.eye(12), D.reshape(-1).numpy()).reshape(4, 3)
    np.testing.assert_allclose((w0 - layer.weight.detach()).T.numpy(), lr * step, rtol=2e-4, atol=1e-6)


def test_failed_inverse_falls_back_with_more_damping_and_is_logged():
    events: list[str] = []
    bad = torch.full((3, 3), float("nan"))
    vals, vecs = eigen(bad, 1e-3, "L A", events)
    assert torch.all(torch.isfinite(vals)) and torch.all(torch.isfinite(vecs))
    assert events and "L A" in events[0] and "identity" in events[0]
    events.clear()
    eigen(torch.eye(3), 1e-3, "ok", events)
    assert events == []


def test_non_finite_gradient_never_reaches_the_weights(make_lm):
    model = make_lm()
    opt = CriticalOptimizer(model, lr=1e-2)
    loss = model(torch.zeros(2, 4, dtype=torch.long)).sum()
    loss.backward()
    model.W_U.grad[0, 0] = float("inf")
    opt.step()
    assert all(torch.all(torch.isfinite(p)) for p in model.parameters())
    assert any("W_U" in e and "non-finite" in e for e in opt.events)
    assert all(torch.all(torch.isfinite(t)) for s in opt.state.values() for t in s.values()
               if isinstance(t, torch.Tensor))  # the moments stay finite: later steps work again


@pytest.mark.parametrize("kwargs, words", [
    (dict(damping=0.0), "damping"), (dict(damping=-1.0), "damping"), (dict(preconditioner="full"), "preconditioner"),
    (dict(lr=0.0), "lr"), (dict(graft="sgd"), "graft"),
])
def test_bad_settings_raise_with_the_fix(kwargs, words):
    with pytest.raises(ValueError, match=words):
        CriticalOptimizer(torch.nn.Linear(2, 2), **kwargs)


def test_a_model_without_attention_is_refused_for_temperature_control():
    with pytest.raises(ValueError, match="HookedTransformer"):
        CriticalOptimizer(torch.nn.Linear(2, 2), temperature_control="track-critical")


def test_diagonal_fisher_direction_grafted_to_adam():
    # one step from zero moments: m^ = g, v^ = g^2, adam = g / (|g| + eps); the diagonal-Fisher
    # direction g / (g^2 + damping) is rescaled to the norm of the Adam direction
    p = torch.nn.Parameter(torch.tensor([[1.0, -2.0], [0.5, 3.0]], dtype=torch.float64))
    layer = torch.nn.Module()
    layer.w = p
    opt = CriticalOptimizer(layer, lr=0.1, preconditioner="diag", damping=0.5, betas=(0.9, 0.99), eps=1e-12)
    g = torch.tensor([[0.3, -1.0], [2.0, 0.1]], dtype=torch.float64)
    p.grad = g.clone()
    before = p.detach().clone()
    opt.step()
    adam = g / g.abs()
    direction = g / (g ** 2 + 0.5)
    expected = before - 0.1 * direction * adam.norm() / direction.norm()
    np.testing.assert_allclose(p.detach().numpy(), expected.numpy(), rtol=1e-9)
