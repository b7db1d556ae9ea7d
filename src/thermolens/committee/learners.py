"""Gradient-based learners for the committee machine: can plain training cross the AMP gap?

Aubin et al. (2018), arXiv:1806.05451, find a computational-to-statistical gap: between the
information-theoretic threshold alpha_IT and the algorithmic threshold alpha_alg the Bayes-optimal
error is low but AMP (believed optimal among polynomial algorithms) cannot reach it. This module
trains the student committee with the tools a practitioner would use -- full-batch gradient descent
or Adam from random starts, with early stopping -- on the same instances, so that its errors and
overlaps can be placed against AMP and the Bayes-optimal error.

Student. ``K`` hidden units with weights ``W`` (n, K); only each unit's direction matters, since the
sign committee ``y_hat = sign(sum_l sign(x . w_l))`` is invariant under a positive rescaling of any
unit. The pre-activations are therefore taken on unit vectors,

    h_l = x . w_l / |w_l|                 (variance 1, like the teacher's x . w*_l / sqrt(n)),

and every unit is put back on the sphere |w_l| = sqrt(n) after each step (projected gradient descent;
this keeps the step size from decaying as the norm would otherwise grow). ``beta`` is then a genuine
inverse temperature of the units.

Loss. The sign committee with every sign replaced by tanh(beta .),

    y_beta(x) = tanh(beta sum_l tanh(beta h_l))         (K = 1: tanh(beta h); sign(sign h) = sign h),

fitted by the squared error L = (1/4) mean (y - y_beta)^2: as beta -> infinity it becomes the training
error (1/4) mean (y - y_hat)^2 of the sign committee itself, for every K, ties of even K (y = 0, half of
the K = 2 labels, which carry the information that the two units disagree) included. ``beta`` is
annealed geometrically from ``beta0`` to ``beta_final`` over ``max_steps``, so the smoothed committee
approaches the sign committee as training proceeds.

Selection. The last ``val_fraction`` of the rows is held out (rows are i.i.d., so a contiguous block
is a random split and no copy of X is needed); every ``eval_every`` steps the sign committee's error
on it is measured, the best weights are kept, and training stops after ``patience`` steps without
improvement. Of ``n_inits`` random starts the one with the lowest validation error is returned.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from thermolens.committee.amp import _best_permutation, fresh_test_error
from thermolens.committee.data import CommitteeData
from thermolens.committee.state_evolution import project_overlap

METHODS = ("gd", "adam")
# Adam moves each O(1) weight by ~lr per step, so lr is the angle a unit turns per step; for "gd" lr
# multiplies the gradient on the unit sphere (see ``_step_scale``). Both defaults were tuned on
# K = 1, 2 instances with n = 200-1000 (docs/committee.md, "Learners").
DEFAULT_LR = {"gd": 1.0, "adam": 0.02}
MIN_VAL = 20  # validation samples: below this the 0-1 error cannot rank two students
MAX_K = 8  # unit alignment enumerates all K! permutations


@dataclass(frozen=True)
class LearnerConfig:
    """Settings of ``train_committee``.

    ``method``: "gd" (full-batch gradient descent) or "adam" (full-batch Adam);
    ``lr``: step size, ``None`` for the method's default (0.02 for Adam, 1.0 for GD; the resolved value
    is stored); ``max_steps``: optimizer steps per random start; ``n_inits``: random starts, the one
    with the lowest validation error wins; ``val_fraction``: share of the samples held out for early
    stopping, in (0, 0.5]; ``eval_every``: steps between validation checks; ``patience``: steps
    without a validation improvement before a start is stopped; ``beta0``/``beta_final``: inverse
    temperature of the tanh units at the first and the last step (geometric annealing; equal values
    keep it fixed).
    """

    method: str = "adam"
    lr: float | None = None
    max_steps: int = 2000
    n_inits: int = 3
    val_fraction: float = 0.2
    eval_every: int = 10
    patience: int = 500
    beta0: float = 1.0
    beta_final: float = 8.0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.lr is None:
            object.__setattr__(self, "lr", DEFAULT_LR[self.method])
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr={self.lr!r} must be a positive finite step size (or None for the default)")
        for name in ("max_steps", "n_inits", "eval_every", "patience"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name}={value!r} must be an integer >= 1")
        if not (0.0 < self.val_fraction <= 0.5):
            raise ValueError(
                f"val_fraction={self.val_fraction} must lie in (0, 0.5]: some samples must be held out for "
                "early stopping, and at least as many kept for training"
            )
        if not (math.isfinite(self.beta0) and self.beta0 > 0):
            raise ValueError(f"beta0={self.beta0} must be a positive inverse temperature")
        if not (math.isfinite(self.beta_final) and self.beta_final >= self.beta0):
            raise ValueError(
                f"beta_final={self.beta_final} must be finite and >= beta0={self.beta0} (annealing only sharpens)"
            )


@dataclass(frozen=True)
class LearnerResult:
    """One trained student (the best of the random starts).

    ``W`` (n, K) float64 learned weights, each unit of norm sqrt(n) (the committee is invariant under a
    positive rescaling of a unit, so only directions are learned); ``Q`` (K, K) = W_aligned^T W* / n after
    matching student units to teacher units (the committee is invariant under their permutation), and
    its committee-symmetric projection ``q_d``, ``q_a``; ``eps_train``/``eps_val``: the sign committee's
    error (1/4) mean (y - y_hat)^2 on the training and validation splits (``eps_val`` is the selection
    criterion, so it is biased low); ``eps_test``: the same on ``n_test`` fresh samples; ``steps``: steps
    run by the chosen start; ``best_step``: the step whose weights are returned; ``best_init``: index
    of the chosen start and ``eps_val_inits`` the best validation error of every start; ``seconds``:
    wall-clock time of the training of all starts (not of the test error); ``steps_total``: steps of
    all starts; ``history`` (n_evals, 7): step, beta, smoothed training loss, training error, validation
    error, q_d, q_a of the chosen start at every check (the overlaps watch the teacher; they play no
    part in training or selection).
    """

    method: str
    alpha: float
    n: int
    K: int
    seed: int
    W: np.ndarray
    Q: np.ndarray
    q_d: float
    q_a: float
    eps_train: float
    eps_val: float
    eps_test: float
    steps: int
    best_step: int
    best_init: int
    eps_val_inits: tuple[float, ...]
    seconds: float
    steps_total: int
    history: np.ndarray


def _times(X: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """X (m, n) times V (n, K) -> (m, K).

    On CPU one matrix-vector product per column: for a few columns it streams X at memory bandwidth
    while the skinny matrix product does not (measured ~2x at m = 32000, n = 2000, K = 3).
    """
    if X.device.type != "cpu":
        return X @ V
    return torch.stack([torch.mv(X, V[:, k].contiguous()) for k in range(V.shape[1])], dim=1)


def _times_transposed(X: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """X^T G for X (m, n) and G (m, K) -> (n, K); on CPU per column (the transposed skinny product is ~10x
    slower than a transposed matrix-vector product here)."""
    if X.device.type != "cpu":
        return (G.T @ X).T
    return torch.stack([torch.mv(X.T, G[:, k].contiguous()) for k in range(G.shape[1])], dim=1)


def _committee(H: torch.Tensor) -> torch.Tensor:
    """Sign committee of pre-activations H (m, K) -> (m,) in {-1, 0, +1}."""
    return torch.sign(torch.sign(H).sum(dim=1))


def _error(y: torch.Tensor, y_hat: torch.Tensor) -> float:
    """(1/4) mean (y - y_hat)^2, accumulated in float64."""
    d = (y - y_hat).double()
    return float((d * d).mean()) / 4.0


def _smooth_output(H: torch.Tensor, beta: float) -> torch.Tensor:
    """The committee with tanh(beta .) for every sign: H (m, K) -> (m,)."""
    T = torch.tanh(beta * H)
    return T[:, 0] if H.shape[1] == 1 else torch.tanh(beta * T.sum(dim=1))


def _beta_at(config: LearnerConfig, step: int) -> float:
    """Geometric annealing from beta0 (step 0) to beta_final (step max_steps)."""
    return config.beta0 * (config.beta_final / config.beta0) ** (step / config.max_steps)


def _step_scale(method: str, n: int) -> float:
    """Factor on the configured lr. The gradient with respect to a unit w of norm sqrt(n) is that with
    respect to its direction divided by sqrt(n), so plain GD would turn units by lr / n per step; scaling
    by n makes lr the (dimension-free) step on the unit sphere. Adam normalises gradients itself."""
    return float(n) if method == "gd" else 1.0


@dataclass(frozen=True)
class _Run:
    W: torch.Tensor  # (n, K) best weights of this start
    eps_val: float
    steps: int
    best_step: int
    history: np.ndarray


def _aligned_overlap(W: np.ndarray, W_star: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Q = W^T W* / n (K, K) with the student units (rows) matched to the teacher's, and (q_d, q_a)."""
    Q_raw = W.T @ W_star / W.shape[0]
    Q = Q_raw[_best_permutation(Q_raw)]
    q_d, q_a = project_overlap(Q)
    return Q, q_d, q_a


def _train_one(
    X_train: torch.Tensor, y_train: torch.Tensor, X_val: torch.Tensor, y_val: torch.Tensor, W0: torch.Tensor,
    W_star: np.ndarray, config: LearnerConfig, on_eval: Callable[[int], None],
) -> _Run:
    """Train one start from W0 (n, K) with early stopping on the validation split; the teacher W*
    (n, K) is only watched (overlaps in the history), never used for training or selection."""
    n = W0.shape[0]
    radius = math.sqrt(n)
    W = (W0 * (radius / W0.norm(dim=0))).requires_grad_(True)
    lr = config.lr * _step_scale(config.method, n)
    optimizer = torch.optim.Adam([W], lr=lr) if config.method == "adam" else torch.optim.SGD([W], lr=lr)
    best_W, best_val, best_step = W.detach().clone(), math.inf, 0
    history = []
    step = 0
    while True:
        beta = _beta_at(config, step)
        with torch.no_grad():
            V = W / radius  # (n, K) unit directions
            H = _times(X_train, V)  # (m_train, K)
        H.requires_grad_(True)
        loss = 0.25 * ((y_train - _smooth_output(H, beta)) ** 2).mean()
        if step % config.eval_every == 0 or step == config.max_steps:
            with torch.no_grad():
                eps_train = _error(y_train, _committee(H))
                eps_val = _error(y_val, _committee(_times(X_val, V)))
            _, q_d, q_a = _aligned_overlap(W.detach().double().cpu().numpy(), W_star)
            history.append((step, beta, float(loss.detach()), eps_train, eps_val, q_d, q_a))
            if eps_val < best_val:
                best_W, best_val, best_step = W.detach().clone(), eps_val, step
            on_eval(step)
            if step - best_step >= config.patience or step == config.max_steps:
                break
        (G,) = torch.autograd.grad(loss, H)  # (m_train, K)
        with torch.no_grad():
            grad_V = _times_transposed(X_train, G)  # (n, K) gradient with respect to the directions
            # through V = W / |W|: project out the radial part (|W| = sqrt(n) here)
            W.grad = (grad_V - V * (V * grad_V).sum(dim=0)) / radius
        optimizer.step()
        with torch.no_grad():
            W.mul_(radius / W.norm(dim=0))
        step += 1
    return _Run(W=best_W, eps_val=best_val, steps=step, best_step=best_step, history=np.array(history))


def _split(data: CommitteeData, val_fraction: float) -> int:
    """Number of validation rows (the last ones); raises if either split is too small."""
    m_val = int(round(val_fraction * data.m))
    if m_val < MIN_VAL:
        need = math.ceil(MIN_VAL / val_fraction)
        raise ValueError(
            f"val_fraction={val_fraction} of m={data.m} samples leaves {m_val} for validation; need at least "
            f"{MIN_VAL} -- pass at least {need} samples (raise alpha or n) or a larger val_fraction"
        )
    return m_val


def train_committee(
    data: CommitteeData, config: LearnerConfig = LearnerConfig(), *, seed: int = 0, n_test: int = 20_000,
    device: str | torch.device | None = None, progress: Callable[[int, int], None] | None = None,
) -> LearnerResult:
    """Train a student committee on ``data`` by full-batch GD or Adam (see the module docstring).

    ``seed`` draws the random starts (start i from numpy's default_rng([seed, 1, i]), standard normal)
    and the ``n_test`` fresh test samples (default_rng([seed, 2])); the split is fixed by the data (the
    last ``val_fraction`` of the rows). ``device``: where to train (default CPU; the inputs are copied
    there); CPU training uses ``data.X`` without copying it. ``progress(done, total)`` is called at every
    validation check with steps done out of ``n_inits * max_steps``.
    """
    if not isinstance(data, CommitteeData):
        raise ValueError(f"data must be a CommitteeData (from thermolens.committee.generate), got {type(data).__name__}")
    n, K = data.n, data.K
    if K > MAX_K:
        raise ValueError(f"K={K}: matching student to teacher units enumerates K! permutations; use K <= {MAX_K}")
    if n_test < 100:
        raise ValueError(f"n_test={n_test} must be >= 100 fresh samples")
    m_val = _split(data, config.val_fraction)
    device = torch.device("cpu" if device is None else device)
    X = torch.from_numpy(np.ascontiguousarray(data.X, dtype=np.float32)).to(device)  # (m, n), no copy on CPU
    y = torch.from_numpy(data.y.astype(np.float32)).to(device)  # (m,)
    m_train = data.m - m_val
    X_train, y_train, X_val, y_val = X[:m_train], y[:m_train], X[m_train:], y[m_train:]

    total = config.n_inits * config.max_steps
    start = time.perf_counter()
    runs = []
    for i in range(config.n_inits):
        W0 = torch.from_numpy(np.random.default_rng([seed, 1, i]).standard_normal((n, K)).astype(np.float32))
        done = i * config.max_steps
        on_eval = (lambda s, done=done: progress(done + s, total)) if progress else (lambda s: None)
        runs.append(_train_one(X_train, y_train, X_val, y_val, W0.to(device), data.W_star, config, on_eval))
        if progress:
            progress(done + config.max_steps, total)
    seconds = time.perf_counter() - start

    best_init = min(range(len(runs)), key=lambda i: runs[i].eps_val)  # first among equals
    run = runs[best_init]
    with torch.no_grad():
        eps_train = _error(y_train, _committee(_times(X_train, run.W)))
    W = run.W.double().cpu().numpy()
    W *= math.sqrt(n) / np.linalg.norm(W, axis=0)  # exactly on the sphere (float32 training leaves ~1e-7)
    Q, q_d, q_a = _aligned_overlap(W, data.W_star)
    eps_test = fresh_test_error(W, data, n_test, np.random.default_rng([seed, 2]))
    return LearnerResult(
        method=config.method, alpha=data.alpha, n=n, K=K, seed=seed, W=W, Q=Q, q_d=q_d, q_a=q_a,
        eps_train=eps_train, eps_val=run.eps_val, eps_test=eps_test, steps=run.steps, best_step=run.best_step,
        best_init=best_init, eps_val_inits=tuple(r.eps_val for r in runs), seconds=seconds,
        steps_total=sum(r.steps for r in runs), history=run.history,
    )
