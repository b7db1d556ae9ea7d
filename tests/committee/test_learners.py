"""Gradient-descent / Adam learners of the committee machine against closed forms and state evolution."""

import math

import numpy as np
import pytest
import torch

from thermolens.committee import CommitteeData, SEConfig, generate, solve_fixed_point
from thermolens.committee.learners import (
    ADAM_BETAS,
    ADAM_EPS,
    LearnerConfig,
    _adam_direction,
    _block_rows,
    _loss_and_gradient,
    train_committee,
)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _mc_tol(eps: float, n_test: int) -> float:
    """4 standard errors of a test error whose per-sample loss lies in [0, 1]."""
    return 4 * math.sqrt(max(eps * (1 - eps), 1e-4) / n_test)


def _split(data, config):
    m_val = int(round(config.val_fraction * data.m))
    return data.m - m_val, m_val


def _committee_error(X: np.ndarray, y: np.ndarray, W: np.ndarray) -> float:
    y_hat = np.sign(np.sign(X.astype(np.float64) @ W).sum(axis=1))
    return float(np.mean((y - y_hat) ** 2) / 4)


@pytest.mark.parametrize("method", ["adam", "gd"])
def test_perceptron_learner_lies_between_hebb_and_bayes(method):
    # K = 1, Gaussian teacher, alpha = 6, n = 200: 960 training + 240 validation samples.
    data = generate(200, 6.0, K=1, prior="gaussian", seed=1)
    config = LearnerConfig(method=method, n_inits=1, max_steps=1000, patience=300)
    n_test = 20_000
    r = train_committee(data, config, seed=0, n_test=n_test)
    R = _cos(r.W[:, 0], data.W_star[:, 0])
    # For Gaussian inputs two perceptrons disagree with probability angle / pi, exactly at every n
    # (the classical eps = arccos(R) / pi of the perceptron, see generalization.py): the fresh test
    # error must match it at the learned overlap R.
    assert r.eps_test == pytest.approx(math.acos(R) / math.pi, abs=_mc_tol(r.eps_test, n_test))
    # Hebb's rule w = X^T y, the simplest learner, reaches R = sqrt(2 a / (2 a + pi)) at a = m_train / n
    # (Vallet 1989; Engel & Van den Broeck 2001, Sec. 2.2): 0.868 at a = 4.8, error 0.165. Its overlap
    # on this very instance is the peer value; the trained perceptron must beat both.
    m_train, _ = _split(data, config)
    a_train = m_train / data.n
    R_hebb_theory = math.sqrt(2 * a_train / (2 * a_train + math.pi))
    w_hebb = data.X[:m_train].astype(np.float64).T @ data.y[:m_train]
    R_hebb = _cos(w_hebb, data.W_star[:, 0])
    assert R > max(R_hebb, R_hebb_theory) + 0.05
    # ...and cannot beat the Bayes-optimal error at the labels it has seen (train and validation,
    # alpha = 6): state evolution's plug-in error 0.0710 (Opper & Haussler's arccos(sqrt q)/pi).
    # Allowed: Monte Carlo error only.
    eps_bayes = solve_fixed_point(6.0, SEConfig(K=1, prior="gaussian")).eps_plugin
    assert r.eps_test > eps_bayes - _mc_tol(eps_bayes, n_test)
    # For the perceptron a sharp, margin-like student is close to Bayes (the maximal-stability
    # perceptron is within ~10% of the Bayes error; Engel & Van den Broeck 2001, Ch. 3): it must come
    # within 0.02 of the Bayes error of its training set, alpha_train = 4.8 (SE: 0.0871).
    # Measured: 0.085 (Adam, R = 0.962), 0.096 (GD, R = 0.954); Hebb on this instance R = 0.864.
    eps_bayes_train = solve_fixed_point(a_train, SEConfig(K=1, prior="gaussian")).eps_plugin
    assert r.eps_test < eps_bayes_train + 0.02
    # Q is W^T W* / n with the student on the sphere |w| = sqrt(n): R times the teacher's norm / sqrt(n).
    assert r.Q[0, 0] == pytest.approx(R * np.linalg.norm(data.W_star) / math.sqrt(data.n), rel=1e-10)
    assert (r.q_d, r.q_a) == (r.Q[0, 0], 0.0)
    np.testing.assert_allclose(np.linalg.norm(r.W, axis=0), math.sqrt(data.n), rtol=1e-12)


@pytest.mark.parametrize("K", [1, 2, 3])
def test_blocked_gradient_matches_autograd(K):
    # The hand-derived gradient, accumulated over row blocks (n = 5000 in float64 gives 64-row blocks,
    # so m = 300 spans 5 of them, the last one short), against torch autograd of the same loss.
    gen = torch.Generator().manual_seed(K)
    m, n, beta = 300, 5000, 1.7
    X = torch.randn(m, n, generator=gen, dtype=torch.float64)
    y = torch.sign(torch.randn(m, generator=gen, dtype=torch.float64))
    y[:20] = 0.0  # ties of an even committee are part of the loss
    Vt = torch.randn(K, n, generator=gen, dtype=torch.float64)
    Vt /= Vt.norm(dim=1, keepdim=True)
    assert _block_rows(X) == 64
    loss, error, grad = _loss_and_gradient(X, y, Vt, beta)

    V = Vt.clone().requires_grad_(True)
    T = torch.tanh(beta * (X @ V.T))  # (m, K)
    y_beta = T[:, 0] if K == 1 else torch.tanh(beta * T.sum(dim=1))
    reference = 0.25 * ((y - y_beta) ** 2).mean()
    reference.backward()
    assert loss == pytest.approx(float(reference.detach()), rel=1e-12)
    torch.testing.assert_close(grad, V.grad, rtol=1e-10, atol=1e-14)
    y_hat = torch.sign(torch.sign(X @ Vt.T).sum(dim=1))
    assert error == pytest.approx(float(((y - y_hat) ** 2).mean() / 4), abs=1e-15)


def test_adam_direction_matches_torch_adam():
    # The written-out Adam update against torch.optim.Adam (same betas and eps, no weight decay).
    gen = torch.Generator().manual_seed(0)
    w_ours = torch.randn(3, 50, generator=gen)
    w_torch = w_ours.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([w_torch], lr=0.02, betas=ADAM_BETAS, eps=ADAM_EPS)
    moments = (torch.zeros_like(w_ours), torch.zeros_like(w_ours))
    for step in range(1, 6):
        grad = torch.randn(3, 50, generator=gen) * 10.0 ** (-step)
        w_ours -= 0.02 * _adam_direction(grad, moments, step)
        w_torch.grad = grad.clone()
        optimizer.step()
    torch.testing.assert_close(w_ours, w_torch.detach(), rtol=1e-6, atol=1e-7)


def _k2_error_closed_form(W: np.ndarray, W_star: np.ndarray) -> float:
    """(1/4) E[(phi(z) - phi(zh))^2] for K = 2 committees phi = (s_1 + s_2) / 2 on Gaussian inputs.

    phi is linear in the signs, so by Sheppard's formula E[sign a sign b] = (2/pi) arcsin corr(a, b):
    eps = (1/4)[1 + (1/pi) arcsin c_ss + (1/pi) arcsin c_tt - (1/pi) sum_lk arcsin C_lk]
    with c_ss, c_tt the correlations of the two teacher units and of the two student units and C_lk the
    student-teacher correlations (docs/committee.md, generalization._pair_error_k2 for c_ss = 0).
    """
    U = W / np.linalg.norm(W, axis=0)
    U_star = W_star / np.linalg.norm(W_star, axis=0)
    c_tt, c_ss = float(U[:, 0] @ U[:, 1]), float(U_star[:, 0] @ U_star[:, 1])
    C = U.T @ U_star
    return 0.25 * (1 + (math.asin(c_ss) + math.asin(c_tt) - float(np.arcsin(C).sum())) / math.pi)


def test_k2_learner_beats_chance_and_its_error_matches_its_overlaps():
    # K = 2, Gaussian teacher, alpha = 4, n = 300. A student independent of the teacher has error 1/4
    # (docs/committee.md); the learner must do clearly better, and its fresh test error must equal the
    # exact closed form at its own geometry (Monte Carlo error only).
    data = generate(300, 4.0, K=2, prior="gaussian", seed=2)
    n_test = 20_000
    r = train_committee(data, LearnerConfig(n_inits=1, max_steps=800, patience=200), seed=0, n_test=n_test)
    assert r.eps_test < 0.25 - 0.08
    closed_form = _k2_error_closed_form(r.W, data.W_star)
    assert r.eps_test == pytest.approx(closed_form, abs=_mc_tol(r.eps_test, n_test))
    # the aligned overlap: W^T W* / n with the student units in the order of larger trace, and its
    # committee-symmetric projection
    Q_raw = r.W.T @ data.W_star / data.n
    order = [0, 1] if np.trace(Q_raw) >= np.trace(Q_raw[[1, 0]]) else [1, 0]
    np.testing.assert_allclose(r.Q, Q_raw[order], rtol=1e-12)
    off = (r.Q[0, 1] + r.Q[1, 0]) / 2
    assert r.q_d == pytest.approx(np.trace(r.Q) / 2 - off) and r.q_a == pytest.approx(2 * off)


def test_k3_learner_beats_chance_and_its_error_matches_its_geometry():
    # K = 3, Gaussian teacher, alpha = 8, n = 300. Chance is 1/2 (odd K: labels are fair coins); for
    # scale, SE's non-specialized Gibbs error at alpha = 8 is 0.271 (docs/committee.md); measured 0.229.
    # The test error must match a Monte Carlo over the exact 6 x 6 Gram matrix of the unit directions
    # of teacher and student: for Gaussian x both committees only see these six projections.
    data = generate(300, 8.0, K=3, prior="gaussian", seed=7)
    n_test, n_mc = 20_000, 200_000
    r = train_committee(data, LearnerConfig(n_inits=1, max_steps=800, patience=200), seed=0, n_test=n_test)
    assert r.eps_test < 0.5 - 0.15
    U = np.concatenate([data.W_star, r.W], axis=1)
    U /= np.linalg.norm(U, axis=0)
    vals, vecs = np.linalg.eigh(U.T @ U)
    z = np.random.default_rng(0).standard_normal((n_mc, 6)) @ (vecs * np.sqrt(np.clip(vals, 0, None))).T
    phi = np.sign(np.sign(z).reshape(n_mc, 2, 3).sum(axis=2))  # (n_mc, 2): teacher, student
    mc = float(np.mean((phi[:, 0] - phi[:, 1]) ** 2) / 4)
    assert r.eps_test == pytest.approx(mc, abs=_mc_tol(r.eps_test, n_test) + _mc_tol(mc, n_mc))


def test_early_stopping_returns_the_best_validated_weights():
    # K = 2, alpha = 2, n = 200 (320 training samples for 400 weights): the training error keeps falling
    # while the validation error stops improving, so the run must stop after `patience` steps without
    # improvement, long before max_steps, and return the weights of its best check.
    data = generate(200, 2.0, K=2, prior="gaussian", seed=3)
    config = LearnerConfig(n_inits=1, max_steps=3000, patience=150, eval_every=10)
    r = train_committee(data, config, seed=0, n_test=1000)
    assert r.best_step < r.steps < config.max_steps
    assert r.steps - r.best_step == config.patience  # both on the eval_every grid, patience a multiple of it
    m_train, _ = _split(data, config)
    assert _committee_error(data.X[m_train:], data.y[m_train:], r.W) == pytest.approx(r.eps_val, abs=1e-12)
    assert _committee_error(data.X[:m_train], data.y[:m_train], r.W) == pytest.approx(r.eps_train, abs=1e-12)
    steps, betas, losses, trains, vals, q_ds, q_as = r.history.T
    best = np.flatnonzero(vals == vals.min())[-1]  # the last of equal validation errors is kept
    assert vals[best] == r.eps_val and steps[best] == r.best_step
    assert trains[best] == r.eps_train
    assert (q_ds[best], q_as[best]) == pytest.approx((r.q_d, r.q_a), abs=1e-5)  # float32 weights there
    assert trains[-1] < trains[best]  # training kept improving after the validation error stopped
    assert steps[-1] == r.steps and np.all(np.diff(steps) == config.eval_every)
    assert losses[-1] < losses[0]  # the smoothed training loss does go down
    # geometric annealing of beta from beta0 over max_steps
    ratio = config.beta_final / config.beta0
    np.testing.assert_allclose(betas, config.beta0 * ratio ** (steps / config.max_steps))


def test_annealing_reaches_beta_final_without_early_stop():
    data = generate(100, 2.0, K=1, prior="gaussian", seed=4)
    config = LearnerConfig(n_inits=1, max_steps=55, eval_every=10, patience=1000, beta0=0.5, beta_final=4.0)
    calls = []
    r = train_committee(data, config, seed=0, n_test=1000, progress=lambda *args: calls.append(args))
    assert r.steps == r.steps_total == 55
    assert r.history[0, 1] == pytest.approx(0.5) and r.history[-1, 1] == pytest.approx(4.0)
    assert list(r.history[:, 0]) == [0, 10, 20, 30, 40, 50, 55]  # the last step is always checked
    assert calls[-1] == (55, 55) and all(0 <= d <= t for d, t in calls)
    frame = r.to_frame()
    assert list(frame.columns) == ["step", "beta", "loss", "eps_train", "eps_val", "q_d", "q_a"]
    assert frame["step"].tolist() == [0, 10, 20, 30, 40, 50, 55] and frame["eps_val"].min() == r.eps_val


def test_best_validated_start_is_chosen():
    # Three random starts on a small K = 2 instance end at different validation errors; the result must
    # be the start with the lowest one, and its weights must be those of that start.
    data = generate(200, 2.0, K=2, prior="gaussian", seed=5)
    config = LearnerConfig(n_inits=3, max_steps=600, patience=150)
    r = train_committee(data, config, seed=1, n_test=1000)
    assert len(set(r.eps_val_inits)) > 1  # the choice matters on this instance
    assert r.eps_val == min(r.eps_val_inits) and r.best_init == int(np.argmin(r.eps_val_inits))
    m_train, _ = _split(data, config)
    assert _committee_error(data.X[m_train:], data.y[m_train:], r.W) == pytest.approx(r.eps_val, abs=1e-12)
    # start i is the same whether or not other starts are run: a single start reproduces start 0
    single = train_committee(data, LearnerConfig(n_inits=1, max_steps=600, patience=150), seed=1, n_test=1000)
    assert single.eps_val == r.eps_val_inits[0]
    assert r.steps_total > r.steps


def test_same_seed_same_result_and_seed_matters():
    data = generate(100, 3.0, K=2, prior="binary", seed=6)
    config = LearnerConfig(n_inits=2, max_steps=200, patience=100)
    a = train_committee(data, config, seed=7, n_test=2000)
    b = train_committee(data, config, seed=7, n_test=2000)
    c = train_committee(data, config, seed=8, n_test=2000)
    np.testing.assert_array_equal(a.W, b.W)
    assert (a.eps_test, a.eps_val, a.steps, a.best_step) == (b.eps_test, b.eps_val, b.steps, b.best_step)
    np.testing.assert_array_equal(a.history, b.history)
    assert not np.array_equal(a.W, c.W)


def test_explicit_cpu_device_and_float64_inputs_give_the_same_weights():
    data = generate(100, 3.0, K=1, prior="gaussian", seed=9)
    config = LearnerConfig(n_inits=1, max_steps=100)
    a = train_committee(data, config, seed=0, n_test=1000)
    b = train_committee(data, config, seed=0, n_test=1000, device=torch.device("cpu"))
    np.testing.assert_array_equal(a.W, b.W)
    # float64 inputs are trained in float32 like generate()'s, so the weights do not change
    data64 = CommitteeData(X=data.X.astype(np.float64), W_star=data.W_star, y=data.y, prior=data.prior)
    np.testing.assert_array_equal(train_committee(data64, config, seed=0, n_test=1000).W, a.W)


@pytest.mark.parametrize("kwargs, match", [
    (dict(method="sgd"), "unknown method"),
    (dict(lr=0.0), "lr="),
    (dict(lr=-1e-3), "lr="),
    (dict(lr=float("nan")), "lr="),
    (dict(val_fraction=0.0), r"val_fraction=0.0 must lie in \(0, 0.5\]"),
    (dict(val_fraction=0.6), "val_fraction"),
    (dict(max_steps=0), "max_steps"),
    (dict(n_inits=0), "n_inits"),
    (dict(patience=1.5), "patience"),
    (dict(eval_every=0), "eval_every"),
    (dict(beta0=0.0), "beta0"),
    (dict(beta0=2.0, beta_final=1.0), "beta_final"),
])
def test_config_rejects_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LearnerConfig(**kwargs)


def test_config_resolves_the_default_step_size_per_method():
    assert LearnerConfig(method="adam").lr == 0.02
    assert LearnerConfig(method="gd").lr == 1.0
    assert LearnerConfig(method="gd", lr=0.3).lr == 0.3


def test_train_rejects_bad_input():
    small = generate(40, 0.5, K=2, seed=0)  # m = 20: 4 validation samples at val_fraction 0.2
    with pytest.raises(ValueError, match="leaves 4 for validation; need at least 20"):
        train_committee(small, LearnerConfig())
    with pytest.raises(ValueError, match="n_test"):
        train_committee(generate(50, 2.0, K=1, seed=0), LearnerConfig(), n_test=10)
    with pytest.raises(ValueError, match="seed=-1 must be a non-negative integer"):
        train_committee(generate(50, 2.0, K=1, seed=0), LearnerConfig(), seed=-1)
    with pytest.raises(ValueError, match="CommitteeData"):
        train_committee(np.zeros((10, 2)), LearnerConfig())
