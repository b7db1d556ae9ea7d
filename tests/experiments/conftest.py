"""A tiny random-weight BERT with an MLM head, shared by the job tests (``TINY_LAYERS`` in a test
module sets its depth, default 2)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def tiny(request):
    import transformers as tf

    from thermolens.models import bundled_model_dir, from_pretrained_model

    torch.manual_seed(0)
    config = tf.BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=getattr(request.module, "TINY_LAYERS", 2),
                           num_attention_heads=4, intermediate_size=37, max_position_embeddings=64)
    model = tf.BertForMaskedLM(config)
    tokenizer = tf.AutoTokenizer.from_pretrained(bundled_model_dir(), local_files_only=True)
    return model, tokenizer, from_pretrained_model(model, tokenizer, name="tiny-bert")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, tiny):
    """The tiny model saved as a local model directory (safetensors + tokenizer)."""
    model, tokenizer, _ = tiny
    path = tmp_path_factory.mktemp("tiny-bert")
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path
