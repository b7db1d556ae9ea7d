"""Sources of known entropy: exact rates, sampling statistics, splits, spec strings."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from thermolens.data.sources import (
    SPEC_GRAMMAR,
    GrammarSource,
    MarkovSource,
    Source,
    TextSource,
    grammar_source,
    markov_source,
    parse_source,
)
from thermolens.stats.entropy import entropy_bits, markov_entropy_rate, plugin_entropy_rate, stationary_distribution

# --------------------------------------------------------------------------------------------------
# Markov


@pytest.mark.parametrize(
    "h, order, vocab, seed",
    [(1.5, 1, 16, 0), (0.2, 1, 4, 3), (3.9, 1, 16, 1), (2.5, 2, 8, 3), (0.7, 3, 4, 2), (1.0, 1, 2, 0)],
)
def test_markov_rate_is_exactly_h(h, order, vocab, seed):
    src = markov_source(h, order=order, vocab=vocab, seed=seed)
    assert src.entropy_rate == pytest.approx(h, abs=1e-9)
    # recompute independently: sum_s pi_s H(P_s) with the contexts' stationary distribution
    assert markov_entropy_rate(src.transition, src.stationary) == pytest.approx(h, abs=1e-9)
    assert src.estimated_entropy_rate() == src.entropy_rate


def test_markov_stationary_distribution_is_stationary():
    # order 2 over V = 3: build the 9 x 9 context chain densely and check pi P = pi
    src = markov_source(1.2, order=2, vocab=3, seed=5)
    V = 3
    big = np.zeros((V * V, V * V))
    for s in range(V * V):
        for x in range(V):
            big[s, (s % V) * V + x] = src.transition[s, x]
    np.testing.assert_allclose(src.stationary @ big, src.stationary, atol=1e-13)
    np.testing.assert_allclose(src.stationary, stationary_distribution(big), atol=1e-12)


def test_markov_max_entropy_is_uniform_and_bounds_are_enforced():
    src = markov_source(4.0, vocab=16)
    np.testing.assert_allclose(src.transition, 1 / 16, atol=1e-15)
    for bad in (0.0, -1.0, 4.0001, math.nan):
        with pytest.raises(ValueError, match="h"):
            markov_source(bad, vocab=16)
    with pytest.raises(ValueError, match="vocab\\^order"):
        markov_source(1.0, order=5, vocab=64)


def test_markov_sample_shape_determinism_and_splits():
    src = parse_source("markov:h=1.5,order=2,vocab=8,seed=1")
    a = src.sample(4, 50, seed=7)
    assert a.shape == (4, 50) and a.dtype == torch.int64
    assert int(a.min()) >= 0 and int(a.max()) < 8
    assert torch.equal(a, src.sample(4, 50, seed=7))
    assert not torch.equal(a, src.sample(4, 50, seed=8))
    assert not torch.equal(a, src.sample(4, 50, seed=7, split="val"))
    assert src.sample(3, 1, seed=0).shape == (3, 1)  # shorter than the order: context digits only
    with pytest.raises(ValueError, match="split"):
        src.sample(1, 5, seed=0, split="test")
    with pytest.raises(ValueError, match="seq_len"):
        src.sample(1, 0, seed=0)


def test_markov_samples_have_the_chain_statistics():
    # order-2 chain, h = 1.5 bits, V = 8, N = 3e5 tokens. The plug-in at order 2 (the true order)
    # recovers h: its sd is ~ sd(-log2 p) / sqrt(N) ~ 1.3 / 550 = 2.4e-3 and the Miller-Madow
    # residual bias is O(m / N^2); tolerance 0.015. At order 1 it cannot see the context that picks
    # each row's permutation, so it is far above h (measured 2.91 bits for this seed).
    src = markov_source(1.5, order=2, vocab=8, seed=3)
    x = src.sample(1, 300_000, seed=11)[0].numpy()
    assert plugin_entropy_rate(x, 2) == pytest.approx(1.5, abs=0.015)
    assert plugin_entropy_rate(x, 3) == pytest.approx(1.5, abs=0.015)
    assert plugin_entropy_rate(x, 1) > 2.0
    # the marginal of the samples is the stationary marginal (sum over the older context symbol)
    marginal = src.stationary.reshape(8, 8).sum(axis=0)
    np.testing.assert_allclose(np.bincount(x, minlength=8) / x.size, marginal, atol=5e-3)


def test_markov_first_tokens_are_stationary():
    # many short sequences: position 0 has the stationary marginal, not a fixed start state
    src = markov_source(0.8, order=1, vocab=4, seed=2)
    first = src.sample(40_000, 3, seed=0)[:, 0].numpy()
    # binomial sd of a frequency: sqrt(p (1-p) / 4e4) <= 2.5e-3; tolerance 1e-2
    np.testing.assert_allclose(np.bincount(first, minlength=4) / first.size, src.stationary, atol=1e-2)


# --------------------------------------------------------------------------------------------------
# grammar


def _derivation_log2_prob(src: GrammarSource, sentence: list[int]) -> float:
    """Parse a sentence top-down (the s-grammar makes every step forced) and sum log2 p(rule)."""
    stack, total = [0], 0.0
    for token in sentence:
        A = stack.pop()
        (rule,) = [r for r in src.rules[A] if r.terminal == token]
        total += math.log2(rule.prob)
        stack.extend(reversed(rule.children))
    assert not stack, "a sampled sentence must be a complete derivation"
    return total


def test_grammar_is_unambiguous_and_normalized():
    src = grammar_source(depth=3, vocab=16, seed=0)
    for rules in src.rules:
        assert len({r.terminal for r in rules}) == len(rules)  # distinct leading terminals
        assert all(r.terminal != 0 for r in rules)  # 0 only separates sentences
        assert sum(r.prob for r in rules) == pytest.approx(1.0, abs=1e-12)


def test_grammar_rate_matches_monte_carlo():
    # The closed-form H(S) (derivation entropy) and E[len] are checked against Monte Carlo means of
    # -log2 p(sentence) and len over 20k sampled sentences; CLT sd = std / sqrt(2e4) (~0.02 bits and
    # ~0.01 tokens here), tolerance 5 sd computed from the sample itself.
    src = grammar_source(depth=3, vocab=16, seed=4)
    stream = src.sample(1, 80_000, seed=1)[0].tolist()
    cuts = [i for i, t in enumerate(stream) if t == 0]
    sentences = [stream[a + 1 : b] for a, b in zip(cuts[:-1], cuts[1:])]
    info = np.array([-_derivation_log2_prob(src, s) for s in sentences])
    lengths = np.array([len(s) for s in sentences])
    n = len(sentences)
    assert src.sentence_entropy == pytest.approx(info.mean(), abs=5 * info.std() / math.sqrt(n))
    assert src.mean_length == pytest.approx(lengths.mean(), abs=5 * lengths.std() / math.sqrt(n))
    assert src.entropy_rate == pytest.approx(src.sentence_entropy / (src.mean_length + 1), abs=1e-15)


def test_grammar_plugin_approaches_the_rate_from_above():
    # a grammar stream is not Markov: the plug-in conditional entropy decreases with the order and
    # stays above the rate at low orders (conditioning reduces entropy; H(X_k+1|X_1..X_k) >= rate).
    src = parse_source("grammar")
    x = src.sample(1, 200_000, seed=0)[0].numpy()
    estimates = [plugin_entropy_rate(x, k) for k in range(4)]
    assert all(a > b for a, b in zip(estimates, estimates[1:]))
    assert estimates[3] > src.entropy_rate


# --------------------------------------------------------------------------------------------------
# text


def test_text_source_from_a_file(tmp_path):
    text = "the quick brown fox jumps over the lazy dog. " * 40
    path = tmp_path / "fox.txt"
    path.write_text(text, encoding="utf-8")
    src = parse_source(f"text:{path}")
    assert isinstance(src, TextSource) and src.entropy_rate is None
    assert src.vocab_size == len(set(text))
    assert src.alphabet == "".join(sorted(set(text)))
    assert src.decode(src.ids) == text
    n_val = math.ceil(0.1 * len(text))
    train, val = text[: len(text) - n_val], text[len(text) - n_val :]
    for row in src.sample(20, 30, seed=0):
        assert src.decode(row) in train
    for row in src.sample(20, 30, seed=0, split="val"):
        assert src.decode(row) in val
    with pytest.raises(ValueError, match="fewer than seq_len"):
        src.sample(1, n_val + 1, seed=0, split="val")
    # a repeated sentence is nearly deterministic after its first copy
    assert src.estimated_entropy_rate() < 1.0


def test_text_builtin():
    src = parse_source("text:builtin")
    assert src.spec == "text:builtin"
    assert src.ids.size > 400_000 and 60 < src.vocab_size < 200
    batch = src.sample(2, 64, seed=3)
    assert batch.shape == (2, 64) and int(batch.max()) < src.vocab_size


# --------------------------------------------------------------------------------------------------
# spec strings


def test_canonical_specs_round_trip():
    for spec in ("markov:h=1.5", "markov:h=2,order=2,vocab=8,seed=4", "grammar", "grammar:depth=2,vocab=10,seed=1"):
        src = parse_source(spec)
        assert isinstance(src, Source)
        again = parse_source(src.spec)
        assert again.spec == src.spec
        assert torch.equal(again.sample(2, 20, seed=0), src.sample(2, 20, seed=0))
    assert parse_source("markov:h=1.5").spec == "markov:h=1.5,order=1,vocab=16,seed=0"
    assert isinstance(parse_source("markov:h=1.5"), MarkovSource)


@pytest.mark.parametrize(
    "spec, match",
    [
        ("", "empty"),
        ("bogus:h=1", "unknown kind"),
        ("markov", "needs the entropy rate"),
        ("markov:h=abc", "not a valid float"),
        ("markov:h=1,colour=red", "unknown option"),
        ("markov:h=1,h=2", "twice"),
        ("grammar:depth=x", "not a valid int"),
        ("text:", "builtin"),
    ],
)
def test_bad_specs_show_the_grammar(spec, match):
    with pytest.raises(ValueError, match=match) as info:
        parse_source(spec)
    assert SPEC_GRAMMAR in str(info.value)


def test_missing_text_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        parse_source(f"text:{tmp_path / 'nope.txt'}")


def test_entropy_bits_of_zipf_row_is_the_rate():
    # the construction: every row is a permutation of one Zipf row, so H(row) = rate
    src = markov_source(2.2, vocab=12, seed=9)
    for row in src.transition:
        assert entropy_bits(row) == pytest.approx(2.2, abs=1e-9)
