"""Text corpora for attention scans: the built-in default, user files, and packing into sequences.

* :func:`builtin_text` — the English documentation that ships with every CPython
  (``pydoc_data.topics``: 79 topics, about 465k characters), joined in sorted topic order, so the
  default corpus is the same on every machine with the same Python.
* :func:`read_texts` — UTF-8 text files, or directories of them (all regular, non-hidden files
  below, in sorted path order). Missing paths raise ``FileNotFoundError``; empty, binary (NUL
  bytes) or undecodable files raise ``ValueError``; both name the path.
* :func:`tokenize_corpus` — the model's tokenizer turns the texts into one token stream
  (texts concatenated in order), which is cut into sequences of ``seq_len`` tokens *including* the
  model's special tokens: each sequence is ``prefix + chunk + suffix`` where prefix/suffix are
  what the tokenizer adds around a single text ([CLS] ... [SEP] for BERT, <s> ... for Llama,
  nothing for GPT-2). ``max_tokens`` bounds the number of real (non-padding) tokens, special
  tokens included. The last sequence may be shorter; it is kept and right-padded
  (``attention_mask`` 0), so no text within the budget is dropped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = ["TokenBatches", "builtin_text", "read_texts", "tokenize_corpus"]

# Texts are tokenized in pieces of about this many characters, cut at line ends, so that a
# large corpus is never tokenized beyond what max_tokens needs.
_PIECE_CHARS = 20_000


def builtin_text() -> str:
    """The English text of ``pydoc_data.topics``, topics joined in sorted order by blank lines."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[name].strip() for name in sorted(topics))


# --------------------------------------------------------------------------------------------------
# user files


def _read_one(path: Path) -> str:
    data = path.read_bytes()
    if not data.strip():
        raise ValueError(f"text file {path} is empty; pass a file with text in it")
    if b"\x00" in data:
        raise ValueError(f"{path} looks binary (it contains NUL bytes); pass UTF-8 text files")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 text (undecodable byte at offset {exc.start})") from None


def _files_below(directory: Path) -> list[Path]:
    files = [
        p
        for p in sorted(directory.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(directory).parts)
    ]
    if not files:
        raise ValueError(f"directory {directory} has no text files; pass files or a directory with some")
    return files


def read_texts(paths: str | Path | Iterable[str | Path]) -> list[str]:
    """One string per file, in the order given (directories expand to their files, sorted)."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    texts: list[str] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"text file {path} does not exist")
        if path.is_dir():
            texts.extend(_read_one(p) for p in _files_below(path))
        else:
            texts.append(_read_one(path))
    if not texts:
        raise ValueError("no text files given; pass at least one file or directory")
    return texts


# --------------------------------------------------------------------------------------------------
# tokenization and packing


@dataclass(frozen=True)
class TokenBatches:
    """Packed sequences: ``input_ids`` and ``attention_mask`` are ``(n_seq, seq_len)`` long tensors.

    ``n_tokens`` is the number of real tokens (``attention_mask.sum()``, special tokens included).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    n_tokens: int

    @property
    def n_seq(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def seq_len(self) -> int:
        return int(self.input_ids.shape[1])

    def batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(input_ids, attention_mask)`` slices of ``batch_size`` sequences (the last may be smaller)."""
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        for start in range(0, self.n_seq, batch_size):
            yield self.input_ids[start : start + batch_size], self.attention_mask[start : start + batch_size]

    def n_batches(self, batch_size: int) -> int:
        return math.ceil(self.n_seq / batch_size)


def _special_frame(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The token ids the tokenizer puts before and after a single text."""
    probe = "thermolens"
    bare = tokenizer(probe, add_special_tokens=False)["input_ids"]
    full = tokenizer(probe, add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(bare) + 1):
        if full[start : start + len(bare)] == bare:
            return list(full[:start]), list(full[start + len(bare) :])
    raise ValueError(f"cannot locate the text inside {type(tokenizer).__name__}'s special tokens")


def _pieces(text: str) -> Iterator[str]:
    """Consecutive pieces of ``text`` of about ``_PIECE_CHARS`` characters, cut after a newline."""
    start = 0
    while start < len(text):
        end = min(len(text), start + _PIECE_CHARS)
        if end < len(text):
            cut = text.rfind("\n", start, end)
            end = cut + 1 if cut > start else end
        yield text[start:end]
        start = end


def _pad_id(tokenizer: Any) -> int:
    for name in ("pad_token_id", "eos_token_id", "unk_token_id"):
        value = getattr(tokenizer, name, None)
        if value is not None:
            return int(value)
    return 0


def tokenize_corpus(
    tokenizer: Any,
    texts: str | Iterable[str],
    *,
    seq_len: int = 128,
    max_tokens: int = 16384,
    model_max_length: int | None = None,
) -> TokenBatches:
    """Tokenize ``texts`` and pack them into sequences of ``seq_len`` tokens (see module doc).

    ``model_max_length`` (e.g. ``LoadedModel.max_positions``) caps ``seq_len`` together with the
    tokenizer's own ``model_max_length``.
    """
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if not isinstance(max_tokens, int) or max_tokens <= 0:
        raise ValueError(f"max_tokens must be a positive integer, got {max_tokens!r}")
    limits = [v for v in (model_max_length, getattr(tokenizer, "model_max_length", None)) if v and v < 1e9]
    prefix, suffix = _special_frame(tokenizer)
    n_frame = len(prefix) + len(suffix)
    if not isinstance(seq_len, int) or seq_len <= n_frame:
        raise ValueError(
            f"seq_len must be an integer > {n_frame} (the model's special tokens), got {seq_len!r}"
        )
    if limits and seq_len > min(limits):
        raise ValueError(
            f"seq_len={seq_len} exceeds the model's maximum of {int(min(limits))} tokens; lower it"
        )
    if not any(t.strip() for t in texts):
        raise ValueError("the corpus is empty; pass some text")

    content = seq_len - n_frame
    # Content tokens needed: each sequence of seq_len real tokens carries `content` of them.
    n_full, rest = divmod(max_tokens, seq_len)
    need = n_full * content + max(0, rest - n_frame)
    stream: list[int] = []
    for text in texts:
        for piece in _pieces(text):
            if len(stream) >= need:
                break
            stream.extend(tokenizer(piece, add_special_tokens=False, verbose=False)["input_ids"])
    stream = stream[:need]
    if not stream:
        raise ValueError(
            f"max_tokens={max_tokens} leaves no room for text after the {n_frame} special tokens; raise it"
        )

    pad = _pad_id(tokenizer)
    n_seq = math.ceil(len(stream) / content)
    input_ids = torch.full((n_seq, seq_len), pad, dtype=torch.long)
    attention_mask = torch.zeros((n_seq, seq_len), dtype=torch.long)
    for i in range(n_seq):
        row = prefix + stream[i * content : (i + 1) * content] + suffix
        input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        attention_mask[i, : len(row)] = 1
    n_tokens = int(attention_mask.sum())
    return TokenBatches(input_ids=input_ids, attention_mask=attention_mask, n_tokens=n_tokens)
