"""Modular-arithmetic data: labels, split, bad input."""

import pytest
import torch

from thermolens.data.modular import ModularTask, all_pairs, is_prime, make_dataset


@pytest.mark.parametrize("op,fn", [
    ("add", lambda a, b, p: (a + b) % p),
    ("sub", lambda a, b, p: (a - b) % p),
    ("mul", lambda a, b, p: (a * b) % p),
])
def test_labels_match_python_arithmetic(op, fn):
    p = 7
    tokens, labels = all_pairs(ModularTask(p=p, op=op))
    assert tokens.shape == (p * p, 3)
    for (a, b, eq), y in zip(tokens.tolist(), labels.tolist()):
        assert eq == p  # the '=' token
        assert y == fn(a, b, p)


def test_division_inverts_multiplication():
    p = 11
    tokens, labels = all_pairs(ModularTask(p=p, op="div"))
    assert tokens.shape[0] == p * (p - 1)  # b = 0 excluded
    a, b = tokens[:, 0], tokens[:, 1]
    assert torch.all((labels * b) % p == a)


def test_split_is_deterministic_disjoint_and_complete():
    task = ModularTask(p=13, train_fraction=0.3, seed=4)
    d1, d2 = make_dataset(task), make_dataset(task)
    assert torch.equal(d1.train_tokens, d2.train_tokens)
    assert d1.n_train == round(0.3 * 169) and d1.n_train + d1.n_test == 169
    train = {tuple(t) for t in d1.train_tokens.tolist()}
    test = {tuple(t) for t in d1.test_tokens.tolist()}
    assert not train & test and len(train | test) == 169
    other = make_dataset(ModularTask(p=13, train_fraction=0.3, seed=5))
    assert not torch.equal(other.train_tokens, d1.train_tokens)


def test_is_prime():
    assert [n for n in range(30) if is_prime(n)] == [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]


@pytest.mark.parametrize("kwargs,words", [
    (dict(p=2), "p=2"),
    (dict(p=15, op="div"), "not prime"),
    (dict(p=113, train_fraction=0.0), "between 0 and 1"),
    (dict(p=113, train_fraction=1.0), "between 0 and 1"),
    (dict(p=113, train_fraction=1.5), "between 0 and 1"),
    (dict(p=5, train_fraction=0.001), "leaves 0"),
    (dict(p=113, op="pow"), "unknown"),
])
def test_bad_input_says_what_to_fix(kwargs, words):
    with pytest.raises(ValueError, match=words):
        ModularTask(**kwargs)
