"""Hook names come from functions and are stable strings (STYLE.md item 4)."""

from __future__ import annotations

import numpy as np
import pytest

from thermolens.models import names


def test_names_are_stable_and_invert():
    sites = (names.attn_logits, names.attn_pattern, names.attn_out, names.mlp_post, names.resid_post)
    built = [site(3) for site in sites]
    assert built == [
        "blocks.3.attn.logits",
        "blocks.3.attn.pattern",
        "blocks.3.attn.out",
        "blocks.3.mlp.post",
        "blocks.3.resid.post",
    ]
    assert all(names.layer_of(n) == 3 for n in built)
    assert names.attn_logits(np.int64(2)) == "blocks.2.attn.logits"


@pytest.mark.parametrize("bad", [-1, 1.5, "2"])
def test_bad_layers(bad):
    with pytest.raises(ValueError, match="layer"):
        names.attn_logits(bad)


def test_layer_of_rejects_foreign_names():
    with pytest.raises(ValueError, match="not a thermolens hook name"):
        names.layer_of("encoder.layer.3.attention")
