"""Activation capture at the three sites, for every architecture the scan supports."""

from __future__ import annotations

import pytest
import torch

from thermolens.models import temperature
from thermolens.models.activations import SITES, block_modules, capture_activations, site_hook_name

FAMILIES = ("bert", "bert-bare", "gpt2", "llama", "gemma2")
D_MLP = {"bert": 37, "bert-bare": 37, "gpt2": 4 * 32, "llama": 48, "gemma2": 48}  # configs in conftest.py


def _capture(loaded, ids, mask, site):
    out = {}
    capture_activations(loaded, ids, mask, site, lambda layer, x: out.__setitem__(layer, x.clone()))
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_resid_is_the_blocks_hidden_state(tiny_models, padded_batch, family):
    loaded = tiny_models[family]
    ids, mask = padded_batch()
    resid = _capture(loaded, ids, mask, "resid")
    with torch.no_grad():
        hidden = loaded.base_model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
    # hidden_states[L + 1] is block L's output; GPT-2/Llama apply their final norm to the last entry only
    last = loaded.n_layers if family.startswith("bert") else loaded.n_layers - 1
    for layer in range(last):
        torch.testing.assert_close(resid[layer], hidden[layer + 1])


@pytest.mark.parametrize("family", FAMILIES)
def test_every_site_has_the_right_shape_and_hooks_are_removed(tiny_models, padded_batch, family):
    loaded = tiny_models[family]
    ids, mask = padded_batch()
    for site in SITES:
        modules = block_modules(loaded, site)
        before = [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in modules]  # transformers' own hooks
        acts = _capture(loaded, ids, mask, site)
        assert sorted(acts) == list(range(loaded.n_layers))
        units = D_MLP[family] if site == "mlp" else 32
        assert acts[0].shape == (*ids.shape, units)
        assert [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in modules] == before


def test_mlp_site_is_the_output_of_the_nonlinearity(tiny_models, padded_batch):
    loaded = tiny_models["bert"]
    ids, mask = padded_batch()
    seen = {}
    block = loaded.base_model.encoder.layer[1]
    handle = block.intermediate.register_forward_hook(lambda _m, _a, out: seen.__setitem__("act", out))
    try:
        mlp = _capture(loaded, ids, mask, "mlp")
    finally:
        handle.remove()
    torch.testing.assert_close(mlp[1], seen["act"])


def test_temperature_changes_downstream_activations_only(tiny_models, padded_batch):
    loaded = tiny_models["gpt2"]
    ids, mask = padded_batch()
    cold = _capture(loaded, ids, mask, "attn")
    with temperature(loaded, 0.1, layers=[1]):
        hot = _capture(loaded, ids, mask, "attn")
    torch.testing.assert_close(hot[0], cold[0])
    assert not torch.allclose(hot[1], cold[1])


def test_bad_site_lists_the_valid_ones(tiny_models, padded_batch):
    ids, mask = padded_batch()
    with pytest.raises(ValueError, match="valid sites: resid, mlp, attn"):
        capture_activations(tiny_models["bert"], ids, mask, "heads", lambda layer, x: None)
    assert site_hook_name("mlp", 2) == "blocks.2.mlp.post"
