"""Grokking with a thermometer: train the Nanda et al. model on modular arithmetic and read the
specific heat of its attention all along.

One run (``train``):

* data: ``a b =`` sequences mod ``p`` (``thermolens.data.modular``), split by ``seed``;
* model: ``nanda2023(p)`` (``thermolens.models.hooked``), initial weights drawn from ``seed``;
* optimizer: full-batch AdamW, ``lr`` 1e-3, weight decay 1.0, betas (0.9, 0.98), learning rate
  times ``min(step / warmup_steps, 1)`` (the schedule of Nanda et al. 2023, arXiv:2301.05217);
  ``optimizer`` names another one of ``thermolens.optim.OPTIMIZERS`` (same lr, weight decay, betas
  and schedule; ``optimizer_kwargs`` go to its constructor), ``init="critical"`` starts every head
  at its critical temperature (``thermolens.optim.init``);
  the loss is the cross-entropy of the answer at the ``=`` position (float64 log-softmax);
* optional Grokfast-EMA gradient filter (Lee et al. 2024, arXiv:2405.20233): ``g <- g + lamb * h``
  with ``h <- alpha h + (1 - alpha) g``. It changes the dynamics being measured; results carry the
  flag.
* thermometer every ``every`` steps on the train and the test inputs
  (``thermolens.experiments.grokking.thermometer.read``), a temperature sweep ``C(T)`` of the test inputs
  every ``sweep_every`` steps;
* sharpness every ``sharpness_every`` steps (0: never): the top Hessian eigenvalue of the training
  loss and, for preconditioned optimizers, of ``P^{-1} H`` (``thermolens.optim.sharpness``);
* early stop once test accuracy has stayed >= ``stop_acc`` for ``stop_window`` steps (so the
  thermometer still sees the run well past the onset), else at ``max_steps``;
* a checkpoint (model, optimizer, filter state, every reading so far) every ``checkpoint_every``
  steps, written atomically: a failed write leaves the previous checkpoint intact. ``train`` with
  an existing checkpoint continues from it and gives the same numbers as an uninterrupted run;
* weight snapshots every ``snapshot_every`` steps (0: none), at step 0 and at the last step:
  the model's state dict (weights and the ``head_temperature`` buffer) as
  ``snapshots/step-<step:07d>.safetensors``, written atomically, for measurements against training
  step (``thermolens.experiments.dynamics.checkpoints``). A resumed run keeps the snapshots up to
  its checkpoint as they are and writes the later ones again (those the interrupted attempt wrote
  after its last checkpoint are removed: the continuation from the checkpoint is the run of record).
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from thermolens import io
from thermolens.data.modular import ModularTask, make_dataset
from thermolens.experiments.grokking import detection
from thermolens.experiments.grokking import thermometer
from thermolens.models.hooked import HookedTransformer, nanda2023
from thermolens.optim import OPTIMIZERS, make_optimizer

CHECKPOINT = "checkpoint.pt"
SNAPSHOTS = "snapshots"  # folder of the weight snapshots in a run directory
_SNAPSHOT_NAME = re.compile(r"step-(\d{7,})\.safetensors")

#: series on which peaks are detected: (history column, short name)
PEAK_SERIES = (
    ("test_C_eq", "C"),
    ("test_C_corr", "C_corr"),
    ("train_C_eq", "C_train"),
    ("test_C_pooled", "C_pooled"),
    ("test_C_all", "C_all"),
)


def default_sweep_temperatures() -> tuple[float, ...]:
    return tuple(float(t) for t in np.geomspace(0.1, 10.0, 33))


@dataclass(frozen=True)
class GrokConfig:
    """One grokking run. Defaults: Nanda et al. 2023 (arXiv:2301.05217) at p = 113."""

    p: int = 113
    op: str = "add"
    train_fraction: float = 0.3
    seed: int = 0
    lr: float = 1e-3
    weight_decay: float = 1.0
    adam_betas: tuple[float, float] = (0.9, 0.98)
    warmup_steps: int = 10
    max_steps: int = 20000
    every: int = 100  # thermometer cadence (steps)
    sweep_every: int = 1000  # temperature-sweep cadence (steps); 0 switches the sweep off
    sweep_temperatures: tuple[float, ...] = dataclasses.field(default_factory=default_sweep_temperatures)
    stop_acc: float = 0.99
    stop_window: int = 2000  # steps at test accuracy >= stop_acc before stopping; 0: never stop early
    checkpoint_every: int = 1000
    grokfast: bool = False
    grokfast_alpha: float = 0.98
    grokfast_lamb: float = 2.0
    optimizer: str = "adamw"  # one of thermolens.optim.OPTIMIZERS
    optimizer_kwargs: dict = dataclasses.field(default_factory=dict)
    init: str = "default"  # "critical": every head starts at its T* (thermolens.optim.init)
    sharpness_every: int = 0  # steps between sharpness readings; 0: never
    device: str = "cpu"  # torch device of the model and the data ("cuda" on a GPU)
    snapshot_every: int = 0  # steps between weight snapshots (also step 0 and the last step); 0: none

    def __post_init__(self) -> None:
        ModularTask(p=self.p, op=self.op, train_fraction=self.train_fraction, seed=self.seed)
        if not self.lr > 0:
            raise ValueError(f"lr={self.lr} must be positive (e.g. 1e-3)")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay={self.weight_decay} must be >= 0 (e.g. 1.0)")
        if len(self.adam_betas) != 2 or not all(0 <= b < 1 for b in self.adam_betas):
            raise ValueError(f"adam_betas={self.adam_betas} must be two numbers in [0, 1), e.g. (0.9, 0.98)")
        for name in ("warmup_steps", "sweep_every", "stop_window"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 0")
        for name in ("max_steps", "every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        if self.max_steps < 5 * self.every:
            raise ValueError(
                f"max_steps={self.max_steps} gives fewer than 5 thermometer readings at every={self.every}; "
                "raise max_steps or lower every"
            )
        if not self.sweep_temperatures or not all(t > 0 and math.isfinite(t) for t in self.sweep_temperatures):
            raise ValueError("sweep_temperatures must be a non-empty list of positive temperatures")
        if not 0 < self.stop_acc <= 1:
            raise ValueError(f"stop_acc={self.stop_acc} must lie in (0, 1]")
        if not 0 <= self.grokfast_alpha < 1 or not self.grokfast_lamb >= 0:
            raise ValueError("grokfast_alpha must lie in [0, 1) and grokfast_lamb be >= 0 (defaults 0.98, 2.0)")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer={self.optimizer!r} is unknown; choose one of {', '.join(OPTIMIZERS)}")
        if self.init not in INITS:
            raise ValueError(f"init={self.init!r} is unknown; choose one of {', '.join(INITS)}")
        if not isinstance(self.device, str) or not self.device:
            raise ValueError(f"device={self.device!r} must be a torch device name such as 'cpu' or 'cuda'")
        if self.sharpness_every < 0:
            raise ValueError(f"sharpness_every={self.sharpness_every} must be >= 0 (0 switches it off)")
        if not isinstance(self.snapshot_every, int) or self.snapshot_every < 0:
            raise ValueError(f"snapshot_every={self.snapshot_every!r} must be an integer >= 0 (0: no snapshots)")

    @property
    def task(self) -> ModularTask:
        return ModularTask(p=self.p, op=self.op, train_fraction=self.train_fraction, seed=self.seed)

    def to_dict(self) -> dict[str, Any]:
        """JSON values of every field; ``snapshot_every`` only when snapshots are on. Snapshots change
        no number of the run, and leaving the field out at 0 keeps the configurations recorded before it
        existed (job.json of finished runs, checkpoints) equal to today's, so they still resume."""
        data = io.to_jsonable(self)
        if not self.snapshot_every:
            del data["snapshot_every"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GrokConfig:
        data = dict(data)
        data["adam_betas"] = tuple(data["adam_betas"])
        data["sweep_temperatures"] = tuple(data["sweep_temperatures"])
        return cls(**data)


#: initializations of ``GrokConfig.init``
INITS = ("default", "critical")


@dataclass(frozen=True)
class Detection:
    """Onset of generalization, the specific-heat peaks and the leads (steps) of one run."""

    onset: detection.Onset
    peaks: dict[str, detection.Peak]  # keyed by the short names of PEAK_SERIES

    @property
    def onset_step(self) -> float:
        return self.onset.onset_step

    def lead(self, series: str = "C") -> float:
        return detection.lead(self.onset.onset_step, self.peaks[series])


@dataclass(frozen=True)
class GrokRun:
    """Result of one run. ``history``: one row per thermometer reading; ``sweep``: long table of
    ``C(T)`` per head at the sweep checkpoints; ``timings``: seconds spent training and measuring."""

    config: GrokConfig
    history: Any  # pandas.DataFrame
    sweep: Any  # pandas.DataFrame
    detection: Detection
    steps: int
    stopped_early: bool
    timings: dict[str, float]

    def summary(self) -> dict[str, Any]:
        """The headline numbers of the run (what ``--json`` prints)."""
        det = self.detection
        row: dict[str, Any] = {
            "p": self.config.p, "seed": self.config.seed, "op": self.config.op,
            "train_fraction": self.config.train_fraction, "weight_decay": self.config.weight_decay,
            "grokfast": self.config.grokfast, "optimizer": self.config.optimizer, "init": self.config.init,
            "steps": self.steps, "stopped_early": self.stopped_early,
            "grokked": math.isfinite(det.onset.onset_90),
            "onset_step": det.onset_step, "onset_90_step": det.onset.onset_90,
            "sigmoid_mid_step": det.onset.sigmoid_mid,
            "peak_step": det.peaks["C"].step, "lead_steps": det.lead("C"),
            "peak_prominence": det.peaks["C"].relative_prominence,
            "peak_corr_step": det.peaks["C_corr"].step, "lead_corr_steps": det.lead("C_corr"),
            "peak_train_step": det.peaks["C_train"].step, "lead_train_steps": det.lead("C_train"),
            "peak_pooled_step": det.peaks["C_pooled"].step, "lead_pooled_steps": det.lead("C_pooled"),
            "peak_all_step": det.peaks["C_all"].step, "lead_all_steps": det.lead("C_all"),
            "final_test_acc": float(self.history["test_acc"].iloc[-1]),
            "ms_per_step": 1e3 * self.timings["train_s"] / max(self.steps, 1),
            "thermometer_overhead": self.timings["thermometer_s"] / max(self.timings["train_s"], 1e-9),
        }
        return row


# --------------------------------------------------------------------------------------------------
# training pieces


def _lr_factor(step: int, warmup_steps: int) -> float:
    return min(step / warmup_steps, 1.0) if warmup_steps > 0 else 1.0


def grokfast_ema(model: torch.nn.Module, ema: dict[str, torch.Tensor] | None, alpha: float, lamb: float):
    """Grokfast-EMA (Lee et al. 2024, arXiv:2405.20233, Algorithm 2): amplify the slow gradient.

    ``h <- alpha h + (1 - alpha) g``; ``g <- g + lamb h``. Returns the new filter state.
    """
    new: dict[str, torch.Tensor] = {}
    for name, param in model.named_parameters():
        if param.grad is None:
            continue
        grad = param.grad.detach()
        h = grad.clone() if ema is None else ema[name] * alpha + grad * (1 - alpha)
        param.grad = grad + lamb * h
        new[name] = h
    return new


def sharpness_reading(model: HookedTransformer, optimizer: torch.optim.Optimizer, tokens: torch.Tensor,
                      labels: torch.Tensor, lr: float) -> dict[str, float]:
    """Top Hessian eigenvalue of the training loss (``sharpness``, against ``2 / lr``) and, when the
    optimizer has a preconditioner, of ``P^{-1} H`` (``sharpness_precond``, against Adam's
    ``(2 + 2 beta1) / ((1 - beta1) lr)``); Cohen et al. 2021/2022 (arXiv:2103.00065, 2207.14484)."""
    from thermolens.optim import sharpness

    def loss_fn() -> torch.Tensor:
        out = model(tokens, last_only=True)[:, -1]
        return torch.nn.functional.cross_entropy(out.double(), labels)

    params = [p for group in optimizer.param_groups for p in group["params"]]
    beta1 = optimizer.param_groups[0].get("betas", (0.0, 0.0))[0]
    model.eval()  # no dropout here; eval keeps optimizers that watch training forwards out of it
    try:
        row = {"sharpness": sharpness.hessian_sharpness(loss_fn, params, n_iter=20).value,
               "gd_threshold": sharpness.gd_threshold(lr), "adam_threshold": sharpness.adam_threshold(lr, beta1)}
        apply_inverse = sharpness.inverse_preconditioner(optimizer)
        has_state = any(optimizer.state.get(p) for p in params)
        row["sharpness_precond"] = (
            sharpness.preconditioned_sharpness(loss_fn, params, apply_inverse, n_iter=30).value
            if apply_inverse is not None and has_state else math.nan
        )
    finally:
        model.train()
    return row


def detect(history) -> Detection:
    """Onset and peaks from a run's history (see ``thermolens.experiments.grokking.detection``)."""
    steps = history["step"].to_numpy(float)
    onset = detection.detect_onset(steps, history["test_acc"].to_numpy(float))
    peaks = {name: detection.detect_peak(steps, history[col].to_numpy(float)) for col, name in PEAK_SERIES}
    return Detection(onset=onset, peaks=peaks)


def critical_temperatures(sweep, d_head: int):
    """``T*`` of every head at every sweep checkpoint: the refined peak of its ``C(T)``
    (``thermolens.thermo.critical_temperature``), with Kim's ``T*_K = sqrt(d_head) T*``.

    ``sweep``: a run's sweep frame (step, layer, head, T, C, S). Returns one row per
    (step, layer, head) with ``T_star, T_star_kim, C_max, at_edge`` (``at_edge``: the grid maximum
    is an end point of the temperature grid, so T* is not bracketed).
    """
    import pandas as pd

    from thermolens.thermo import critical_temperature

    columns = ["step", "layer", "head", "T_star", "T_star_kim", "C_max", "at_edge"]
    if len(sweep) == 0:
        return pd.DataFrame(columns=columns)
    table = sweep.pivot_table(index=["step", "layer", "head"], columns="T", values="C").sort_index(axis=1)
    point = critical_temperature(table.columns.to_numpy(float), table.to_numpy(float))  # (rows,) per curve
    frame = table.index.to_frame(index=False)
    frame["T_star"] = point.T_star
    frame["T_star_kim"] = math.sqrt(d_head) * np.asarray(point.T_star)
    frame["C_max"] = point.C_max
    frame["at_edge"] = point.at_edge
    return frame[columns]


def _sweep_rows(step: int, sweep: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    rows = []
    n_t, n_layers, n_heads = sweep["C"].shape
    for i in range(n_t):
        for layer in range(n_layers):
            for head in range(n_heads):
                rows.append({
                    "step": step, "layer": layer, "head": head, "T": float(sweep["T"][i]),
                    "C": float(sweep["C"][i, layer, head]), "S": float(sweep["S"][i, layer, head]),
                })
    return rows


def snapshot_path(run_dir: str | Path, step: int) -> Path:
    """Where the weight snapshot of ``step`` lives in a run directory."""
    return Path(run_dir) / SNAPSHOTS / f"step-{int(step):07d}.safetensors"


def snapshot_steps(run_dir: str | Path) -> list[int]:
    """Steps of the weight snapshots in ``run_dir``, ascending (temporary files of a write in
    progress are not snapshots)."""
    folder = Path(run_dir) / SNAPSHOTS
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for f in folder.iterdir() if (m := _SNAPSHOT_NAME.fullmatch(f.name)))


def save_snapshot(run_dir: str | Path, step: int, model: torch.nn.Module) -> Path:
    """Write ``model.state_dict()`` (parameters and buffers, on the CPU) to ``snapshot_path(run_dir,
    step)`` as safetensors, atomically: a failed write leaves no file."""
    from safetensors.torch import save_file

    path = snapshot_path(run_dir, step)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    try:
        with io.atomic_path(path) as tmp:
            save_file(state, str(tmp), metadata={"step": str(int(step))})
    except OSError as exc:
        raise OSError(
            exc.errno, f"could not write the weight snapshot {path} ({exc.strerror or exc}); free disk space and "
            "rerun (with --resume): training continues from the last checkpoint"
        ) from exc
    return path


def drop_snapshots_after(run_dir: str | Path, step: int) -> None:
    """Remove the snapshots of ``run_dir`` past ``step`` (``-1``: all): those of an attempt that is
    being redone from ``step``."""
    for later in (s for s in snapshot_steps(run_dir) if s > step):
        snapshot_path(run_dir, later).unlink(missing_ok=True)


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Atomic: a failure (disk full, interruption) leaves the previous checkpoint untouched."""
    try:
        with io.atomic_path(path) as tmp:
            torch.save(state, tmp)
    except OSError as exc:
        raise OSError(
            exc.errno, f"could not write checkpoint {path} ({exc.strerror or exc}); the previous checkpoint "
            "is intact — free disk space and rerun with --resume"
        ) from exc


def _load_checkpoint(path: Path, config: GrokConfig) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    state = torch.load(path, weights_only=True, map_location=config.device)
    stored = state.get("config")
    if stored is not None:  # checkpoints written before a field existed hold its default
        stored = {**{k: v for k, v in GrokConfig().to_dict().items() if k not in stored}, **stored}
    if stored != config.to_dict():
        differing = sorted(k for k in set(stored or {}) | set(config.to_dict())
                           if (stored or {}).get(k) != config.to_dict().get(k))
        raise ValueError(
            f"checkpoint {path} belongs to a different configuration (differs in: {', '.join(differing)}); "
            "use another --out or the original settings"
        )
    return state


# --------------------------------------------------------------------------------------------------
# one run


def train(
    config: GrokConfig,
    *,
    run_dir: str | Path | None = None,
    progress: Callable[[int, int, dict[str, float] | None], None] | None = None,
) -> GrokRun:
    """Train one run with the thermometer attached; see the module docstring.

    ``run_dir``: where checkpoints and weight snapshots go (and are resumed from); ``None`` keeps
    everything in memory (and needs ``snapshot_every = 0``).
    ``progress(step, max_steps, reading)`` is called after every step (``reading`` is the test
    reading when one was taken at that step, else ``None``).
    """
    import pandas as pd

    if config.snapshot_every and run_dir is None:
        raise ValueError(f"snapshot_every={config.snapshot_every} writes weight snapshots into run_dir; "
                         "give a run_dir or set snapshot_every=0")
    task = config.task
    data = make_dataset(task)
    data = dataclasses.replace(data, **{k: getattr(data, k).to(config.device)
                                        for k in ("train_tokens", "train_labels", "test_tokens", "test_labels")})
    model = HookedTransformer(nanda2023(config.p), seed=config.seed).to(config.device)
    if config.init == "critical":
        from thermolens.optim.init import critical_init

        critical_init(model, data.train_tokens)
    optimizer = make_optimizer(config.optimizer, model, lr=config.lr, weight_decay=config.weight_decay,
                               betas=config.adam_betas, kwargs=config.optimizer_kwargs)
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    nulls = {
        "train": thermometer.null_draw(data.n_train, n_layers, n_heads, model.cfg.n_ctx, seed=config.seed + 1),
        "test": thermometer.null_draw(data.n_test, n_layers, n_heads, model.cfg.n_ctx, seed=config.seed + 2),
    }
    nulls = {k: thermometer.NullDraw(v.z.to(config.device)) for k, v in nulls.items()}
    inputs = {"train": (data.train_tokens, data.train_labels), "test": (data.test_tokens, data.test_labels)}

    history: list[dict[str, float]] = []
    sweep_rows: list[dict[str, Any]] = []
    ema: dict[str, torch.Tensor] | None = None
    step, above_since, stopped_early, finished = 0, -1, False, False
    timings = {"train_s": 0.0, "thermometer_s": 0.0, "sweep_s": 0.0, "sharpness_s": 0.0}
    checkpoint = Path(run_dir) / CHECKPOINT if run_dir is not None else None
    resumed_at = -1  # step of the checkpoint this run continues from; -1: a fresh start
    if checkpoint is not None and (state := _load_checkpoint(checkpoint, config)) is not None:
        resumed_at = state["step"]
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        ema = state["ema"] or None
        step, above_since, stopped_early = state["step"], state["above_since"], state["stopped_early"]
        finished = state["finished"]
        history, sweep_rows, timings = state["history"], state["sweep"], {"sharpness_s": 0.0, **state["timings"]}

    def save() -> None:
        if checkpoint is not None:
            _save_checkpoint(checkpoint, {
                "config": config.to_dict(), "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "ema": ema or {}, "step": step, "above_since": above_since, "stopped_early": stopped_early,
                "finished": finished,
                "history": history, "sweep": sweep_rows, "timings": timings,
            })

    already_finished = finished  # a finished checkpoint is only read, never rewritten
    if run_dir is not None and not already_finished:
        drop_snapshots_after(run_dir, resumed_at)  # this attempt (re)writes every later one
    while not finished:
        reading = None
        if step % config.every == 0 or step == config.max_steps:
            start = time.perf_counter()
            row: dict[str, float] = {"step": step, "weight_norm": model.weight_norm()}
            for split, (tokens, labels) in inputs.items():
                for key, value in thermometer.read(model, tokens, labels, nulls[split]).items():
                    row[f"{split}_{key}"] = value
            history.append(row)
            reading = {k.removeprefix("test_"): v for k, v in row.items() if k.startswith("test_")}
            timings["thermometer_s"] += time.perf_counter() - start
            if config.sharpness_every and step % config.sharpness_every == 0:
                start = time.perf_counter()
                row.update(sharpness_reading(model, optimizer, data.train_tokens, data.train_labels, config.lr))
                timings["sharpness_s"] += time.perf_counter() - start
            if config.sweep_every and step % config.sweep_every == 0:
                start = time.perf_counter()
                sweep = thermometer.temperature_sweep(model, data.test_tokens, np.asarray(config.sweep_temperatures))
                sweep_rows.extend(_sweep_rows(step, sweep))
                timings["sweep_s"] += time.perf_counter() - start
            if row["test_acc"] >= config.stop_acc:
                above_since = step if above_since < 0 else above_since
            else:
                above_since = -1
            if config.stop_window and above_since >= 0 and step - above_since >= config.stop_window:
                stopped_early = True
        last = stopped_early or step == config.max_steps
        due = config.snapshot_every and (step % config.snapshot_every == 0 or last)
        if due and not snapshot_path(run_dir, step).is_file():  # the one at the resume step is kept as written
            save_snapshot(run_dir, step, model)
        if last:
            finished = True
            break

        start = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = config.lr * _lr_factor(step, config.warmup_steps)
        out = model(data.train_tokens, last_only=True)[:, -1]  # (batch, p)
        loss = torch.nn.functional.cross_entropy(out.double(), data.train_labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grokfast:
            ema = grokfast_ema(model, ema, config.grokfast_alpha, config.grokfast_lamb)
        optimizer.step()
        step += 1
        timings["train_s"] += time.perf_counter() - start
        if progress is not None:
            progress(step, config.max_steps, reading)
        if step % config.checkpoint_every == 0:
            save()
    if not already_finished:
        save()

    frame = pd.DataFrame(history)
    return GrokRun(
        config=config,
        history=frame,
        sweep=pd.DataFrame(sweep_rows, columns=["step", "layer", "head", "T", "C", "S"]),
        detection=detect(frame),
        steps=int(step),
        stopped_early=bool(stopped_early),
        timings=dict(timings),
    )
