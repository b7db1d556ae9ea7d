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
on it is measured and the best weights are kept (of equal errors the later, sharper ones), and
training stops ``patience`` steps after the best check. Of ``n_inits`` random starts the one with the
lowest validation error is returned (the first of equals).

Cost. Each step is one pass over the training inputs: X is read by row blocks that stay in cache for
both the forward product and the gradient product (``_loss_and_gradient``). At m = 32000 (25600
training rows), n = 2000, K = 3 that pass takes ~60 ms on the shared 2-core test machine, against
~150 ms for two passes over X; a whole step (pass, update, a validation check every 10 steps) took
65-95 ms there, against ~400-450 ms for torch autograd through X @ W, whose transposed skinny product
is slow on CPU.
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
# multiplies the gradient on the unit sphere (see ``_step_scale``). Both defaults, and the annealing
# 0.5 -> 4 of beta, were chosen on K = 1, 2 instances with n = 200-1000 (see LearnerConfig).
DEFAULT_LR = {"gd": 1.0, "adam": 0.02}
MIN_VAL = 20  # validation samples: below this the 0-1 error cannot rank two students


@dataclass(frozen=True)
class LearnerConfig:
    """Settings of ``train_committee``.

    ``method``: "gd" (full-batch gradient descent) or "adam" (full-batch Adam);
    ``lr``: step size, ``None`` for the method's default (0.02 for Adam, 1.0 for GD; the resolved value
    is stored); ``max_steps``: optimizer steps per random start; ``n_inits``: random starts, the one
    with the lowest validation error wins; ``val_fraction``: share of the samples held out for early
    stopping, in (0, 0.5]; ``eval_every``: steps between validation checks; ``patience``: steps
    after the best validation check (an equal error counts as best) before a start is stopped;
    ``beta0``/``beta_final``: inverse
    temperature of the tanh units at the first and the last step (geometric annealing; equal values
    keep it fixed).

    Why these defaults (Adam, one start, n = 500, K = 2 Gaussian teacher, alpha = 6, where AMP
    specializes): annealing beta 0.5 -> 4 over 2000 steps specializes (q_d = 1.02, test error 0.070);
    a fixed beta = 1 also specializes but only after ~1000 steps on the symmetric plateau (q_d ~ 0.1),
    so with patience 500 it is stopped there (test error 0.097); a sharp start (beta 1 -> 8, fixed
    beta 2 or 3) overfits the training set without specializing (q_d ~ 0.1, error ~ 0.10). On the
    perceptron (K = 1, alpha = 6) the same schedule reaches the Bayes-optimal error of its training
    set. A run that stops on a plateau can be given a larger ``patience``.
    """

    method: str = "adam"
    lr: float | None = None
    max_steps: int = 2000
    n_inits: int = 3
    val_fraction: float = 0.2
    eval_every: int = 10
    patience: int = 500
    beta0: float = 0.5
    beta_final: float = 4.0

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
                f"beta_final={self.beta_final} must be finite and >= beta0={self.beta0} "
                "(annealing only sharpens the units)"
            )


@dataclass(frozen=True)
class LearnerResult:
    """One trained student (the best of the random starts) on an instance with ``alpha`` = m / n
    (training and validation samples together), ``n`` inputs and ``K`` hidden units.

    ``W`` (n, K) float64 learned weights in the order trained, each unit of norm sqrt(n) (the committee
    is invariant under a positive rescaling of a unit, so only directions are learned); ``Q`` (K, K) =
    W_aligned^T W* / n after matching student units to teacher units (the committee is invariant under
    their permutation; the teacher is not normalised, as in AMP's overlap), and
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

    def to_frame(self):
        """The chosen start's history as a pandas DataFrame, one row per validation check."""
        import pandas as pd

        return pd.DataFrame(self.history, columns=list(HISTORY_COLUMNS)).astype({"step": int})


HISTORY_COLUMNS = ("step", "beta", "loss", "eps_train", "eps_val", "q_d", "q_a")
BLOCK_BYTES = 2 << 20  # CPU row block of X: small enough to stay in cache between its two products


def _block_rows(X: torch.Tensor) -> int:
    """Rows per block: on CPU ~2 MiB of X (both products of a block then read it from cache); elsewhere
    the whole matrix (a GPU streams it at full bandwidth in one product)."""
    if X.device.type != "cpu":
        return max(1, X.shape[0])
    return max(64, BLOCK_BYTES // (X.shape[1] * X.element_size()))


def _times(X: torch.Tensor, Vt: torch.Tensor) -> torch.Tensor:
    """(X V)^T for X (b, n) and Vt = V^T (K, n) -> (K, b).

    On CPU one matrix-vector product per unit: torch's skinny matrix products are several times slower
    here (and erratic when the 2 cores are shared); elsewhere one product.
    """
    if X.device.type != "cpu":
        return Vt @ X.T
    return torch.stack([torch.mv(X, v) for v in Vt])


def _times_transposed(X: torch.Tensor, Gt: torch.Tensor) -> torch.Tensor:
    """(X^T G)^T for X (b, n) and Gt = G^T (K, b) -> (K, n); on CPU per unit, as ``_times``."""
    if X.device.type != "cpu":
        return Gt @ X
    return torch.stack([torch.mv(X.T, g) for g in Gt])


def _committee(Ht: torch.Tensor) -> torch.Tensor:
    """Sign committee of pre-activations Ht (K, b) -> (b,) in {-1, 0, +1}."""
    return torch.sign(torch.sign(Ht).sum(dim=0))


def _smooth_output(Ht: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The committee with tanh(beta .) for every sign, y_beta (b,), and the units T = tanh(beta H) (K, b)."""
    T = torch.tanh(beta * Ht)
    return (T[0] if Ht.shape[0] == 1 else torch.tanh(beta * T.sum(dim=0))), T


def _loss_and_gradient(
    X: torch.Tensor, y: torch.Tensor, Vt: torch.Tensor, beta: float
) -> tuple[float, float, torch.Tensor]:
    """Smoothed loss L = (1/4) mean (y - y_beta)^2, the sign committee's error and dL/dV^T (K, n) at
    unit directions Vt = V^T (K, n), in one pass over X (m, n) by row blocks.

    Each sample's loss depends only on its own pre-activations, so dL/dH is formed block by block and
    X_b^T dL/dH_b is taken while X_b is still in cache. By hand (T = tanh(beta H), S = sum_l T_l):
    dl/dy_beta = -(y - y_beta)/2, dy_beta/dh_l = beta (1 - T_l^2) for K = 1, and
    beta (1 - y_beta^2) beta (1 - T_l^2) for K >= 2 (y_beta = tanh(beta S)).
    """
    m = X.shape[0]
    rows = _block_rows(X)
    grad = torch.zeros_like(Vt)
    loss = errors = 0.0  # float32 partial sums of at most `rows` terms, added in float64
    for lo in range(0, m, rows):
        X_b, y_b = X[lo:lo + rows], y[lo:lo + rows]
        Ht = _times(X_b, Vt)  # (K, b)
        y_beta, T = _smooth_output(Ht, beta)
        residual = y_b - y_beta
        wrong = y_b - _committee(Ht)
        loss += float(residual @ residual)
        errors += float(wrong @ wrong)
        dy = beta * (1.0 - T * T)  # (K, b)
        if Ht.shape[0] > 1:
            dy *= beta * (1.0 - y_beta * y_beta)
        grad += _times_transposed(X_b, dy.mul_((-0.5 / m) * residual))
    return loss / (4 * m), errors / (4 * m), grad


def _committee_error(X: torch.Tensor, y: torch.Tensor, Vt: torch.Tensor) -> float:
    """(1/4) mean (y - y_hat)^2 of the sign committee with directions Vt (K, n) on X (m, n), by row blocks."""
    rows = _block_rows(X)
    errors = 0.0
    for lo in range(0, X.shape[0], rows):
        wrong = y[lo:lo + rows] - _committee(_times(X[lo:lo + rows], Vt))
        errors += float(wrong @ wrong)
    return errors / (4 * X.shape[0])


def _beta_at(config: LearnerConfig, step: int) -> float:
    """Geometric annealing from beta0 (step 0) to beta_final (step max_steps)."""
    return config.beta0 * (config.beta_final / config.beta0) ** (step / config.max_steps)


def _step_scale(method: str, n: int) -> float:
    """Factor on the configured lr. The gradient with respect to a unit w of norm sqrt(n) is that with
    respect to its direction divided by sqrt(n), so plain GD would turn units by lr / n per step; scaling
    by n makes lr the (dimension-free) step on the unit sphere. Adam normalises gradients itself."""
    return float(n) if method == "gd" else 1.0


ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


def _adam_direction(
    grad: torch.Tensor, moments: tuple[torch.Tensor, torch.Tensor], step: int
) -> torch.Tensor:
    """Adam's update direction m_hat / (sqrt(v_hat) + eps) at ``step`` >= 1, updating the moments in place
    (Kingma & Ba 2015, arXiv:1412.6980, Algorithm 1; the same as torch.optim.Adam without weight decay,
    which the tests check). Written out so that the weights need no autograd leaf: the gradient is
    formed by hand in ``_loss_and_gradient``."""
    m, v = moments
    b1, b2 = ADAM_BETAS
    m.mul_(b1).add_(grad, alpha=1 - b1)
    v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
    return (m / (1 - b1**step)) / ((v / (1 - b2**step)).pow(0.5) + ADAM_EPS)


@dataclass(frozen=True)
class _Run:
    Wt: torch.Tensor  # (K, n) best weights of this start, units as rows
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
    # units as rows, Wt = W^T (K, n), each of norm sqrt(n)
    Wt = (W0.T * (radius / W0.norm(dim=0)[:, None])).contiguous()
    lr = config.lr * _step_scale(config.method, n)
    moments = (torch.zeros_like(Wt), torch.zeros_like(Wt))  # Adam's first and second moments
    best_Wt, best_val, best_step = Wt.clone(), math.inf, 0
    history = []
    step = 0
    while True:
        beta = _beta_at(config, step)
        Vt = Wt / radius  # (K, n) unit directions
        loss, eps_train, grad_Vt = _loss_and_gradient(X_train, y_train, Vt, beta)
        if step % config.eval_every == 0 or step == config.max_steps:
            eps_val = _committee_error(X_val, y_val, Vt)
            _, q_d, q_a = _aligned_overlap(Wt.T.double().cpu().numpy(), W_star)
            history.append((step, beta, loss, eps_train, eps_val, q_d, q_a))
            if eps_val <= best_val:  # among equal errors the later, sharper weights
                best_Wt, best_val, best_step = Wt.clone(), eps_val, step
            on_eval(step)
            if step - best_step >= config.patience or step == config.max_steps:
                break
        # through V = W / |W|: project out the radial part (|W| = sqrt(n) here)
        grad = (grad_Vt - Vt * (Vt * grad_Vt).sum(dim=1, keepdim=True)) / radius
        step += 1
        if config.method == "adam":
            Wt -= lr * _adam_direction(grad, moments, step)
        else:
            Wt -= lr * grad
        Wt *= radius / Wt.norm(dim=1, keepdim=True)
    return _Run(Wt=best_Wt, eps_val=best_val, steps=step, best_step=best_step, history=np.array(history))


def _split(data: CommitteeData, val_fraction: float) -> int:
    """Number of validation rows (the last ones); raises if there are too few (val_fraction <= 1/2 leaves
    at least as many for training)."""
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
        raise ValueError(
            f"data must be a CommitteeData (from thermolens.committee.generate), got {type(data).__name__}"
        )
    n, K = data.n, data.K
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed={seed!r} must be a non-negative integer")
    if isinstance(n_test, bool) or not isinstance(n_test, (int, np.integer)) or n_test < 100:
        raise ValueError(f"n_test={n_test!r} must be an integer >= 100 fresh samples")
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
        with torch.no_grad():
            run = _train_one(X_train, y_train, X_val, y_val, W0.to(device), data.W_star, config, on_eval)
        runs.append(run)
        if progress:
            progress(done + config.max_steps, total)
    seconds = time.perf_counter() - start

    best_init = min(range(len(runs)), key=lambda i: runs[i].eps_val)  # first among equals
    run = runs[best_init]
    with torch.no_grad():
        eps_train = _committee_error(X_train, y_train, run.Wt)
    W = np.ascontiguousarray(run.Wt.T.double().cpu().numpy())  # (n, K)
    W *= math.sqrt(n) / np.linalg.norm(W, axis=0)  # exactly on the sphere (float32 training leaves ~1e-7)
    Q, q_d, q_a = _aligned_overlap(W, data.W_star)
    eps_test = fresh_test_error(W, data, n_test, np.random.default_rng([seed, 2]))
    return LearnerResult(
        method=config.method, alpha=data.alpha, n=n, K=K, seed=seed, W=W, Q=Q, q_d=q_d, q_a=q_a,
        eps_train=eps_train, eps_val=run.eps_val, eps_test=eps_test, steps=run.steps, best_step=run.best_step,
        best_init=best_init, eps_val_inits=tuple(r.eps_val for r in runs), seconds=seconds,
        steps_total=sum(r.steps for r in runs), history=run.history,
    )
