"""Tiny random-weight models of every supported Hugging Face architecture, built offline from configs."""

from __future__ import annotations

import pytest
import torch

from thermolens.models import bundled_model_dir, from_pretrained_model, load_model


def _tiny(family: str):
    import transformers as tf

    torch.manual_seed(0)
    common = dict(vocab_size=101, hidden_size=32, num_hidden_layers=3, num_attention_heads=4)
    if family == "bert":
        # The bundled MiniLM's WordPiece tokenizer supplies [MASK] for the masked-LM loss.
        common["vocab_size"] = 30522
        config = tf.BertConfig(intermediate_size=37, max_position_embeddings=64, **common)
        model = tf.BertForMaskedLM(config)
        tokenizer = tf.AutoTokenizer.from_pretrained(bundled_model_dir(), local_files_only=True)
        return from_pretrained_model(model, tokenizer, name="tiny-bert")
    elif family == "bert-bare":
        config = tf.BertConfig(intermediate_size=37, max_position_embeddings=64, **common)
        model = tf.BertModel(config)
    elif family == "gpt2":
        config = tf.GPT2Config(
            vocab_size=101, n_embd=32, n_layer=3, n_head=4, n_positions=64, bos_token_id=1, eos_token_id=2
        )
        model = tf.GPT2LMHeadModel(config)
    elif family == "llama":
        # Grouped-query attention (4 query heads share 2 key/value heads) and rotary embeddings.
        config = tf.LlamaConfig(
            intermediate_size=48, num_key_value_heads=2, max_position_embeddings=64, **common
        )
        model = tf.LlamaForCausalLM(config)
    elif family == "gemma2":
        # Soft-capped logits (c tanh(l / c), c = 5) and sliding-window layers (window 4), GQA.
        config = tf.Gemma2Config(
            intermediate_size=48, num_key_value_heads=2, head_dim=8, max_position_embeddings=64,
            attn_logit_softcapping=5.0, sliding_window=4, query_pre_attn_scalar=8, **common
        )
        model = tf.Gemma2ForCausalLM(config)
        with torch.no_grad():  # large queries, so that the soft cap is actually reached
            for layer in model.model.layers:
                layer.self_attn.q_proj.weight *= 300.0
    elif family == "mistral":
        # Sliding-window attention on every layer (window 4, shorter than the tests' 12 tokens), GQA.
        config = tf.MistralConfig(
            intermediate_size=48, num_key_value_heads=2, max_position_embeddings=64, sliding_window=4, **common
        )
        model = tf.MistralForCausalLM(config)
    elif family == "qwen2":
        # GQA, biased q/k/v projections, and sliding windows (4) on layers >= max_window_layers = 1 only:
        # layer 0 attends to everything before it, layers 1 and 2 to the last 4 tokens.
        config = tf.Qwen2Config(
            intermediate_size=48, num_key_value_heads=2, max_position_embeddings=64, use_sliding_window=True,
            sliding_window=4, max_window_layers=1, **common
        )
        model = tf.Qwen2ForCausalLM(config)
    else:  # pragma: no cover
        raise KeyError(family)
    return from_pretrained_model(model, name=f"tiny-{family}")


@pytest.fixture(scope="session")
def tiny_models():
    return {family: _tiny(family) for family in ("bert", "bert-bare", "gpt2", "llama", "gemma2", "mistral", "qwen2")}


@pytest.fixture(scope="session")
def minilm():
    return load_model()


def _padded_batch(vocab_size: int = 101, batch: int = 3, seq_len: int = 12, seed: int = 0):
    """Random token ids with right padding of different lengths in the batch (row 0 unpadded)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab_size, (batch, seq_len), generator=g)
    mask = torch.ones(batch, seq_len, dtype=torch.long)
    for row in range(1, batch):
        mask[row, seq_len - 2 * row - 1 :] = 0
    ids = ids.masked_fill(mask == 0, 0)
    return ids, mask


@pytest.fixture()
def padded_batch():
    return _padded_batch
