"""Thermometer readings against direct computations (independent of thermo's implementation)."""

import math

import pytest
import torch

from thermolens.data.modular import ModularTask, make_dataset
from thermolens.experiments.grokking import thermometer
from thermolens.models import hooked
from thermolens.models.hooked import HookedTransformer, nanda2023


@pytest.fixture(scope="module")
def setup():
    p = 23
    data = make_dataset(ModularTask(p=p, train_fraction=0.5, seed=0))
    # a larger init makes the logits O(1), so the specific heat is far from its small-logit limit
    model = HookedTransformer(nanda2023(p, init_range=0.4), seed=0)
    null = thermometer.null_draw(data.n_test, 1, 4, 3, seed=7)
    reading = thermometer.read(model, data.test_tokens, data.test_labels, null)
    return p, data, model, null, reading


def _eq_logits(model, tokens):
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)
    return cache[hooked.attn_logits(0)][:, :, -1].double()  # (batch, head, 3): '=' sees all 3 keys


def test_C_eq_is_the_boltzmann_variance_of_the_energy(setup):
    _, data, model, _, reading = setup
    l = _eq_logits(model, data.test_tokens)
    p = torch.softmax(l, -1)
    mean = (p * l).sum(-1, keepdim=True)
    C = (p * (l - mean) ** 2).sum(-1)  # beta^2 Var_p(E) at beta = 1, E = -l
    for h in range(4):
        assert reading[f"C_eq_L0H{h}"] == pytest.approx(float(C[:, h].mean()), rel=1e-9)
    assert reading["C_eq"] == pytest.approx(float(C.mean()), rel=1e-9)
    S = -(p * torch.log(p)).sum(-1)
    assert reading["S_eq"] == pytest.approx(float(S.mean()), rel=1e-9)
    # F = U - T S and S <= log n for the '=' rows (n = 3 keys)
    assert reading["F_eq"] == pytest.approx(reading["U_eq"] - reading["S_eq"], rel=1e-9)
    assert 0 <= reading["S_eq"] <= math.log(3)


def test_kims_convention_gives_the_same_number(setup):
    # Kim (arXiv:2602.08216): E_K = -q.k, T_K = sqrt(d_k), C_K = Var(E_K) / T_K^2 (k_B = 1)
    _, data, model, _, reading = setup
    tokens = data.test_tokens
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)
        x = cache[hooked.resid_pre(0)]
        block = model.blocks[0]
        q = torch.einsum("bd,hde->bhe", x[:, -1], block.W_Q) + block.b_QKV[:128].view(4, 32)
        k = torch.einsum("bpd,hde->bhpe", x, block.W_K) + block.b_QKV[128:256].view(4, 1, 32)
    E_K = -torch.einsum("bhe,bhpe->bhp", q, k).double()
    T_K = math.sqrt(32)
    p = torch.softmax(-E_K / T_K, -1)
    var = (p * (E_K - (p * E_K).sum(-1, keepdim=True)) ** 2).sum(-1)
    assert reading["C_eq"] == pytest.approx(float((var / T_K**2).mean()), rel=1e-6)


def test_pooled_all_rows_and_null(setup):
    _, data, model, null, reading = setup
    with torch.no_grad():
        _, cache = model.run_with_cache(data.test_tokens)
    l = cache[hooked.attn_logits(0)].double()
    mask = cache[hooked.attn_mask(0)]
    p = torch.softmax(l.masked_fill(~mask, -torch.inf), -1)
    lm = l.masked_fill(~mask, 0.0)
    mean = (p * lm).sum(-1, keepdim=True)
    C = (p * (lm - mean) ** 2).sum(-1)  # (batch, head, q)
    U = -mean[..., 0]
    pooled = (C[:, :, 2].mean(0) + U[:, :, 2].var(0, unbiased=False)).mean()
    assert reading["C_pooled"] == pytest.approx(float(pooled), rel=1e-9)
    assert reading["C_all"] == pytest.approx(float(C[:, :, 1:].mean()), rel=1e-9)  # query 0 sees one key
    # null: Gaussian logits with each row's sample std (ddof 1) times the fixed draw
    eq = l[:, :, 2]
    g = eq.std(-1, keepdim=True) * null.z[:, 0]
    pg = torch.softmax(g, -1)
    Cg = (pg * (g - (pg * g).sum(-1, keepdim=True)) ** 2).sum(-1)
    assert reading["C_null"] == pytest.approx(float(Cg.mean()), rel=1e-9)
    assert reading["C_corr"] == pytest.approx(reading["C_eq"] - reading["C_null"], rel=1e-12)


def test_null_correction_vanishes_for_small_random_logits():
    # At small logits C -> sample variance of the row over its keys; the ddof-1 matched null has
    # the same expectation, so C_corr / C -> 0 up to sampling noise (~ 1/sqrt(rows)).
    p = 31
    data = make_dataset(ModularTask(p=p, train_fraction=0.5, seed=1))
    model = HookedTransformer(nanda2023(p, init_range=0.02), seed=1)
    null = thermometer.null_draw(data.n_test, 1, 4, 3, seed=3)
    reading = thermometer.read(model, data.test_tokens, data.test_labels, null)
    assert abs(reading["C_corr"]) < 0.1 * reading["C_eq"]


def test_loss_and_accuracy(setup):
    p, data, model, _, reading = setup
    with torch.no_grad():
        out = model(data.test_tokens)[:, -1].double()
    assert reading["loss"] == pytest.approx(float(torch.nn.functional.cross_entropy(out, data.test_labels)), rel=1e-9)
    assert reading["acc"] == pytest.approx(float((out.argmax(-1) == data.test_labels).double().mean()))


def test_temperature_sweep_T1_matches_reading_and_high_T_limit(setup):
    _, data, model, _, reading = setup
    sweep = thermometer.temperature_sweep(model, data.test_tokens, [1.0, 1e4])
    assert sweep["C"].shape == (2, 1, 4)
    for h in range(4):
        assert sweep["C"][0, 0, h] == pytest.approx(reading[f"C_eq_L0H{h}"], rel=1e-9)
    # S -> log n as T -> infinity (n = 3 keys)
    assert sweep["S"][1].min() == pytest.approx(math.log(3), abs=1e-6)


@pytest.mark.parametrize("causal", [True, False])
def test_attention_rows_equal_the_full_forward_in_a_deeper_model(causal):
    cfg = hooked.HookedConfig(n_layers=2, d_model=32, n_heads=2, d_head=16, d_mlp=64, n_ctx=5, d_vocab=40,
                              d_vocab_out=40, causal=causal)
    model = HookedTransformer(cfg, seed=3)
    tokens = torch.randint(0, 40, (60, 5), generator=torch.Generator().manual_seed(1))
    answer, rows = thermometer.attention_rows(model, tokens)
    with torch.no_grad():
        out, cache = model.run_with_cache(tokens)
    torch.testing.assert_close(answer, out[:, -1], rtol=1e-5, atol=1e-5)
    for layer in range(2):
        logits, mask = rows[layer]
        assert torch.equal(mask, cache[hooked.attn_mask(layer)])
        full = cache[hooked.attn_logits(layer)]
        torch.testing.assert_close(logits[..., mask], full[..., mask], rtol=1e-5, atol=1e-5)
