"""Token sources of known entropy rate, for training language models whose loss floor is known.

Three kinds, each built from a spec string by :func:`parse_source` (grammar in ``SPEC_GRAMMAR``):

* :class:`MarkovSource` ``markov:h=<bits>[,order=<k>][,vocab=<V>][,seed=<s>]`` — a stationary
  Markov chain of order ``k`` over ``V`` symbols whose exact entropy rate is ``h`` bits/token.
  Every state (the last ``k`` symbols) draws its next symbol from its own random permutation of
  one Zipf row ``q_r ∝ r^(-a)``, ``r = 1..V``. All rows then share the entropy ``H(q(a))``, so the
  entropy rate ``sum_s pi_s H(P_s)`` equals ``H(q(a))`` whatever the stationary distribution
  ``pi``; ``a`` is found by root finding on this monotone function (``a = 0``: uniform,
  ``log2 V``; ``a -> inf``: deterministic, 0). The context structure is real — which symbol is
  likely depends on the whole context — so a model (or an estimator) that looks back fewer than
  ``k`` symbols sees a higher entropy.
* :class:`GrammarSource` ``grammar[:depth=<D>,vocab=<V>,seed=<s>]`` — sentences of a seeded
  probabilistic context-free grammar, separated by the token ``0``. The grammar is a *simple
  deterministic* (s-)grammar: every rule is ``A -> a B1 .. Bm`` with a terminal ``a`` that no
  other rule of ``A`` starts with, so a sentence has exactly one derivation and its entropy equals
  the derivation entropy, ``H(A) = H(rule of A) + sum_r p_r sum_{B in r} H(B)`` (Grenander 1967;
  Chi 1999, Computational Linguistics 25:131). Nonterminals are layered (level ``d`` rewrites only
  to level ``d+1``, the last level only to terminals), so every quantity is a finite recursion.
  The stream's entropy rate is exact: ``H(S) / (E[len S] + 1)`` bits/token (i.i.d. sentences,
  the ``+1`` is the separator).
* :class:`TextSource` ``text:builtin`` | ``text:<path>`` — character-level text (vocabulary: the
  sorted distinct characters, so the mapping is deterministic); the first 90% is the training
  split, the last 10% the validation split. Its entropy rate is unknown; ``estimated_entropy_rate``
  is the Lempel–Ziv match-length estimate in its mean-of-ratios form
  (``thermolens.stats.entropy.lz_entropy_rate(..., form="ratio")``) on the whole text.

``sample(n_seq, seq_len, seed=..., split="train"|"val")`` returns an ``(n_seq, seq_len)`` int64
tensor. For the synthetic sources the validation split is an independent random stream (the
draws come from ``numpy.random.default_rng([seed, 0 or 1])``); for text it is held-out text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from thermolens.stats.entropy import entropy_bits, lz_entropy_rate, stationary_distribution

__all__ = [
    "SPEC_GRAMMAR",
    "GrammarSource",
    "MarkovSource",
    "Source",
    "TextSource",
    "grammar_source",
    "markov_source",
    "parse_source",
    "text_source",
]

SPEC_GRAMMAR = (
    "markov:h=<bits>[,order=<k>][,vocab=<V>][,seed=<s>]  |  grammar[:depth=<D>,vocab=<V>,seed=<s>]  |  "
    "text:builtin  |  text:<path>"
)
SPLITS = ("train", "val")
VAL_FRACTION = 0.1
# the largest Markov state space built (V^k states, V^(k+1) transition probabilities)
MAX_STATES = 1 << 16
MAX_TRANSITIONS = 1 << 22


@runtime_checkable
class Source(Protocol):
    """What every source offers (see the module docstring)."""

    spec: str  # canonical spec, e.g. "markov:h=1.5,order=1,vocab=16,seed=0"
    vocab_size: int  # token ids are 0..vocab_size-1
    entropy_rate: float | None  # exact entropy rate in bits/token where known, else None

    def sample(self, n_seq: int, seq_len: int, *, seed: int, split: str = "train") -> torch.Tensor: ...

    def estimated_entropy_rate(self, *, seed: int = 0) -> float: ...


def _check_sample_args(n_seq: int, seq_len: int, split: str) -> int:
    for name, value in (("n_seq", n_seq), ("seq_len", seq_len)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return SPLITS.index(split)


# --------------------------------------------------------------------------------------------------
# Markov chains of chosen order and entropy rate


def zipf_row(a: float, vocab: int) -> np.ndarray:
    """``q_r ∝ r^(-a)``, ``r = 1..vocab`` (computed in log space, so large ``a`` does not overflow)."""
    logits = -a * np.log(np.arange(1, vocab + 1, dtype=np.float64))
    q = np.exp(logits - logits.max())
    return q / q.sum()


def zipf_exponent_for_entropy(h: float, vocab: int) -> float:
    """The Zipf exponent ``a >= 0`` whose row entropy ``H(q(a))`` is ``h`` bits (to ~1e-12)."""
    from scipy.optimize import brentq

    h_max = math.log2(vocab)
    if not (0.0 < h <= h_max):
        raise ValueError(
            f"h={h!r} bits is outside (0, log2 V = {h_max:.6g}] for vocab={vocab}; "
            "pick 0 < h <= log2(vocab) or raise vocab"
        )
    if h >= h_max - 1e-13:
        return 0.0
    hi = 1.0
    while entropy_bits(zipf_row(hi, vocab)) > h:
        hi *= 2.0
        if hi > 1e6:
            raise ValueError(f"h={h!r} bits is too close to 0 to build a chain; pick h >= 1e-6")
    return float(brentq(lambda a: entropy_bits(zipf_row(a, vocab)) - h, 0.0, hi, xtol=1e-15, rtol=1e-15, maxiter=500))


@dataclass(frozen=True)
class MarkovSource:
    """A stationary order-``k`` Markov chain; build it with :func:`markov_source`.

    ``transition`` is ``(V^k, V)``: row ``s`` is the next-symbol distribution in context ``s``
    (``s = x_{t-k} V^(k-1) + ... + x_{t-1}``); ``stationary`` is the stationary distribution of the
    contexts, from which each sequence's first ``k`` symbols are drawn (so samples are stationary
    from the first token).
    """

    spec: str
    vocab_size: int
    entropy_rate: float
    order: int
    seed: int
    zipf_exponent: float
    transition: np.ndarray  # (V^k, V)
    stationary: np.ndarray  # (V^k,)

    def sample(self, n_seq: int, seq_len: int, *, seed: int, split: str = "train") -> torch.Tensor:
        stream = _check_sample_args(n_seq, seq_len, split)
        rng = np.random.default_rng([int(seed), stream])
        k, V = self.order, self.vocab_size
        start = rng.choice(self.stationary.size, size=int(n_seq), p=self.stationary)
        uniforms = rng.random((int(n_seq), max(int(seq_len) - k, 0)))
        cdf = np.cumsum(self.transition, axis=1)
        tokens = _markov_walk(cdf, start, uniforms, k, V, int(seq_len))
        return torch.from_numpy(tokens)

    def estimated_entropy_rate(self, *, seed: int = 0) -> float:
        """Exact: the chain's entropy rate (no estimate needed)."""
        return self.entropy_rate


def _markov_walk(cdf: np.ndarray, start: np.ndarray, uniforms: np.ndarray, k: int, V: int, seq_len: int) -> np.ndarray:
    """Token ids ``(n_seq, seq_len)``: the ``k`` digits of each start context, then the chain."""
    from thermolens.data._walk import walk

    return walk(cdf, start.astype(np.int64), uniforms, k, V, seq_len)


def _context_stationary(transition: np.ndarray, order: int, vocab: int) -> np.ndarray:
    """Stationary distribution of the contexts of an order-``k`` chain (state = last ``k`` symbols)."""
    if order == 1:
        return stationary_distribution(transition)
    import scipy.sparse as sp
    from scipy.sparse.linalg import spsolve

    n_states = vocab**order
    src = np.repeat(np.arange(n_states), vocab)
    dst = (src % (vocab ** (order - 1))) * vocab + np.tile(np.arange(vocab), n_states)
    # pi (P - I) = 0, one equation replaced by sum(pi) = 1
    A = sp.csr_matrix((transition.reshape(-1), (dst, src)), shape=(n_states, n_states)) - sp.identity(n_states, format="csr")
    A = sp.vstack([A[:-1], sp.csr_matrix(np.ones((1, n_states)))]).tocsc()
    b = np.zeros(n_states)
    b[-1] = 1.0
    pi = spsolve(A, b)
    pi = np.clip(pi, 0.0, None)
    return pi / pi.sum()


def markov_source(h: float, *, order: int = 1, vocab: int = 16, seed: int = 0) -> MarkovSource:
    """Build the order-``order`` chain over ``vocab`` symbols with exact entropy rate ``h`` bits/token."""
    if not isinstance(order, int) or order < 1:
        raise ValueError(f"order must be an integer >= 1, got {order!r}")
    if not isinstance(vocab, int) or vocab < 2:
        raise ValueError(f"vocab must be an integer >= 2, got {vocab!r}")
    if vocab**order > MAX_STATES or vocab ** (order + 1) > MAX_TRANSITIONS:
        raise ValueError(
            f"order={order}, vocab={vocab} gives {vocab}^{order} contexts; keep vocab^order <= {MAX_STATES} "
            f"and vocab^(order+1) <= {MAX_TRANSITIONS} (lower the order or the vocabulary)"
        )
    if not isinstance(h, (int, float)) or not math.isfinite(h):
        raise ValueError(f"h must be a finite number of bits, got {h!r}")
    a = zipf_exponent_for_entropy(float(h), vocab)
    q = zipf_row(a, vocab)
    rng = np.random.default_rng([int(seed), 0x6D61726B])  # "mark": the chain's own stream
    n_states = vocab**order
    # row s = q permuted by an independent random permutation (argsort of uniforms, vectorized)
    perms = np.argsort(rng.random((n_states, vocab)), axis=1)
    transition = np.empty((n_states, vocab))
    np.put_along_axis(transition, perms, np.broadcast_to(q, (n_states, vocab)), axis=1)
    stationary = _context_stationary(transition, order, vocab)
    spec = f"markov:h={float(h)!r},order={order},vocab={vocab},seed={int(seed)}"
    return MarkovSource(
        spec=spec, vocab_size=vocab, entropy_rate=entropy_bits(q), order=order, seed=int(seed),
        zipf_exponent=a, transition=transition, stationary=stationary,
    )


# --------------------------------------------------------------------------------------------------
# a probabilistic grammar with exact entropy rate

SEPARATOR = 0  # token id between sentences
_NONTERMINALS_PER_LEVEL = 3
_RULES_PER_NONTERMINAL = 4
_MAX_CHILDREN = 2


@dataclass(frozen=True)
class Rule:
    terminal: int  # the token the rule emits first (distinct among one nonterminal's rules)
    children: tuple[int, ...]  # nonterminal ids expanded after it, left to right
    prob: float


@dataclass(frozen=True)
class GrammarSource:
    """Sentences of a layered s-grammar (see the module docstring); build with :func:`grammar_source`.

    ``rules[A]`` are the rules of nonterminal ``A`` (``0`` is the start symbol);
    ``sentence_entropy`` is ``H(S)`` in bits, ``mean_length`` the expected sentence length in
    tokens (separator excluded).
    """

    spec: str
    vocab_size: int
    entropy_rate: float
    depth: int
    seed: int
    rules: tuple[tuple[Rule, ...], ...]
    sentence_entropy: float
    mean_length: float

    def _sentence(self, rng: np.random.Generator, out: list[int]) -> None:
        stack = [0]
        while stack:
            rules = self.rules[stack.pop()]
            u, acc = rng.random(), 0.0
            chosen = rules[-1]
            for rule in rules:
                acc += rule.prob
                if u < acc:
                    chosen = rule
                    break
            out.append(chosen.terminal)
            stack.extend(reversed(chosen.children))

    def sample(self, n_seq: int, seq_len: int, *, seed: int, split: str = "train") -> torch.Tensor:
        """Sequences cut from a stream of sentences; each starts at a random offset into its stream
        (uniform over the first ~4 sentences), so a sequence need not begin at a sentence start."""
        stream = _check_sample_args(n_seq, seq_len, split)
        rng = np.random.default_rng([int(seed), stream])
        out = np.empty((int(n_seq), int(seq_len)), dtype=np.int64)
        burn = max(1, int(round(4 * (self.mean_length + 1))))
        for i in range(int(n_seq)):
            offset = int(rng.integers(burn))
            tokens: list[int] = []
            while len(tokens) < offset + seq_len:
                self._sentence(rng, tokens)
                tokens.append(SEPARATOR)
            out[i] = tokens[offset : offset + seq_len]
        return torch.from_numpy(out)

    def estimated_entropy_rate(self, *, seed: int = 0) -> float:
        """Exact: derivation entropy per token (the grammar is unambiguous, see the module doc)."""
        return self.entropy_rate


def grammar_source(*, depth: int = 3, vocab: int = 16, seed: int = 0) -> GrammarSource:
    """A random layered s-grammar: one start symbol, ``depth`` levels of 3 nonterminals below it."""
    if not isinstance(depth, int) or not 1 <= depth <= 8:
        raise ValueError(f"depth must be an integer in 1..8, got {depth!r}")
    if not isinstance(vocab, int) or vocab < 3:
        raise ValueError(f"vocab must be an integer >= 3 (token 0 separates sentences), got {vocab!r}")
    rng = np.random.default_rng([int(seed), 0x6772616D])  # "gram"
    levels = [[0]] + [
        list(range(1 + (d - 1) * _NONTERMINALS_PER_LEVEL, 1 + d * _NONTERMINALS_PER_LEVEL)) for d in range(1, depth + 1)
    ]
    n_rules = min(_RULES_PER_NONTERMINAL, vocab - 1)
    rules: list[tuple[Rule, ...]] = []
    for d, level in enumerate(levels):
        for _ in level:
            terminals = rng.choice(np.arange(1, vocab), size=n_rules, replace=False)
            probs = rng.dirichlet(np.full(n_rules, 2.0))
            made = []
            for terminal, prob in zip(terminals, probs):
                n_children = int(rng.integers(0, _MAX_CHILDREN + 1)) if d < depth else 0
                children = tuple(int(c) for c in rng.choice(levels[d + 1], size=n_children)) if n_children else ()
                made.append(Rule(terminal=int(terminal), children=children, prob=float(prob)))
            rules.append(tuple(made))
    # derivation entropy and expected length, deepest level first (children are one level down)
    entropy = np.zeros(len(rules))
    length = np.zeros(len(rules))
    for level in reversed(levels):
        for A in level:
            entropy[A] = entropy_bits([r.prob for r in rules[A]]) + sum(
                r.prob * sum(entropy[B] for B in r.children) for r in rules[A]
            )
            length[A] = sum(r.prob * (1.0 + sum(length[B] for B in r.children)) for r in rules[A])
    return GrammarSource(
        spec=f"grammar:depth={depth},vocab={vocab},seed={int(seed)}", vocab_size=vocab,
        entropy_rate=float(entropy[0] / (length[0] + 1.0)), depth=depth, seed=int(seed),
        rules=tuple(rules), sentence_entropy=float(entropy[0]), mean_length=float(length[0]),
    )


# --------------------------------------------------------------------------------------------------
# text


@dataclass(frozen=True)
class TextSource:
    """Character-level text; ``ids`` is the whole text as token ids, ``alphabet`` the characters."""

    spec: str
    vocab_size: int
    entropy_rate: None
    alphabet: str  # alphabet[i] is the character of token id i
    ids: np.ndarray  # (n_chars,)

    @property
    def n_train(self) -> int:
        return self.ids.size - int(math.ceil(VAL_FRACTION * self.ids.size))

    def split_ids(self, split: str) -> np.ndarray:
        _check_sample_args(1, 1, split)
        return self.ids[: self.n_train] if split == "train" else self.ids[self.n_train :]

    def sample(self, n_seq: int, seq_len: int, *, seed: int, split: str = "train") -> torch.Tensor:
        """Random contiguous windows of ``seq_len`` characters from the split."""
        stream = _check_sample_args(n_seq, seq_len, split)
        ids = self.split_ids(split)
        if ids.size < seq_len:
            raise ValueError(
                f"the {split} split of {self.spec} has {ids.size} characters, fewer than seq_len={seq_len}; "
                "use a shorter seq_len or more text"
            )
        rng = np.random.default_rng([int(seed), stream])
        starts = rng.integers(0, ids.size - int(seq_len) + 1, size=int(n_seq))
        return torch.from_numpy(ids[starts[:, None] + np.arange(int(seq_len))])

    def estimated_entropy_rate(self, *, seed: int = 0) -> float:
        """Lempel–Ziv match-length estimate (mean-of-ratios form) on the whole text; deterministic,
        ``seed`` is unused. The default Kontoyiannis form is not used for text: verbatim repeated
        passages (the built-in corpus has many over 1,000 characters) dominate its mean match
        length and drive it towards 0 bits/char."""
        return lz_entropy_rate(self.ids, form="ratio")

    def decode(self, ids) -> str:
        return "".join(self.alphabet[int(i)] for i in np.asarray(ids).reshape(-1))


def text_source(text: str, *, spec: str) -> TextSource:
    """A :class:`TextSource` over ``text`` (at least 20 characters, so both splits are non-empty)."""
    if len(text) < 20:
        raise ValueError(f"the text of {spec} has {len(text)} characters; need at least 20")
    alphabet = "".join(sorted(set(text)))
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    lookup = {ord(c): i for i, c in enumerate(alphabet)}
    table_keys = np.array(sorted(lookup), dtype=np.uint32)
    ids = np.searchsorted(table_keys, codes).astype(np.int64)
    return TextSource(spec=spec, vocab_size=len(alphabet), entropy_rate=None, alphabet=alphabet, ids=ids)


# --------------------------------------------------------------------------------------------------
# spec strings


def _bad_spec(spec: str, why: str) -> ValueError:
    return ValueError(f"cannot read source {spec!r}: {why}; the grammar is {SPEC_GRAMMAR}")


def _parse_options(spec: str, body: str, allowed: dict[str, type]) -> dict[str, float | int]:
    options: dict[str, float | int] = {}
    for item in filter(None, (part.strip() for part in body.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in allowed:
            raise _bad_spec(spec, f"unknown option {item!r} (allowed: {', '.join(allowed)})")
        if key in options:
            raise _bad_spec(spec, f"option {key!r} is given twice")
        try:
            options[key] = allowed[key](value.strip())
        except ValueError:
            raise _bad_spec(spec, f"{key}={value.strip()!r} is not a valid {allowed[key].__name__}") from None
    return options


def parse_source(spec: str) -> MarkovSource | GrammarSource | TextSource:
    """Build the source a spec string names (grammar in ``SPEC_GRAMMAR``); ``ValueError`` otherwise."""
    if not isinstance(spec, str) or not spec.strip():
        raise _bad_spec(str(spec), "it is empty")
    spec = spec.strip()
    kind, _, body = spec.partition(":")
    kind = kind.strip().lower()
    if kind == "markov":
        options = _parse_options(spec, body, {"h": float, "order": int, "vocab": int, "seed": int})
        if "h" not in options:
            raise _bad_spec(spec, "markov needs the entropy rate h=<bits>")
        h = options.pop("h")
        return markov_source(float(h), **{k: int(v) for k, v in options.items()})
    if kind == "grammar":
        options = _parse_options(spec, body, {"depth": int, "vocab": int, "seed": int})
        return grammar_source(**{k: int(v) for k, v in options.items()})
    if kind == "text":
        target = body.strip()
        if not target:
            raise _bad_spec(spec, "text needs 'builtin' or a path")
        if target == "builtin":
            from thermolens.data.corpus import builtin_text

            return text_source(builtin_text(), spec="text:builtin")
        from thermolens.data.corpus import read_texts

        path = Path(target).expanduser()
        return text_source("\n\n".join(read_texts(path)), spec=f"text:{path}")
    raise _bad_spec(spec, f"unknown kind {kind!r}")
