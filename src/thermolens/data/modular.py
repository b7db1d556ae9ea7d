"""Modular arithmetic as token sequences: the grokking data set.

Every example is the three-token sequence ``a b =`` with ``a, b`` in ``0..p-1`` (token ids equal
to the numbers) and ``=`` the token id ``p``; the label is ``a op b mod p``. This is the data of
Power et al. 2022 (arXiv:2201.02177) in the form Nanda et al. 2023 (arXiv:2301.05217) train on:
all ``p^2`` pairs (``p (p-1)`` for division, where ``b = 0`` is excluded), split at random into a
training fraction and a test set. The split depends only on ``(p, op, train_fraction, seed)``.

Division ``a / b`` means ``a * b^(p-2) mod p`` (Fermat inverse), which is a field division only
when ``p`` is prime.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

OPERATIONS = ("add", "sub", "mul", "div")


def is_prime(n: int) -> bool:
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    k = 3
    while k * k <= n:
        if n % k == 0:
            return False
        k += 2
    return True


@dataclass(frozen=True)
class ModularTask:
    """Which modular-arithmetic data set to build.

    ``p``: the modulus (>= 3; prime for ``div``). ``op``: one of ``add, sub, mul, div``.
    ``train_fraction``: share of all pairs used for training, in (0, 1). ``seed``: the split.
    """

    p: int = 113
    op: str = "add"
    train_fraction: float = 0.3
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.p, int) or self.p < 3:
            raise ValueError(f"p={self.p!r} is too small; the modulus must be an integer >= 3 (e.g. 113)")
        if self.op not in OPERATIONS:
            raise ValueError(f"op={self.op!r} is unknown; choose one of {', '.join(OPERATIONS)}")
        if self.op == "div" and not is_prime(self.p):
            raise ValueError(
                f"p={self.p} is not prime, so division mod p is not defined for every b != 0; "
                "choose a prime modulus (e.g. 97 or 113) for op=div"
            )
        if not 0.0 < float(self.train_fraction) < 1.0:
            raise ValueError(
                f"train_fraction={self.train_fraction} must lie strictly between 0 and 1 (e.g. 0.3)"
            )
        n_pairs = self.p * (self.p - 1) if self.op == "div" else self.p * self.p
        n_train = int(round(self.train_fraction * n_pairs))
        if n_train < 1 or n_train >= n_pairs:
            raise ValueError(
                f"train_fraction={self.train_fraction} leaves {n_train} of {n_pairs} pairs for training; "
                "both the training and the test set need at least one pair — move it away from 0 and 1"
            )

    @property
    def d_vocab(self) -> int:
        """Input tokens: the numbers ``0..p-1`` and ``=``."""
        return self.p + 1

    @property
    def equals_token(self) -> int:
        return self.p


@dataclass(frozen=True)
class ModularData:
    """A train/test split of one modular-arithmetic task (CPU tensors).

    ``train_tokens``/``test_tokens``: ``(n, 3)`` int64 sequences ``a b =``;
    ``train_labels``/``test_labels``: ``(n,)`` int64 answers in ``0..p-1``.
    """

    task: ModularTask
    train_tokens: torch.Tensor
    train_labels: torch.Tensor
    test_tokens: torch.Tensor
    test_labels: torch.Tensor

    @property
    def n_train(self) -> int:
        return int(self.train_labels.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.test_labels.shape[0])


def apply_op(a: torch.Tensor, b: torch.Tensor, p: int, op: str) -> torch.Tensor:
    """``a op b mod p`` elementwise for int64 tensors (``div`` needs prime ``p`` and ``b != 0``)."""
    if op == "add":
        return (a + b) % p
    if op == "sub":
        return (a - b) % p
    if op == "mul":
        return (a * b) % p
    if op == "div":
        inverse = torch.tensor([pow(int(v), p - 2, p) for v in range(p)], dtype=torch.int64)
        return (a * inverse[b]) % p
    raise ValueError(f"op={op!r} is unknown; choose one of {', '.join(OPERATIONS)}")


def all_pairs(task: ModularTask) -> tuple[torch.Tensor, torch.Tensor]:
    """Every sequence ``a b =`` of the task in lexicographic order of ``(a, b)``, with its label."""
    p = task.p
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    a, b = a.reshape(-1), b.reshape(-1)
    if task.op == "div":
        keep = b != 0
        a, b = a[keep], b[keep]
    equals = torch.full_like(a, task.equals_token)
    tokens = torch.stack([a, b, equals], dim=1)  # (n_pairs, 3)
    return tokens, apply_op(a, b, p, task.op)


def make_dataset(task: ModularTask) -> ModularData:
    """Split all pairs of ``task`` into train and test by a seeded random permutation."""
    tokens, labels = all_pairs(task)
    n_pairs = labels.shape[0]
    n_train = int(round(task.train_fraction * n_pairs))
    generator = torch.Generator().manual_seed(int(task.seed))
    order = torch.randperm(n_pairs, generator=generator)
    train, test = order[:n_train], order[n_train:]
    return ModularData(
        task=task,
        train_tokens=tokens[train],
        train_labels=labels[train],
        test_tokens=tokens[test],
        test_labels=labels[test],
    )
