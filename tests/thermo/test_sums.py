"""sequence_sums against the exact per-row ensemble, reduced by hand; fast path vs float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from thermolens.thermo import SequenceBlocks, SequenceSums, boltzmann, ensemble, sequence_sums
from thermolens.thermo.sums import SUM_FIELDS

BETAS = np.geomspace(0.05, 20, 12)


def _logits(seed=0, shape=(3, 4, 9, 11), scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64) * scale


def _by_hand(logits, betas, mask):
    """The per-row quantities of the sums.py table, from boltzmann/ensemble, summed by loops."""
    x = logits.double().numpy()
    b_, h_, n_q, n_k = x.shape
    m = np.broadcast_to(mask.numpy() if mask is not None else True, x.shape)
    ens = ensemble(x, betas, m)
    out = {k: np.zeros((len(betas), b_, h_)) for k in SUM_FIELDS}
    j = np.arange(n_k)
    for s in range(b_):
        for h in range(h_):
            for i in range(n_q):
                valid = m[s, h, i]
                n = valid.sum()
                if n == 0:
                    continue
                for k, beta in enumerate(betas):
                    p = boltzmann(x[s, h, i], beta, valid)
                    y = np.sum(p**2)
                    q = 1.0 if n == 1 else (y - 1 / n) / (1 - 1 / n)
                    u = np.where(valid, 1.0 / n, 0.0)
                    vals = {
                        "rows": 1.0, "keys": n,
                        "free_energy": ens.free_energy[k, s, h, i], "energy": ens.energy[k, s, h, i],
                        "entropy": ens.entropy[k, s, h, i], "heat_capacity": ens.heat_capacity[k, s, h, i],
                        "concentration": q, "concentration_sq": q * q,
                        "spread": p @ j**2 - (p @ j) ** 2, "distance": p @ (j - i) ** 2,
                        "uniform_spread": u @ j**2 - (u @ j) ** 2, "uniform_distance": u @ (j - i) ** 2,
                    }
                    for key, v in vals.items():
                        out[key][k, s, h] += v
    return out


def _mask(kind, shape):
    b_, h_, n_q, n_k = shape
    if kind == "none":
        return None
    if kind == "causal_padding":
        causal = torch.ones(n_q, n_k, dtype=torch.bool).tril(diagonal=n_k - n_q)
        pad = torch.ones(b_, 1, 1, n_k, dtype=torch.bool)
        pad[1, ..., -3:] = False
        return causal[None, None] & pad
    g = torch.Generator().manual_seed(1)
    if kind == "per_head":
        return torch.rand(shape, generator=g) < 0.6
    mask = torch.rand((b_, 1, n_q, n_k), generator=g) < 0.5
    mask[0, 0, 2] = False  # a query row with no key: contributes nothing
    mask[1, 0, 3] = False
    mask[1, 0, 3, 4] = True  # a single key: S = C = 0, q = 1
    return mask


MASK_KINDS = ["none", "causal_padding", "ragged_with_empty_rows", "per_head"]
# 7 temperatures per octave and an odd count: the fused kernel squares weights along chains.
OCTAVE_BETAS = 1.0 / (0.05 * 2.0 ** (np.arange(23) / 7))


@pytest.mark.parametrize("mask_kind", MASK_KINDS)
def test_float64_sums_equal_the_ensemble_reduced_by_hand(mask_kind):
    logits = _logits()
    mask = _mask(mask_kind, logits.shape)
    got = sequence_sums(logits, BETAS, mask, precision="float64")
    want = _by_hand(logits, BETAS, mask)
    for k in SUM_FIELDS:
        np.testing.assert_allclose(getattr(got, k).numpy(), want[k], rtol=1e-10, atol=1e-10, err_msg=k)


@pytest.mark.parametrize("temperatures", [np.geomspace(0.05, 20, 40), np.geomspace(0.05, 25.6, 64)],
                         ids=["geometric", "octave_default"])
def test_fast_precision_matches_float64_to_about_1e_6(temperatures):
    # Realistic attention-like logits: wide spread plus a few large "sink" logits per row. The
    # scan's default grid (7 per octave) takes most weights through chains of up to 4 squarings.
    g = torch.Generator().manual_seed(2)
    logits = torch.randn((2, 3, 64, 64), generator=g) * 3.0
    logits[..., 0] += 12.0
    mask = torch.ones(64, 64, dtype=torch.bool).tril()[None, None]
    betas = 1.0 / temperatures
    fast = sequence_sums(logits, betas, mask)
    exact = sequence_sums(logits, betas, mask, precision="float64")
    for k in SUM_FIELDS:
        a, b = getattr(fast, k).numpy(), getattr(exact, k).numpy()
        # Relative to each curve's largest magnitude over T (the scale that sets T*), per head.
        scale = np.abs(b).max(axis=0, keepdims=True)
        assert np.all(np.abs(a - b) <= 2e-6 * scale + 1e-300), k


def test_chunking_and_blocking_do_not_change_results():
    logits = _logits(seed=3, shape=(2, 3, 20, 16))
    mask = torch.rand((2, 1, 20, 16), generator=torch.Generator().manual_seed(4)) < 0.7
    ref = sequence_sums(logits, BETAS, mask, precision="float64")
    tiny = sequence_sums(logits, BETAS, mask, precision="float64", chunk_bytes=1)  # one row per chunk
    for k in SUM_FIELDS:
        np.testing.assert_allclose(getattr(tiny, k).numpy(), getattr(ref, k).numpy(), rtol=1e-12, atol=1e-12)


def test_accelerator_kernels_agree_with_the_cpu_kernels(monkeypatch):
    # The torch kernels (exp_, bmm) that run on CUDA, exercised here on CPU.
    import thermolens.thermo.sums as sums_module

    logits = _logits(seed=8, shape=(2, 3, 12, 10))
    mask = torch.rand((2, 1, 12, 10), generator=torch.Generator().manual_seed(9)) < 0.7
    want = sequence_sums(logits, BETAS, mask, precision="float64")
    monkeypatch.setattr(sums_module, "_numpy_kernels", lambda device: False)
    got = sequence_sums(logits, BETAS, mask, precision="float64", chunk_bytes=2**30)
    for k in SUM_FIELDS:
        torch.testing.assert_close(getattr(got, k), getattr(want, k), rtol=1e-12, atol=1e-12)


def test_worker_threads_give_identical_sums_and_restore_torch_threads():
    logits = _logits(seed=7, shape=(4, 3, 16, 16))
    before = torch.get_num_threads()
    one = sequence_sums(logits, BETAS, threads=1)
    two = sequence_sums(logits, BETAS, threads=2, chunk_bytes=16 * 12 * 16 * 4)  # many small blocks
    assert torch.get_num_threads() == before
    for k in SUM_FIELDS:
        torch.testing.assert_close(getattr(two, k), getattr(one, k), rtol=1e-12, atol=1e-12)


def test_sums_are_additive_over_sequences():
    logits = _logits(seed=5)
    whole = sequence_sums(logits, BETAS, precision="float64")
    parts = [sequence_sums(logits[i:i + 1], BETAS, precision="float64") for i in range(logits.shape[0])]
    stacked = SequenceSums.concat(parts)
    for k in SUM_FIELDS:
        np.testing.assert_allclose(getattr(stacked, k).numpy(), getattr(whole, k).numpy(), rtol=1e-13)
    np.testing.assert_allclose(whole.total().heat_capacity.numpy()[:, 0],
                               (parts[0] + parts[1] + parts[2]).heat_capacity.numpy()[:, 0], rtol=1e-13)
    np.testing.assert_allclose(whole.numpy().select([0, 2]).entropy,
                               whole.entropy.numpy()[:, [0, 2]], rtol=0)


def test_float16_and_numpy_inputs_and_shapes():
    logits = _logits(seed=6, shape=(1, 2, 5, 7))
    ss = sequence_sums(logits.numpy(), BETAS)
    assert ss.heat_capacity.shape == (BETAS.size, 1, 2) and ss.heat_capacity.dtype == torch.float64
    ss16 = sequence_sums(logits.half(), BETAS)
    assert torch.isfinite(ss16.entropy).all()
    with_grad = logits.clone().requires_grad_(True)
    torch.testing.assert_close(sequence_sums(with_grad, BETAS).entropy, sequence_sums(logits, BETAS).entropy)


@pytest.mark.parametrize("betas", [BETAS, OCTAVE_BETAS], ids=["geometric", "octave"])
@pytest.mark.parametrize("mask_kind", MASK_KINDS)
def test_fused_kernel_matches_the_ensemble_reduced_by_hand(betas, mask_kind):
    logits = _logits(seed=11).float().double()  # float32 values: the kernel's input precision
    mask = _mask(mask_kind, logits.shape)
    got = sequence_sums(logits, betas, mask)  # float32 on CPU: the fused kernel
    want = _by_hand(logits, betas, mask)
    for k in SUM_FIELDS:
        scale = np.abs(want[k]).max(axis=0, keepdims=True)  # per head, over T
        assert np.all(np.abs(getattr(got, k).numpy() - want[k]) <= 2e-6 * scale + 1e-12), k


def test_doubling_sources_form_short_chains_on_an_octave_grid():
    from thermolens.thermo.sums import _MAX_SQUARINGS, _doubling_sources

    order, source, double = _doubling_sources(OCTAVE_BETAS)
    assert list(np.sort(OCTAVE_BETAS)) == list(OCTAVE_BETAS[order])
    squared = source >= 0
    np.testing.assert_allclose(OCTAVE_BETAS[squared], 2 * OCTAVE_BETAS[source[squared]], rtol=1e-12)
    position = {int(k): i for i, k in enumerate(order)}
    assert all(position[int(source[k])] < position[k] for k in np.flatnonzero(squared))  # filled first
    depth = np.zeros(source.size, dtype=int)
    for k in order:
        depth[k] = depth[source[k]] + 1 if source[k] >= 0 else 0
    # 23 points over 3 2/7 octaves: fresh weights for the hottest octave's 7 (smallest beta), and
    # squarings (chains of at most 3 here) reach the rest.
    assert depth.max() == 3 and (~squared).sum() == 7
    # The scan's default, 64 points at 7 per octave: chains of _MAX_SQUARINGS, then a fresh octave.
    _, default_source, _ = _doubling_sources(1.0 / np.geomspace(0.05, 25.6, 64))
    assert (default_source < 0).sum() == 7 * -(-64 // (7 * (_MAX_SQUARINGS + 1)))
    has_double = double[: OCTAVE_BETAS.size] >= 0
    np.testing.assert_allclose(OCTAVE_BETAS[double[: OCTAVE_BETAS.size][has_double]], 2 * OCTAVE_BETAS[has_double],
                               rtol=1e-12)
    assert has_double.sum() == OCTAVE_BETAS.size - 7 and double.size == OCTAVE_BETAS.size + 1
    _, none, no_double = _doubling_sources(np.geomspace(0.05, 20, 64))  # not octave-aligned
    assert (none < 0).all() and (no_double < 0).all()


@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_unchecked_logits_with_minus_inf_at_masked_keys(precision):
    # The scan's captures (checked when made) hold -inf at absent keys and skip the finiteness pass.
    logits = _logits(seed=12)
    mask = _mask("ragged_with_empty_rows", logits.shape)
    want = sequence_sums(logits, BETAS, mask, precision=precision)
    got = sequence_sums(logits.masked_fill(~mask, -torch.inf), BETAS, mask, precision=precision, check_finite=False)
    for k in SUM_FIELDS:
        torch.testing.assert_close(getattr(got, k), getattr(want, k), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"logits": torch.zeros(3, 4)}, "batch, heads"),
        ({"betas": [0.0, 1.0]}, "> 0"),
        ({"mask": torch.ones(2, 2, 2, 3)}, "boolean"),
        ({"mask": torch.ones(5, 1, 1, 1, dtype=torch.bool)}, "broadcast"),
        ({"logits": torch.full((1, 1, 2, 3), float("nan"))}, "NaN"),
        ({"precision": "half"}, "precision"),
    ],
)
def test_bad_input(kwargs, match):
    args = {"logits": torch.zeros(1, 1, 2, 3), "betas": [1.0], "mask": None} | kwargs
    precision = args.pop("precision", "float32")
    with pytest.raises(ValueError, match=match):
        sequence_sums(args["logits"], args["betas"], args["mask"], precision=precision)


def test_fused_kernel_on_random_shapes_masks_and_unsorted_grids():
    # Odd key counts (padding lanes), non-contiguous inputs, per-head and shared masks with empty
    # rows, unsorted grids holding doubles and duplicates: the kernel against the float64 path.
    rng = np.random.default_rng(0)
    for trial in range(30):
        b, h, q, k = (int(v) for v in rng.integers(1, [4, 4, 20, 40]))
        logits = torch.from_numpy(rng.normal(size=(b, h, q, k)) * rng.uniform(0.1, 8)).float().double()
        if trial % 3 == 0:
            logits = logits.transpose(-1, -2).contiguous().transpose(-1, -2)
        mask = torch.from_numpy(rng.random((b, 1 if trial % 2 else h, q, k)) < rng.uniform(0.3, 1.0))
        betas = np.exp(rng.normal(size=int(rng.integers(1, 12))))
        if trial % 4 == 0:
            betas = np.concatenate([betas, 2 * betas[:2], betas[:1]])
        fast = sequence_sums(logits, betas, mask)
        exact = sequence_sums(logits, betas, mask, precision="float64")
        for name in SUM_FIELDS:
            want = getattr(exact, name).numpy()
            scale = np.abs(want).max(axis=0, keepdims=True)
            assert np.all(np.abs(getattr(fast, name).numpy() - want) <= 2e-6 * scale + 1e-12), (trial, name)


def test_sequence_blocks_fold_a_stream_into_contiguous_blocks_whatever_the_batches():
    betas = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    per_seq = sequence_sums(_logits(seed=3, shape=(10, 4, 9, 11)), betas, precision="float64")

    def fold(max_blocks, cuts):
        blocks = SequenceBlocks(10, max_blocks)
        for a, b in zip(cuts[:-1], cuts[1:]):
            blocks.add(per_seq.select(slice(a, b)))
        return blocks

    # As many blocks as sequences: the blocks are the sequences themselves.
    one_each = fold(16, [0, 4, 10]).sums
    for k in SUM_FIELDS:
        torch.testing.assert_close(getattr(one_each, k), getattr(per_seq, k), rtol=0, atol=0)
    # 10 sequences into at most 4 blocks: 3 sequences a block ([0,3), [3,6), [6,9), [9,10)), batches aside.
    by_two = fold(4, [0, 2, 4, 6, 8, 10])
    at_once = fold(4, [0, 10])
    assert (by_two.block_size, by_two.n_blocks) == (3, 4)
    for k in SUM_FIELDS:
        x = getattr(by_two.sums, k)
        torch.testing.assert_close(x, getattr(at_once.sums, k), rtol=1e-15, atol=0)
        torch.testing.assert_close(x[:, 1], getattr(per_seq, k)[:, 3:6].sum(dim=1))
        torch.testing.assert_close(x.sum(dim=1), getattr(per_seq, k).sum(dim=1))


def test_sequence_blocks_refuse_a_short_or_overlong_stream():
    betas = torch.tensor([1.0], dtype=torch.float64)
    sums = sequence_sums(_logits(shape=(3, 2, 5, 5)), betas)
    blocks = SequenceBlocks(4, 2)
    blocks.add(sums)
    with pytest.raises(ValueError, match="3 of 4 sequences were added"):
        blocks.sums
    with pytest.raises(ValueError, match="6 sequences added to blocks made for 4"):
        blocks.add(sums)
    with pytest.raises(ValueError, match="max_blocks >= 1"):
        SequenceBlocks(4, 0)
