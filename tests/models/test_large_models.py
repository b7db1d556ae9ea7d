"""Models too large for one device (issue 18): the memory check before loading, sharded loading with a
``device_map`` (accelerate), and the ``--dtype`` / ``--device-map`` options of the commands.

References: the bytes a loaded model really holds (its own parameters and buffers), and the logits of
the same checkpoint loaded whole, without a device map.
"""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from typer.testing import CliRunner

from thermolens.cli import app
from thermolens.models import capture_logits, loading, temperature

needs_accelerate = pytest.mark.skipif(importlib.util.find_spec("accelerate") is None,
                                      reason="device_map needs accelerate (pip install 'thermolens[accelerate]')")


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    """A tiny random Llama (3 layers, GQA) saved as a local model directory with the bundled tokenizer."""
    import transformers as tf

    torch.manual_seed(0)
    config = tf.LlamaConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=48, max_position_embeddings=128,
    )
    model = tf.LlamaForCausalLM(config)
    with torch.no_grad():  # logits of order 1, so that heating visibly changes the downstream layers
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight *= 10.0
            layer.self_attn.k_proj.weight *= 10.0
    path = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(path)
    tf.AutoTokenizer.from_pretrained(loading.bundled_model_dir(), local_files_only=True).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def plain(llama_dir):
    return loading.load_model(str(llama_dir))


def _batch():
    ids = torch.randint(1000, 30000, (3, 12), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    return ids, mask


def _assert_same_logits(a, b):
    assert a.layers == b.layers
    for layer in a.layers:
        assert torch.equal(a.mask[layer], b.mask[layer])
        valid = a.mask[layer].expand_as(a.logits[layer])
        torch.testing.assert_close(a.logits[layer][valid], b.logits[layer][valid], rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------------------------------
# how much the weights need


@pytest.mark.parametrize("family", ["gpt2", "llama", "qwen2"])
def test_weight_bytes_from_headers_and_from_the_config_equal_the_loaded_model(tiny_models, tmp_path, family):
    import transformers as tf

    tiny_models[family].model.save_pretrained(tmp_path)
    config = tf.AutoConfig.from_pretrained(tmp_path)
    for dtype in (torch.float32, torch.bfloat16):
        loaded = loading.load_model(str(tmp_path), dtype=dtype)
        params = sum(p.numel() * p.element_size() for p in loaded.model.parameters())  # tied weights once (GPT-2)
        assert loading.weight_bytes(str(tmp_path), dtype=dtype) == params
        # Built on the meta device from the config alone: parameters and buffers (rotary inv_freq).
        meta = loading._meta_bytes(config, loading._auto_class(config), dtype, False)
        assert meta == loading._tensor_bytes(loaded.model, dtype)
    assert 2 * loading.weight_bytes(str(tmp_path), dtype="bfloat16") == loading.weight_bytes(str(tmp_path))


def test_weight_bytes_of_a_sharded_checkpoint_and_of_the_bundled_model(plain, tmp_path):
    plain.model.save_pretrained(tmp_path, max_shard_size="500KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    assert len(list(tmp_path.glob("model-*.safetensors"))) > 1
    params = sum(p.numel() for p in plain.model.parameters())
    assert loading.weight_bytes(str(tmp_path)) == 4 * params
    # all-MiniLM-L6-v2: 22,713,216 float parameters (the loaded BertModel's count) and the int64
    # position_ids buffer (512 entries) that its checkpoint stores.
    assert loading.weight_bytes() == 4 * 22_713_216 + 8 * 512
    assert loading.weight_bytes(dtype="float16") == 2 * 22_713_216 + 8 * 512


def test_free_memory():
    total = next(int(line.split()[1]) * 1024 for line in open("/proc/meminfo") if line.startswith("MemTotal:"))
    assert 0 < loading.free_memory("cpu") <= total
    assert loading.free_memory("meta") is None


# --------------------------------------------------------------------------------------------------
# a model that does not fit is refused before loading


@pytest.fixture()
def no_loading(monkeypatch):
    """Fail the test if weights are loaded (the memory check must come first)."""
    import transformers as tf

    def forbidden(*args, **kwargs):
        raise AssertionError("weights were loaded before the memory check")

    monkeypatch.setattr(tf.AutoModelForCausalLM, "from_pretrained", forbidden)


def test_a_model_that_does_not_fit_is_refused_before_loading(llama_dir, monkeypatch, no_loading):
    need = loading.weight_bytes(str(llama_dir))
    monkeypatch.setattr(loading, "free_memory", lambda device: int(need * 1.05))  # weights fit, headroom does not
    message = (r"model .*tiny-llama.* needs ~\d+\.\d MiB in float32 \(\d+\.\d MiB of weights \+ 10% for "
               r"activations\) but the device \(cpu\) has \d+\.\d MiB free; use --dtype bfloat16, or a smaller model")
    with pytest.raises(ValueError, match=message):
        loading.load_model(str(llama_dir))
    # Already in bfloat16 and still too large: only a smaller model helps.
    monkeypatch.setattr(loading, "free_memory", lambda device: int(need / 2))
    with pytest.raises(ValueError, match=r"in bfloat16 .* has \d+\.\d MiB free; use a smaller model$"):
        loading.load_model(str(llama_dir), dtype="bfloat16")


def test_enough_memory_loads_and_the_check_can_be_skipped(llama_dir, monkeypatch):
    need = loading.weight_bytes(str(llama_dir))
    monkeypatch.setattr(loading, "free_memory", lambda device: int(need * 1.2))
    assert loading.load_model(str(llama_dir)).n_layers == 3
    monkeypatch.setattr(loading, "free_memory", lambda device: 0)
    assert loading.load_model(str(llama_dir), check_memory=False).n_layers == 3
    monkeypatch.setattr(loading, "free_memory", lambda device: None)  # unknown: no check
    assert loading.load_model(str(llama_dir)).n_layers == 3


def test_a_gpu_too_small_is_refused_with_cuda_s_free_memory(llama_dir, monkeypatch, no_loading):
    # No GPU here: a fake A100 whose torch.cuda.mem_get_info reports 10 KiB free of 80 GiB.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: (8, 0))
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (10 * 1024, 80 * 2**30))
    with pytest.raises(ValueError, match=r"the device \(cuda:0\) has 0.0 MiB free; use --device-map auto, or a "
                                         r"smaller model"):
        loading.load_model(str(llama_dir), device="cuda:0", dtype="bfloat16")


# --------------------------------------------------------------------------------------------------
# sharded loading (device_map)


@needs_accelerate
def test_device_map_auto_on_a_cpu_machine_captures_the_same_logits(llama_dir, plain):
    sharded = loading.load_model(str(llama_dir), device_map="auto")
    assert {p.device.type for p in sharded.model.parameters()} == {"cpu"}  # accelerate's plan: one device
    assert sharded.device == torch.device("cpu")
    ids, mask = _batch()
    _assert_same_logits(capture_logits(sharded, ids, mask), capture_logits(plain, ids, mask))


def _offload_map(embeddings="cpu"):
    return {
        "model.embed_tokens": embeddings, "model.layers.0": "cpu", "model.layers.1": "disk",
        "model.layers.2": "disk", "model.norm": "cpu", "model.rotary_emb": "cpu", "lm_head": "cpu",
    }


@needs_accelerate
def test_layers_offloaded_to_disk_capture_the_same_logits(llama_dir, plain, tmp_path):
    sharded = loading.load_model(str(llama_dir), device_map=_offload_map(), offload_folder=tmp_path)
    q_proj = sharded.model.model.layers[1].self_attn.q_proj
    assert q_proj.weight.device.type == "meta"  # really offloaded: read from disk in each forward pass
    ids, mask = _batch()
    reference = capture_logits(plain, ids, mask)
    _assert_same_logits(capture_logits(sharded, ids, mask), reference)
    # A capture that stops inside an offloaded layer leaves its weights offloaded.
    capture_logits(sharded, ids, mask, layers=[1])
    assert q_proj.weight.device.type == "meta"
    # Temperature inside the forward pass acts on offloaded layers as on loaded ones.
    with temperature(sharded, 2.0, layers=[1]):
        hot = capture_logits(sharded, ids, mask)
    with temperature(plain, 2.0, layers=[1]):
        _assert_same_logits(hot, capture_logits(plain, ids, mask))
    assert not torch.allclose(hot.logits[2][0, :, :8, :8], reference.logits[2][0, :, :8, :8], atol=1e-3)


@needs_accelerate
def test_offloaded_input_embeddings_still_give_the_input_device(llama_dir, plain, tmp_path):
    sharded = loading.load_model(str(llama_dir), device_map=_offload_map(embeddings="disk"), offload_folder=tmp_path)
    assert sharded.model.get_input_embeddings().weight.device.type == "meta"
    assert sharded.device == torch.device("cpu")  # the execution device of accelerate's hook
    ids, mask = _batch()
    _assert_same_logits(capture_logits(sharded, ids, mask), capture_logits(plain, ids, mask))
    table = torch.tensor([[0.5, 1.0, 2.0, 4.0]] * 3, dtype=torch.float64)  # per-head T: a tensor of 1/T
    with temperature(sharded, table):
        hot = capture_logits(sharded, ids, mask)
    with temperature(plain, table):
        _assert_same_logits(hot, capture_logits(plain, ids, mask))


def test_unreadable_safetensors_headers_fall_back_to_the_config(llama_dir, plain, tmp_path):
    import shutil

    import transformers as tf

    broken = tmp_path / "broken"
    shutil.copytree(llama_dir, broken)
    (broken / "model.safetensors").write_bytes(b"\xff" * 64)  # a header length of 2^64 - 1 bytes
    config = tf.AutoConfig.from_pretrained(broken)
    assert loading.weight_bytes(str(broken)) == loading._meta_bytes(config, tf.AutoModelForCausalLM, torch.float32,
                                                                    False)
    with pytest.raises(ValueError, match="cannot load the model in"):
        loading.load_model(str(broken))


@pytest.mark.parametrize(
    "device_map, match",
    [
        ("everywhere", "is not one of auto, balanced, balanced_low_0, sequential"),
        ({}, "non-empty"),
        ({"": "gpu"}, "device_map values must be devices"),
        (_offload_map(), "pass offload_folder=DIR"),
    ],
)
def test_bad_device_maps(llama_dir, device_map, match):
    with pytest.raises(ValueError, match=match):
        loading.load_model(str(llama_dir), device_map=device_map)


def test_device_map_without_accelerate_says_what_to_install(llama_dir, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "accelerate" else find_spec(name, *a))
    with pytest.raises(ValueError, match=r"pip install 'thermolens\[accelerate\]'"):
        loading.load_model(str(llama_dir), device_map="auto")


# --------------------------------------------------------------------------------------------------
# the command line


def _scan(llama_dir, out, *extra):
    return CliRunner().invoke(app, [
        "scan", "--model", str(llama_dir), "--max-tokens", "200", "--seq-len", "32", "--temperatures", "0.1:5:8",
        "--bootstrap", "0", "--device", "cpu", "--out", str(out), "--quiet", "--no-report", "--json", *extra,
    ])


@pytest.mark.parametrize("extra, dtype, device_map", [
    (["--dtype", "bfloat16"], "bfloat16", None),
    pytest.param(["--device-map", "auto"], "float32", "auto", marks=needs_accelerate),
])
def test_cli_scan_with_dtype_and_device_map(llama_dir, tmp_path, extra, dtype, device_map):
    res = _scan(llama_dir, tmp_path / "run", *extra)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.strip().splitlines()[-1])["n_heads"] == 12
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert (manifest["config"]["dtype"], manifest["config"]["device_map"]) == (dtype, device_map)


@needs_accelerate
def test_cli_avalanches_in_bfloat16_on_a_device_map(llama_dir, tmp_path):
    out = tmp_path / "run"
    res = CliRunner().invoke(app, [
        "avalanches", "--model", str(llama_dir), "--max-tokens", "3000", "--seq-len", "64", "--bootstrap", "0",
        "--dtype", "bfloat16", "--device-map", "auto", "--out", str(out), "--quiet", "--no-report", "--json",
    ])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.strip().splitlines()[-1])["n_avalanches"] > 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["config"]["dtype"], manifest["config"]["device_map"]) == ("bfloat16", "auto")


@pytest.mark.parametrize("command", ["scan", "avalanches"])
@pytest.mark.parametrize("extra, message", [
    (["--dtype", "float8"], "dtype 'float8' is not one of float32, bfloat16, float16"),
    (["--device-map", "everywhere"], "is not one of auto, balanced"),
    (["--device", "cuda"], "use --device cpu"),
])
def test_cli_bad_precision_options(llama_dir, tmp_path, monkeypatch, command, extra, message):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    res = CliRunner().invoke(app, [command, "--model", str(llama_dir), "--out", str(tmp_path / "run"), "--quiet",
                                   *extra])
    assert res.exit_code == 2, res.output
    assert message in " ".join(res.output.split())
    assert "Traceback" not in res.output
    assert not (tmp_path / "run").exists()


def test_cli_refuses_a_model_too_large_before_creating_the_run(llama_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(loading, "free_memory", lambda device: 1024)
    res = _scan(llama_dir, tmp_path / "run", "--dtype", "bfloat16")
    assert res.exit_code == 2, res.output
    assert "needs ~" in res.output and "in bfloat16" in res.output and "use a smaller model" in res.output
    assert not (tmp_path / "run").exists()
