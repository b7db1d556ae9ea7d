"""Reduced-precision forward passes (issue 18): which devices run which dtype, and what bfloat16/float16
do to the captured logits and to a scan's critical temperatures.

Reference throughout: the same weights in float32. bfloat16 keeps 8 significant bits (unit roundoff
u = 2^-8 = 0.0039, IEEE-style round-to-nearest gives relative errors <= u/2 per rounding), float16
11 bits (u = 2^-11). A logit l = q.k * s computed in float32 from q and k that carry a few such
roundings each (embedding, norm, projection, rotary) is off by a few u relative to the logit scale;
the bounds below allow 4u of the largest |l|.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from thermolens.models import attention, capture_logits, from_pretrained_model, loading, temperature

UNIT_ROUNDOFF = {torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}


@pytest.fixture(scope="module")
def tiny_llama():
    """A tiny random Llama (GQA, rotary) with the bundled WordPiece tokenizer, so that it can be scanned.
    Query and key projections are scaled by 10: logit std ~1, so C(T) peaks inside the grid."""
    import transformers as tf

    torch.manual_seed(0)
    config = tf.LlamaConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=48, max_position_embeddings=256,
    )
    model = tf.LlamaForCausalLM(config)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight *= 10.0
            layer.self_attn.k_proj.weight *= 10.0
    tokenizer = tf.AutoTokenizer.from_pretrained(loading.bundled_model_dir(), local_files_only=True)
    return model, tokenizer


def _in(dtype, model, tokenizer=None):
    return from_pretrained_model(copy.deepcopy(model).to(dtype), tokenizer, name=f"tiny-llama-{dtype}")


def _ids(seed=0, batch=4, n=48):
    return torch.randint(1000, 30000, (batch, n), generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------------------------------
# which dtype runs where


def test_dtype_names():
    assert loading.resolve_dtype("bfloat16") is torch.bfloat16
    assert loading.resolve_dtype(" Float16 ") is torch.float16
    assert loading.resolve_dtype(torch.float32) is torch.float32
    for bad in ("float8", "int8", torch.float64, None):
        with pytest.raises(ValueError, match="is not one of float32, bfloat16, float16"):
            loading.resolve_dtype(bad)


def test_cpu_probe_runs_half_precisions_and_reports_what_fails():
    # torch 2.13's CPU kernels have matmul, softmax, layer norm and sdpa in both 16-bit formats.
    assert loading._probe(torch.bfloat16, "cpu") is None
    assert loading._probe(torch.float16, "cpu") is None
    assert loading.check_device("cpu", "float16") == torch.device("cpu")
    # A dtype attention cannot run in (softmax and sdpa need floats): the error comes back as a string.
    error = loading._probe(torch.int8, "cpu")
    assert isinstance(error, str) and error


def test_a_dtype_the_cpu_cannot_run_is_refused_with_the_ones_it_can(monkeypatch):
    monkeypatch.setattr(loading, "_probe", lambda dtype, device: "no kernel" if dtype == torch.float16 else None)
    with pytest.raises(ValueError, match=r"cpu cannot run float16 \(.*no kernel\); use --dtype bfloat16 or float32"):
        loading.check_device("cpu", "float16")
    assert loading.check_device("cpu", "bfloat16") == torch.device("cpu")


def _fake_gpu(monkeypatch, capability):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: capability)
    monkeypatch.setattr(torch.version, "hip", None)


def test_cuda_bfloat16_needs_compute_capability_8(monkeypatch):
    _fake_gpu(monkeypatch, (7, 5))  # a T4
    with pytest.raises(ValueError, match=r"cuda cannot run bfloat16 \(compute capability 7.5; bfloat16 needs "
                                         r">= 8.0 \(Ampere\)\); use --dtype float16 or float32"):
        loading.check_device("cuda", "bfloat16")
    assert loading.check_device("cuda:0", "float16") == torch.device("cuda:0")
    with pytest.raises(ValueError, match="torch sees 1 GPU"):
        loading.check_device("cuda:3", "float32")
    _fake_gpu(monkeypatch, (8, 0))  # an A100
    assert loading.check_device("cuda", "bfloat16") == torch.device("cuda")


def test_cuda_without_a_gpu_says_so(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="sees none; use --device cpu"):
        loading.check_device("cuda", "float32")
    with pytest.raises(ValueError, match="sees none"):
        loading.load_model(None, device="cuda")
    with pytest.raises(ValueError, match="cannot read device"):
        loading.check_device("gpu0")


# --------------------------------------------------------------------------------------------------
# what a reduced-precision forward does to the logits


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_captured_logits_agree_with_float32_to_the_dtype_precision(tiny_llama, dtype):
    model, _ = tiny_llama
    ids = _ids()
    ref = capture_logits(_in(torch.float32, model), ids, None)
    low_model = _in(dtype, model)
    assert low_model.dtype == dtype
    low = capture_logits(low_model, ids, None)
    u = UNIT_ROUNDOFF[dtype]
    for layer in ref.layers:
        assert low.logits[layer].dtype == torch.float32
        assert torch.equal(low.mask[layer], ref.mask[layer])
        valid = ref.mask[layer].expand_as(ref.logits[layer])
        scale = ref.logits[layer][valid].abs().max().item()
        error = (low.logits[layer] - ref.logits[layer])[valid].abs()
        assert 0 < error.max().item() < 4 * u * scale, (layer, error.max().item(), scale)


def test_logits_are_the_float32_product_of_the_models_own_q_and_k(tiny_llama, monkeypatch):
    # Record what the attention function receives (bfloat16 q and k after rotary embeddings).
    seen = {}
    scores = attention._scores

    def spy(module, query, key, *args, **kwargs):
        seen.setdefault(module.layer_idx, (query, key, kwargs.get("scaling")))
        return scores(module, query, key, *args, **kwargs)

    monkeypatch.setattr(attention, "_scores", spy)
    model, _ = tiny_llama
    loaded = _in(torch.bfloat16, model)
    ids = _ids()
    captured = capture_logits(loaded, ids, None, layers=0)
    query, key, scaling = seen[0]
    assert query.dtype == key.dtype == torch.bfloat16
    key = key.repeat_interleave(loaded.n_heads // loaded.n_kv_heads, dim=1)
    exact = (query.double() * scaling) @ key.double().transpose(-1, -2)
    rounded = ((query * scaling) @ key.transpose(-1, -2)).double()  # the same product taken in bfloat16
    valid = captured.mask[0].expand_as(exact)
    scale = exact[valid].abs().max().item()
    ours = (captured.logits[0].double() - exact)[valid].abs().max().item()
    theirs = (rounded - exact)[valid].abs().max().item()
    assert ours < 1e-6 * scale  # float32 rounding of the product only
    assert theirs > 100 * ours  # a bfloat16 product would be visibly worse


def test_heating_a_bfloat16_model_matches_float32(tiny_llama, padded_batch):
    model, _ = tiny_llama
    ids, mask = padded_batch(vocab_size=30522)
    fp32, bf16 = _in(torch.float32, model), _in(torch.bfloat16, model)
    table = torch.tensor([[0.5, 1.0, 2.0, 4.0], [3.0, 0.7, 1.0, 1.5]], dtype=torch.float64)

    def hidden(loaded):
        with torch.no_grad(), temperature(loaded, table):
            return loaded.base_model(input_ids=ids, attention_mask=mask).last_hidden_state.float()

    hot32, hot16 = hidden(fp32), hidden(bf16)
    with torch.no_grad():
        cold = fp32.base_model(input_ids=ids, attention_mask=mask).last_hidden_state
    # Hidden states of unit RMS (|h| <= 3.4, where a bfloat16 step is 2^-6): 0.1 allows ~6 steps
    # (measured 0.02), while heating moves them by 0.57.
    real = mask.bool()
    assert (hot16 - hot32)[real].abs().max().item() < 0.1
    assert (cold - hot32)[real].abs().max().item() > 0.2  # the temperatures did change the output


def test_scan_critical_temperatures_in_bfloat16_match_float32(tiny_llama):
    from thermolens.experiments.scan.heads import ScanConfig, scan

    model, tokenizer = tiny_llama
    config = ScanConfig(seq_len=64, max_tokens=1024, batch_size=8, n_boot=50)
    ref = scan(_in(torch.float32, model, tokenizer), None, config=config).heads
    low = scan(_in(torch.bfloat16, model, tokenizer), None, config=config).heads
    assert not ref["at_edge"].any()
    relative = np.abs(low["T_star"].to_numpy() / ref["T_star"].to_numpy() - 1)
    # T* is a scale of the logits, which bfloat16 moves by a few u = 0.4% at most (measured: < 0.1%).
    assert relative.max() < 0.01
    assert ((low["T_star"] >= ref["T_star_lo"]) & (low["T_star"] <= ref["T_star_hi"])).all()
    assert relative.max() > 0  # the forward passes really differed
