"""Causal next-token language modelling on a source of known entropy: the training loop of the model family.

One run (``train_lm``):

* data: a source spec (``thermolens.data.sources.parse_source``: Markov chains of known entropy rate,
  a probabilistic grammar, text); every step draws ``batch_size`` fresh windows of ``seq_len + 1``
  tokens from the training stream (seeded by ``seed`` and the step), the validation loss is measured
  on ``eval_batches`` fixed batches of the validation stream (``split="val"``: held-out text, or a
  separate seed stream for synthetic sources) drawn with one fixed seed for every run;
* model: ``thermolens.models.hooked.HookedTransformer`` with LayerNorm, causal attention and
  ``n_ctx = seq_len``; ``config.model`` holds the other ``HookedConfig`` fields (widths, heads,
  layers, MLP width, activation); the vocabulary comes from the source;
* loss: mean cross-entropy of every next token, in nats (``val_bits`` = nats / ln 2 is comparable to
  the source's entropy rate in bits/token, the loss floor);
* budget: ``budget_tokens`` predicted tokens, i.e. ``steps = budget_tokens // (batch_size * seq_len)``
  optimizer steps;
* optimizer: AdamW by default (``optimizer="adam"``/``"sgd"`` and ``optimizer_kwargs`` change it;
  ``make_optimizer(model, config)`` replaces it altogether), the learning rate of every parameter
  group is its initial value times the linear warm-up factor of the grokking loop
  (``experiments.grokking._lr_factor``) times a cosine decay to 10 % at the end of the budget
  (``lr_schedule="cosine"``, Hoffmann et al. 2022, arXiv:2203.15556) or 1 (``"constant"``);
* outputs in ``run_dir``: ``model.safetensors`` (weights), ``history.parquet`` and ``member.json``
  (configs, headline numbers, package version and git commit: what ``experiments.family`` checks for
  members trained by different code), and with ``snapshot_every > 0`` the weights every that many
  steps, at step 0 (the initial weights) and at the last step as ``snapshots/step-<step:07d>.safetensors``
  (the grokking loop's snapshot format, ``experiments.grokking.train.save_snapshot``). A run starts
  from step 0, so snapshots left in ``run_dir`` by an earlier attempt are removed first.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from thermolens import io
from thermolens.experiments.grokking.train import _lr_factor, drop_snapshots_after, save_snapshot
from thermolens.models.hooked import HookedConfig, HookedTransformer

MEMBER_JSON = "member.json"
WEIGHTS = "model.safetensors"
HISTORY = "history.parquet"

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("cosine", "constant")

#: HookedConfig fields that ``train_lm`` sets itself (from the source and ``seq_len``)
_DERIVED_FIELDS = ("n_ctx", "d_vocab", "d_vocab_out", "layernorm", "causal")

#: the cosine schedule decays to this fraction of the peak learning rate
FINAL_LR_FRACTION = 0.1

#: seed of the validation windows: the same for every run, so runs that differ in their training
#: seed (or architecture) are compared on the same held-out tokens
VAL_SEED = 7_919


@dataclass(frozen=True)
class LMConfig:
    """One language-model training run (contract D of issue 8).

    model: ``HookedConfig`` fields except ``n_ctx``, ``d_vocab``, ``d_vocab_out``, ``layernorm``,
        ``causal`` (set from the source and ``seq_len``), e.g. ``{"n_layers": 2, "d_model": 64,
        "n_heads": 4, "d_head": 16, "d_mlp": 256}``.
    source: a source spec (``thermolens.data.sources``), e.g. ``"markov:h=1.5,vocab=16"``.
    seq_len: context length (tokens per training window; the model's ``n_ctx``).
    budget_tokens: predicted tokens over the whole run (``steps = budget_tokens // (batch_size * seq_len)``).
    lr / weight_decay / warmup_steps / lr_schedule: see the module docstring.
    eval_every: validation cadence in steps (the last step is always evaluated).
    eval_batches: validation batches of ``batch_size`` windows each.
    optimizer / optimizer_kwargs: ``"adamw"``, ``"adam"`` or ``"sgd"`` and extra keyword arguments.
    snapshot_every: steps between weight snapshots (plus step 0 and the last step); 0: none.
    """

    model: dict
    source: str
    seq_len: int = 64
    batch_size: int = 32
    budget_tokens: int = 2**20
    lr: float = 3e-3
    weight_decay: float = 0.01
    warmup_steps: int = 20
    seed: int = 0
    eval_every: int = 100
    eval_batches: int = 4
    optimizer: str = "adamw"
    optimizer_kwargs: dict = field(default_factory=dict)
    lr_schedule: str = "cosine"
    snapshot_every: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.model, dict):
            raise ValueError(f"model must be a dict of HookedConfig fields, got {type(self.model).__name__}")
        derived = sorted(set(self.model) & set(_DERIVED_FIELDS))
        if derived:
            raise ValueError(f"model sets {', '.join(derived)}; these come from the source and seq_len — drop them")
        unknown = sorted(set(self.model) - {f.name for f in dataclasses.fields(HookedConfig)})
        if unknown:
            raise ValueError(f"model has unknown HookedConfig fields {', '.join(unknown)}")
        if not isinstance(self.source, str) or not self.source:
            raise ValueError("source must be a source spec string, e.g. 'markov:h=1.5'")
        for name in ("seq_len", "batch_size", "budget_tokens", "eval_every", "eval_batches"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} must be a positive integer")
        if self.seq_len < 2:
            raise ValueError(f"seq_len={self.seq_len} must be at least 2")
        if self.budget_tokens < self.batch_size * self.seq_len:
            raise ValueError(
                f"budget_tokens={self.budget_tokens} is less than one step ({self.batch_size} x {self.seq_len} "
                "tokens); raise the budget or lower batch_size/seq_len"
            )
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr={self.lr} must be positive (e.g. 3e-3)")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay={self.weight_decay} must be >= 0")
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ValueError(f"warmup_steps={self.warmup_steps!r} must be an integer >= 0")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer={self.optimizer!r} is unknown; choose one of {', '.join(OPTIMIZERS)}")
        if not isinstance(self.optimizer_kwargs, dict):
            raise ValueError("optimizer_kwargs must be a dict of keyword arguments for the optimizer")
        if self.lr_schedule not in SCHEDULES:
            raise ValueError(f"lr_schedule={self.lr_schedule!r} is unknown; choose one of {', '.join(SCHEDULES)}")
        if not isinstance(self.snapshot_every, int) or self.snapshot_every < 0:
            raise ValueError(f"snapshot_every={self.snapshot_every!r} must be an integer >= 0 (0: no snapshots)")

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.seq_len

    @property
    def steps(self) -> int:
        return self.budget_tokens // self.tokens_per_step

    def hooked_config(self, vocab_size: int) -> HookedConfig:
        """The model's ``HookedConfig`` for a source of ``vocab_size`` symbols."""
        return HookedConfig(
            **self.model, n_ctx=self.seq_len, d_vocab=int(vocab_size), d_vocab_out=None, layernorm=True, causal=True
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON values of every field; ``snapshot_every`` only when snapshots are on (they change no
        number of the run, and leaving the field out at 0 keeps the job configs recorded before it
        existed equal to today's, so the sweep runner still recognizes those finished runs)."""
        data = io.to_jsonable(self)
        if not self.snapshot_every:
            del data["snapshot_every"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LMConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class LMRun:
    """Result of ``train_lm``.

    history: one row per evaluation (``step, tokens, lr, train_loss, val_loss, val_bits, wall_s``;
        ``train_loss`` is the mean over the steps since the previous row, nats).
    val_loss: final validation loss (nats/token); steps, tokens: what was trained; wall_s: training
        time including evaluations; ms_per_step: training time per step without evaluations.
    model: the trained ``HookedTransformer`` (eval mode).
    """

    config: LMConfig
    model_config: HookedConfig
    history: Any  # pandas.DataFrame
    val_loss: float
    steps: int
    tokens: int
    wall_s: float
    ms_per_step: float
    n_params: int
    entropy_rate: float | None
    model: HookedTransformer

    @property
    def val_bits(self) -> float:
        return self.val_loss / math.log(2)

    def summary(self) -> dict[str, Any]:
        """Headline numbers (JSON-able): what ``member.json`` and a sweep job return."""
        return {
            "val_loss": self.val_loss, "val_bits": self.val_bits, "entropy_rate": self.entropy_rate,
            "excess_bits": self.val_bits - self.entropy_rate if self.entropy_rate is not None else None,
            "steps": self.steps, "tokens": self.tokens, "wall_s": self.wall_s, "ms_per_step": self.ms_per_step,
            "n_params": self.n_params,
        }


# --------------------------------------------------------------------------------------------------
# pieces


def resolve_source(spec: str):
    """The ``Source`` of a spec (``thermolens.data.sources.parse_source``; ValueError shows the grammar)."""
    from thermolens.data.sources import parse_source

    return parse_source(spec)


def count_parameters(model: torch.nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def default_optimizer(model: torch.nn.Module, config: LMConfig) -> torch.optim.Optimizer:
    """AdamW (or Adam/SGD) as ``config`` says; weight decay only on matrices (not biases, LayerNorm)."""
    matrices = [p for p in model.parameters() if p.ndim >= 2]
    others = [p for p in model.parameters() if p.ndim < 2]
    groups = [{"params": matrices, "weight_decay": config.weight_decay}, {"params": others, "weight_decay": 0.0}]
    kwargs = dict(config.optimizer_kwargs)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr, **kwargs)
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=config.lr, **kwargs)
    return torch.optim.SGD(groups, lr=config.lr, **kwargs)


def lr_factor(step: int, config: LMConfig) -> float:
    """Multiplier of every group's initial learning rate at ``step`` (0-based): warm-up x schedule."""
    factor = _lr_factor(step + 1, config.warmup_steps)
    if config.lr_schedule == "cosine":
        total = max(config.steps - config.warmup_steps, 1)
        progress = min(max(step - config.warmup_steps, 0) / total, 1.0)
        factor *= FINAL_LR_FRACTION + (1 - FINAL_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * progress))
    return factor


def next_token_loss(model: HookedTransformer, windows: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy (nats) of ``windows[:, 1:]`` given ``windows[:, :-1]``; windows ``(batch, seq_len + 1)``."""
    logits = model(windows[:, :-1])  # (batch, seq_len, vocab)
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), windows[:, 1:].reshape(-1))


def _sample(source, n_seq: int, seq_len: int, seed: int, split: str) -> torch.Tensor:
    windows = source.sample(n_seq, seq_len, seed=seed, split=split)
    return torch.as_tensor(windows, dtype=torch.int64)


def validation_windows(source, config: LMConfig) -> torch.Tensor:
    """The fixed validation set: ``(eval_batches * batch_size, seq_len + 1)`` windows of the val split,
    drawn with ``VAL_SEED`` whatever the run's seed (common held-out data for every run)."""
    return _sample(source, config.eval_batches * config.batch_size, config.seq_len + 1, VAL_SEED, "val")


@torch.no_grad()
def evaluate(model: HookedTransformer, windows: torch.Tensor, batch_size: int) -> float:
    """Mean next-token loss (nats) over ``windows``, in batches of ``batch_size``."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for start in range(0, windows.shape[0], batch_size):
        chunk = windows[start:start + batch_size]
        total += float(next_token_loss(model, chunk)) * chunk.shape[0]
        count += chunk.shape[0]
    model.train(was_training)
    return total / count


@functools.cache
def code_commit() -> str | None:
    """The git commit of the code this process runs, read once (at its first training run), so a
    commit made while a long sweep runs does not relabel members trained by the older code."""
    return io.git_commit()


def save_member(run_dir: Path, run: LMRun, extra: dict[str, Any] | None = None) -> None:
    """Write ``model.safetensors``, ``history.parquet`` and ``member.json`` atomically."""
    from importlib.metadata import PackageNotFoundError, version

    from safetensors.torch import save_file

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in run.model.state_dict().items()}
    with io.atomic_path(run_dir / WEIGHTS) as tmp:
        save_file(state, str(tmp))
    io.write_table(run_dir / HISTORY, run.history)
    try:
        package_version = version("thermolens")
    except PackageNotFoundError:
        package_version = None
    io.write_json(run_dir / MEMBER_JSON, {
        "lm_config": run.config.to_dict(),
        "model_config": io.to_jsonable(run.model_config),
        "summary": run.summary(),
        "thermolens_version": package_version,
        "git_commit": code_commit(),
        "versions": io.package_versions(),
        "finished": io.now_iso(),
        **(extra or {}),
    })


def load_member(run_dir: str | Path) -> tuple[HookedTransformer, dict[str, Any]]:
    """The trained model of a member directory and its ``member.json``."""
    from safetensors.torch import load_file

    run_dir = Path(run_dir)
    if not (run_dir / MEMBER_JSON).is_file() or not (run_dir / WEIGHTS).is_file():
        raise ValueError(f"{run_dir} is not a trained member (needs {MEMBER_JSON} and {WEIGHTS})")
    meta = io.read_json(run_dir / MEMBER_JSON)
    cfg = dict(meta["model_config"])
    if isinstance(cfg.get("temperature"), list):
        cfg["temperature"] = tuple(tuple(r) if isinstance(r, list) else r for r in cfg["temperature"])
    model = HookedTransformer(HookedConfig(**cfg))
    model.load_state_dict(load_file(str(run_dir / WEIGHTS)))
    model.eval()
    return model, meta


# --------------------------------------------------------------------------------------------------
# the loop


def train_lm(
    config: LMConfig,
    *,
    run_dir: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    make_optimizer: Callable[[torch.nn.Module, LMConfig], torch.optim.Optimizer] | None = None,
) -> LMRun:
    """Train one causal LM as the module docstring says; see ``LMConfig`` for the settings.

    run_dir: where ``model.safetensors``, ``history.parquet``, ``member.json`` and the weight
        snapshots go (None: nothing is written; needs ``snapshot_every = 0``). progress:
        ``progress(step, steps)`` after every step. make_optimizer:
        ``make_optimizer(model, config) -> torch.optim.Optimizer`` replaces the default AdamW; its
        groups' learning rates are scaled by the warm-up/schedule factor every step.
    """
    import pandas as pd

    if config.snapshot_every and run_dir is None:
        raise ValueError(f"snapshot_every={config.snapshot_every} writes weight snapshots into run_dir; "
                         "give a run_dir or set snapshot_every=0")
    code_commit()  # the commit of the code as loaded, before any long training
    source = resolve_source(config.source)
    model_config = config.hooked_config(source.vocab_size)
    model = HookedTransformer(model_config, seed=config.seed)
    model.train()
    optimizer = (make_optimizer or default_optimizer)(model, config)
    base_lrs = [group["lr"] for group in optimizer.param_groups]
    val = validation_windows(source, config)
    steps, chunk = config.steps, max(1, min(config.eval_every, 64))

    history: list[dict[str, float]] = []
    train_sum, train_n = 0.0, 0
    train_s = 0.0
    start = time.perf_counter()
    batches: torch.Tensor | None = None
    if run_dir is not None:
        drop_snapshots_after(run_dir, -1)  # training starts over: earlier attempts' snapshots go
    if config.snapshot_every:
        save_snapshot(run_dir, 0, model)  # the initial weights
    for step in range(steps):
        if step % chunk == 0:  # draw `chunk` steps of training windows at once
            n = min(chunk, steps - step)
            batches = _sample(source, n * config.batch_size, config.seq_len + 1,
                              config.seed * 1_000_003 + step // chunk, "train")
        t0 = time.perf_counter()
        offset = (step % chunk) * config.batch_size
        windows = batches[offset:offset + config.batch_size]
        factor = lr_factor(step, config)
        for group, base in zip(optimizer.param_groups, base_lrs):
            group["lr"] = base * factor
        loss = next_token_loss(model, windows)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        train_s += time.perf_counter() - t0
        value = loss.item()
        if not math.isfinite(value):
            raise FloatingPointError(
                f"training loss became {value} at step {step + 1}; lower lr (now {config.lr}) or raise warmup_steps"
            )
        train_sum, train_n = train_sum + value, train_n + 1
        done = step + 1
        if done % config.eval_every == 0 or done == steps:
            history.append({
                "step": done, "tokens": done * config.tokens_per_step, "lr": base_lrs[0] * factor,
                "train_loss": train_sum / train_n, "val_loss": evaluate(model, val, config.batch_size),
                "wall_s": time.perf_counter() - start,
            })
            train_sum, train_n = 0.0, 0
        if config.snapshot_every and (done % config.snapshot_every == 0 or done == steps):
            save_snapshot(run_dir, done, model)
        if progress is not None:
            progress(done, steps)
    model.eval()
    frame = pd.DataFrame(history, columns=["step", "tokens", "lr", "train_loss", "val_loss", "wall_s"])
    frame["val_bits"] = frame["val_loss"] / math.log(2)
    run = LMRun(
        config=config, model_config=model_config, history=frame, val_loss=float(frame["val_loss"].iloc[-1]),
        steps=steps, tokens=steps * config.tokens_per_step, wall_s=time.perf_counter() - start,
        ms_per_step=1e3 * train_s / steps, n_params=count_parameters(model),
        entropy_rate=_entropy_rate(source), model=model,
    )
    if run_dir is not None:
        save_member(Path(run_dir), run)
    return run


def _entropy_rate(source) -> float | None:
    """Bits/token: exact where the source knows it, else its estimate (None if that fails)."""
    if source.entropy_rate is not None:
        return float(source.entropy_rate)
    try:
        return float(source.estimated_entropy_rate(seed=0))
    except ValueError:
        return None
