"""Corpus input (issue 2, part 9): built-in text, user files, packing into model-sized sequences."""

from __future__ import annotations

import pytest
import torch

from thermolens.data.corpus import TokenBatches, builtin_text, read_texts, tokenize_corpus


@pytest.fixture(scope="module")
def bert_tokenizer():
    from transformers import AutoTokenizer

    from thermolens.models import bundled_model_dir

    return AutoTokenizer.from_pretrained(bundled_model_dir(), local_files_only=True)


def _word_tokenizer(template: str | None):
    """A whitespace word-level tokenizer; ``template`` like "<s> $A" adds special tokens (Llama-style)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = builtin_text().split()[:5000]
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for w in words:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if template:
        specials = [("<s>", 1), ("</s>", 2)]
        tok.post_processor = processors.TemplateProcessing(single=template, special_tokens=specials)
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")


def test_builtin_text_is_pydoc_topics_deterministically():
    from pydoc_data.topics import topics

    text = builtin_text()
    assert text == builtin_text()
    # DESIGN.md §4: "about 465k characters"; the exact count depends on the CPython version.
    assert 400_000 < len(text) < 600_000
    assert text.startswith(topics[sorted(topics)[0]].strip()[:200])
    assert "\x00" not in text


def test_bert_packing_wraps_every_sequence_in_cls_sep(bert_tokenizer):
    batches = tokenize_corpus(bert_tokenizer, builtin_text(), seq_len=32, max_tokens=1000)
    cls, sep = bert_tokenizer.cls_token_id, bert_tokenizer.sep_token_id
    # 1000 = 31 * 32 + 8: 31 full sequences and one of 8 real tokens (6 content + [CLS] + [SEP]).
    assert batches.input_ids.shape == (32, 32) and batches.n_tokens == 1000
    assert (batches.input_ids[:, 0] == cls).all()
    assert (batches.input_ids[:31, -1] == sep).all()
    assert batches.attention_mask[31].tolist() == [1] * 8 + [0] * 24
    assert batches.input_ids[31, 7] == sep
    assert (batches.input_ids[31, 8:] == bert_tokenizer.pad_token_id).all()
    # The content is the token stream of the text, in order, without gaps or repeats.
    content = batches.input_ids[:, 1:-1][batches.attention_mask[:, 1:-1].bool()]
    content = content[content != sep]
    stream = bert_tokenizer(builtin_text()[:20_000], add_special_tokens=False)["input_ids"]
    assert content.tolist() == stream[: len(content)]


def test_causal_tokenizers_without_and_with_bos():
    plain = tokenize_corpus(_word_tokenizer(None), builtin_text(), seq_len=16, max_tokens=64)
    assert plain.input_ids.shape == (4, 16) and plain.n_tokens == 64
    assert plain.attention_mask.all()
    bos = tokenize_corpus(_word_tokenizer("<s> $A"), builtin_text(), seq_len=16, max_tokens=70)
    # 70 = 4 * 16 + 6: the fifth sequence holds <s> and 5 words.
    assert bos.input_ids.shape == (5, 16) and bos.n_tokens == 70
    assert (bos.input_ids[:, 0] == 1).all()
    assert torch.equal(bos.input_ids[0, 1:], plain.input_ids[0, :15])


def test_short_corpus_gives_what_it_has(bert_tokenizer):
    batches = tokenize_corpus(bert_tokenizer, ["one two three", "four"], seq_len=8, max_tokens=10_000)
    assert batches.n_tokens == 6 and batches.input_ids.shape == (1, 8)
    words = bert_tokenizer.convert_ids_to_tokens(batches.input_ids[0, :6].tolist())
    assert words == ["[CLS]", "one", "two", "three", "four", "[SEP]"]


def test_batches_iterate_over_all_sequences(bert_tokenizer):
    batches = tokenize_corpus(bert_tokenizer, builtin_text(), seq_len=16, max_tokens=16 * 10)
    chunks = list(batches.batches(4))
    assert [c[0].shape[0] for c in chunks] == [4, 4, 2] and batches.n_batches(4) == 3
    assert torch.equal(torch.cat([c[0] for c in chunks]), batches.input_ids)
    with pytest.raises(ValueError, match="batch_size"):
        next(batches.batches(0))
    assert isinstance(batches, TokenBatches)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(max_tokens=0), "max_tokens must be a positive integer"),
        (dict(max_tokens=-5), "max_tokens must be a positive integer"),
        (dict(seq_len=513), "exceeds the model's maximum of 512"),
        (dict(seq_len=64, model_max_length=32), "maximum of 32"),
        (dict(seq_len=2), "seq_len must be an integer > 2"),
        (dict(max_tokens=2), "leaves no room"),
    ],
)
def test_bad_tokenize_arguments(bert_tokenizer, kwargs, match):
    with pytest.raises(ValueError, match=match):
        tokenize_corpus(bert_tokenizer, "some text here", **kwargs)


def test_empty_corpus_text(bert_tokenizer):
    with pytest.raises(ValueError, match="empty"):
        tokenize_corpus(bert_tokenizer, ["  ", ""])


def test_read_texts_files_and_directories(tmp_path):
    (tmp_path / "b.txt").write_text("second file")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "a.txt").write_text("nested ü")
    (tmp_path / ".hidden").write_text("not read")
    (tmp_path / "a.md").write_text("first file")
    assert read_texts(tmp_path) == ["first file", "second file", "nested ü"]
    assert read_texts([tmp_path / "b.txt", str(sub / "a.txt")]) == ["second file", "nested ü"]


def test_read_texts_errors_name_the_path(tmp_path):
    missing = tmp_path / "nope.txt"
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_texts(missing)
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    with pytest.raises(ValueError, match="empty.txt is empty"):
        read_texts(empty)
    binary = tmp_path / "model.bin"
    binary.write_bytes(b"abc\x00def")
    with pytest.raises(ValueError, match="model.bin looks binary"):
        read_texts(binary)
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(ValueError, match="latin1.txt is not UTF-8"):
        read_texts(latin)
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(ValueError, match="emptydir has no text files"):
        read_texts(tmp_path / "emptydir")
    with pytest.raises(ValueError, match="no text files given"):
        read_texts([])
