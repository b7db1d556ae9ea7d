"""Peer check (issue #16): sphinxteam/tramp's tree EP on the same committee-machine instances as our AMP.

tramp (Baker, Krzakala, Aubin & Zdeborova, "Tree-AMP", JMLR 24(57), 2023; github.com/sphinxteam/tramp)
composes expectation propagation over tree-shaped models. Its ``tramp.models.committee`` builds the
committee machine as K separate experts ``x_k -> F -> z_k -> sgn -> a_k`` feeding a ``SumChannel``;
that is what :func:`committee_model` rebuilds here with our inputs ``F = X / sqrt(n)``. For K = 2 our
labels are ``y = (s_1 + s_2) / 2`` in {-1, 0, +1}, so the sum ``a = s_1 + s_2 = 2 y`` is observed
through tramp's ``GaussianChannel(var=noise_var)`` (tramp's ``committee(..., activation2=None,
noise_var=...)``); a sign output cannot take y = 0. For K = 1 the model is tramp's sign perceptron.

Unlike our AMP (Aubin et al. 2018, arXiv:1806.05451, Sec. 4), whose output channel treats the K
pre-activations jointly with K x K variances, tree EP passes one scalar-variance Gaussian message per
expert: the output is only approximated through the sum node.

tramp (2023 snapshot) needs networkx 1.11, which does not import on Python >= 3.9, so it runs in its
own Python 3.8 virtual environment that cannot import thermolens. Instances therefore travel as .npz:

    .venv/bin/python benchmarks/peer_tramp.py write --out DIR --K 2 --prior binary --n 1000 \\
        --alpha 1.5 2.2 --seeds 0 1                                      # project venv
    PYTHONPATH=/tmp/tramp-src /tmp/tramp-venv/bin/python benchmarks/peer_tramp.py tramp DIR/*.npz
    .venv/bin/python benchmarks/peer_tramp.py amp DIR/*.npz               # our AMP, same instances

Each of ``tramp`` and ``amp`` prints one JSON object per instance (one a line). Instance ``seed`` is
drawn as in ``thermolens.committee.amp_over_seeds``: ``generate(n, alpha, K, prior,
seed=np.random.default_rng([seed, 0]))``. Only numpy is imported at module level (Python 3.8 syntax).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from pathlib import Path

import numpy as np


# --- numpy-only helpers, shared by both sides ----------------------------------------------------

def committee_output(h: np.ndarray) -> np.ndarray:
    """Sign committee of pre-activations h (..., K) -> labels (...) in {-1, 0, +1}; sign(0) = 0."""
    return np.sign(np.sign(h).sum(axis=-1))


def best_permutation(Q: np.ndarray) -> list:
    """Order of student units (rows of Q) that maximises trace(Q): units are exchangeable."""
    K = Q.shape[0]
    return list(max(itertools.permutations(range(K)), key=lambda p: float(np.trace(Q[list(p)]))))


def overlaps(W_hat: np.ndarray, W_star: np.ndarray) -> dict:
    """Aligned Q = W_hat^T W* / n (K, K); q_d = mean diag - mean off-diag, q_a = K mean off-diag."""
    n, K = W_star.shape
    perm = best_permutation(W_hat.T @ W_star / n)
    W_aligned = W_hat[:, perm]
    Q = W_aligned.T @ W_star / n
    if K == 1:
        q_d, q_a = float(Q[0, 0]), 0.0
    else:
        off = (Q.sum() - np.trace(Q)) / (K * (K - 1))
        q_d, q_a = float(np.trace(Q) / K - off), float(K * off)
    return {"Q": Q.tolist(), "Q_self": (W_aligned.T @ W_aligned / n).tolist(), "q_d": q_d, "q_a": q_a}


def test_error(W_hat: np.ndarray, W_star: np.ndarray, n_test: int, seed: int) -> float:
    """(1/4) mean (y - y_hat)^2 on n_test fresh N(0, 1) inputs, as ``thermolens.committee.amp``."""
    n, K = W_star.shape
    rng = np.random.default_rng([seed, 2])
    total, done = 0.0, 0
    while done < n_test:
        rows = min(4096, n_test - done)
        X = rng.standard_normal((rows, n), dtype=np.float32)
        H = (X @ np.concatenate([W_star, W_hat], axis=1).astype(np.float32)).astype(np.float64)
        diff = committee_output(H[:, :K]) - committee_output(H[:, K:])
        total += float(np.sum(diff * diff)) / 4.0
        done += rows
    return total / n_test


def load_instance(path: Path) -> dict:
    with np.load(path) as f:
        return {key: f[key] for key in f.files}


# --- project venv: write instances, run our AMP ---------------------------------------------------

def write_instances(out: Path, K: int, prior: str, n: int, alphas, seeds) -> list:
    """Write one .npz per (alpha, seed) with X (m, n) float32, y (m,), W_star (n, K) and metadata."""
    from thermolens.committee import generate

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for alpha in alphas:
        for seed in seeds:
            data = generate(n, alpha, K, prior, seed=np.random.default_rng([seed, 0]))
            path = out / f"committee_K{K}_{prior}_n{n}_alpha{alpha:g}_seed{seed}.npz"
            np.savez(path, X=data.X, y=data.y, W_star=data.W_star, K=K, prior=prior, n=n,
                     alpha=alpha, seed=seed)
            paths.append(path)
    return paths


def run_thermolens_amp(path: Path, n_test: int, max_iter: int = 300, start: str = "random") -> dict:
    """``thermolens.committee.run_amp`` with the default AMPConfig (but ``max_iter``, ``start``) on a saved
    instance."""
    from thermolens.committee import AMPConfig, CommitteeData, run_amp

    inst = load_instance(path)
    K, prior, seed = int(inst["K"]), str(inst["prior"]), int(inst["seed"])
    data = CommitteeData(X=inst["X"], W_star=inst["W_star"], y=inst["y"], prior=prior)
    res = run_amp(data, AMPConfig(K=K, prior=prior, n_test=n_test, max_iter=max_iter, start=start), seed=seed)
    return {
        "tool": "thermolens AMP", "file": path.name, "K": K, "prior": prior, "n": data.n,
        "alpha": data.alpha, "seed": seed, "Q": res.Q.tolist(), "Q_self": res.Q_self.tolist(),
        "q_d": res.q_d, "q_a": res.q_a, "eps_test": res.eps_test, "n_iter": res.n_iter,
        "converged": res.converged, "stationary": getattr(res, "stationary", None), "start": start,
        "final_change": res.final_change, "seconds_iterations": res.seconds, "seconds_setup": 0.0,
    }


# --- tramp venv: tree EP --------------------------------------------------------------------------

def committee_model(F: np.ndarray, K: int, prior: str, noise_var: float):
    """tramp model of y = committee(sgn(F x_k)) with F (m, n); observed variable id ``"y"``.

    K = 1: sign perceptron. K = 2: experts summed, sum observed with Gaussian noise ``noise_var``
    (the observation is ``2 y``). Odd K > 1: experts summed then ``sgn`` (tramp's ``sgn_committee``).
    """
    from tramp.channels import GaussianChannel, LinearChannel, SgnChannel, SumChannel
    from tramp.priors import BinaryPrior, GaussianPrior
    from tramp.variables import SILeafVariable as O
    from tramp.variables import SISOVariable as V

    n = F.shape[1]

    def make_prior():
        return GaussianPrior(size=n) if prior == "gaussian" else BinaryPrior(size=n)

    if K == 1:
        return (make_prior() @ V(id="x_0") @ LinearChannel(F, name="F") @ V(id="z_0") @ SgnChannel()
                @ O(id="y")).to_model()
    if K % 2 == 0 and K != 2:
        raise ValueError(f"K={K}: the sign of an even sum of signs loses the tie; use K = 1, 2 or odd K")
    experts = None
    for k in range(K):
        expert = (make_prior() @ V(id=f"x_{k}") @ LinearChannel(F, name="F") @ V(id=f"z_{k}")
                  @ SgnChannel() @ V(id=f"a_{k}"))
        experts = expert if experts is None else experts + expert
    dag = experts @ SumChannel(n_prev=K) @ V(id="a")
    dag = dag @ GaussianChannel(var=noise_var) if K == 2 else dag @ SgnChannel()
    return (dag @ O(id="y")).to_model()


class _Track:
    """tramp callback: stop when max |change| of R^T R / n (R = posterior means, n x K) < tol."""

    def __init__(self, K: int, n: int, tol: float):
        self.ids, self.n, self.tol = [f"x_{k}" for k in range(K)], n, tol
        self.R, self.change, self.converged, self.n_iter = None, math.inf, False, 0

    def __call__(self, algo, i, max_iter) -> bool:
        data = algo.get_variables_data(self.ids)
        R = np.stack([data[x_id]["r"] for x_id in self.ids], axis=1)
        self.n_iter = i + 1
        if not np.all(np.isfinite(R)):
            self.change = math.nan
            return True
        if self.R is not None:
            self.change = float(np.max(np.abs(R.T @ R - self.R.T @ self.R))) / self.n
            self.converged = self.change < self.tol
        self.R = R
        return self.converged


def run_tramp(path: Path, noise_var: float, init_scale: float, max_iter: int, tol: float,
              damping, n_test: int, start: str = "random") -> dict:
    """tramp ExpectationPropagation on a saved instance.

    ``start="random"``: uninformed, means ~ ``init_scale`` N(0, 1) (our AMP's start);
    ``start="informed"``: messages b = 3 W*_k into x_k (Rademacher prior: means tanh(3) W* = 0.995 W*),
    to see whether EP keeps a fixed point near the teacher (the SE "informed" branch).
    """
    from tramp.algos import ExpectationPropagation
    from tramp.algos.initial_conditions import CustomInit

    inst = load_instance(path)
    K, prior, seed = int(inst["K"]), str(inst["prior"]), int(inst["seed"])
    X, y, W_star = inst["X"].astype(np.float64), inst["y"].astype(np.float64), inst["W_star"]
    m, n = X.shape
    t0 = time.perf_counter()
    model = committee_model(X / math.sqrt(n), K, prior, noise_var)
    observed = model.to_observed({"y": 2.0 * y if K == 2 else y})
    setup = time.perf_counter() - t0
    # A message b with precision a = 0 into each x_k sets the starting means (b for the Gaussian prior,
    # tanh(b) for the Rademacher one); a constant start would keep the K experts identical for ever.
    rng = np.random.default_rng([seed, 1])
    if start == "informed":
        b0 = [3.0 * W_star[:, k] for k in range(K)]
    else:
        b0 = [init_scale * rng.standard_normal(n) for _ in range(K)]
    init = CustomInit(b_init=[(f"x_{k}", "bwd", b0[k]) for k in range(K)])
    track = _Track(K, n, tol)
    ep = ExpectationPropagation(observed)
    error = None
    t0 = time.perf_counter()
    try:
        ep.iterate(max_iter=max_iter, callback=track, initializer=init, damping=damping)
    except (ValueError, FloatingPointError, ZeroDivisionError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - t0
    record = {
        "tool": "tramp EP", "file": path.name, "K": K, "prior": prior, "n": n, "alpha": m / n,
        "seed": seed, "noise_var": noise_var if K == 2 else None, "damping": damping, "start": start,
        "n_iter": track.n_iter, "converged": track.converged, "final_change": track.change,
        "error": error, "seconds_setup": setup, "seconds_iterations": seconds,
    }
    if track.R is not None and np.all(np.isfinite(track.R)):
        record.update(overlaps(track.R, W_star))
        record["eps_test"] = test_error(track.R, W_star, n_test, seed)
    return record


# --- command line ---------------------------------------------------------------------------------

def _damping(text: str):
    if text in ("none", "0"):
        return None
    return text if text == "adaptive" else float(text)


def main(argv) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    w = sub.add_parser("write", help="write instances as .npz (project venv)")
    w.add_argument("--out", type=Path, required=True)
    w.add_argument("--K", type=int, default=2)
    w.add_argument("--prior", default="binary", choices=("gaussian", "binary"))
    w.add_argument("--n", type=int, default=1000)
    w.add_argument("--alpha", type=float, nargs="+", required=True)
    w.add_argument("--seeds", type=int, nargs="+", default=[0])
    a = sub.add_parser("amp", help="thermolens AMP on saved instances (project venv)")
    a.add_argument("files", type=Path, nargs="+")
    a.add_argument("--n-test", type=int, default=20_000)
    a.add_argument("--max-iter", type=int, default=300)
    a.add_argument("--start", default="random", choices=("random", "informed"))
    t = sub.add_parser("tramp", help="tramp EP on saved instances (tramp venv)")
    t.add_argument("files", type=Path, nargs="+")
    t.add_argument("--noise-var", type=float, default=1e-2,
                   help="variance of the Gaussian observation of the K = 2 sum (tramp needs > 0)")
    t.add_argument("--init-scale", type=float, default=0.1)
    t.add_argument("--max-iter", type=int, default=300)
    t.add_argument("--tol", type=float, default=5e-5)
    t.add_argument("--damping", type=_damping, default=None, help="none, a float in (0, 1) or adaptive")
    t.add_argument("--n-test", type=int, default=20_000)
    t.add_argument("--start", default="random", choices=("random", "informed"))
    args = parser.parse_args(argv)
    if args.mode == "write":
        for path in write_instances(args.out, args.K, args.prior, args.n, args.alpha, args.seeds):
            print(path)
    elif args.mode == "amp":
        for path in args.files:
            print(json.dumps(run_thermolens_amp(path, args.n_test, args.max_iter, args.start)), flush=True)
    else:
        for path in args.files:
            record = run_tramp(path, args.noise_var, args.init_scale, args.max_iter, args.tol,
                               args.damping, args.n_test, args.start)
            print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
