"""Does the criticality-aware optimizer help? The same model, data, budget and seeds for every
optimizer, and the numbers that answer it.

Tasks:

``grokking``  the Nanda et al. model on ``a + b mod p`` (``experiments.grokking.train``, thermometer
              attached, sharpness logged every ``sharpness_every`` steps). Metrics: the step and the
              wall time (onset step x measured seconds per training step, thermometer excluded) at
              which test accuracy first crosses 50 % of its rise (``detection.detect_onset``).
``lm``        a causal LM on a source spec (``experiments.lm.train_lm``; ``text:builtin`` is the
              pydoc corpus). Metrics: validation loss at fixed steps (a quarter, half and all of the
              budget) and at a fixed wall time (the shortest total training time among the runs).

Every optimizer gets the task's learning rate, weight decay, betas and schedule (no per-optimizer
tuning; ``optimizer_kwargs`` is the only way to change one, and it is recorded). Each run writes
``runs/<name>/``; a run with ``result.json`` is finished and never redone. Runs go to ``workers``
processes (spawn, one torch thread each).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from thermolens import io
from thermolens.optim.registry import OPTIMIZERS

TASKS = ("grokking", "lm")
INITS = ("default", "critical")
RESULT = "result.json"
TEMPERATURE_TABLE = "temperature.parquet"


def default_lm_model() -> dict:
    """The small LM: 2 layers, d_model 64, 4 heads of 16, MLP 256 (about 0.1 M parameters)."""
    return {"n_layers": 2, "d_model": 64, "n_heads": 4, "d_head": 16, "d_mlp": 256}


@dataclass(frozen=True)
class CompareConfig:
    """A comparison: every optimizer x init x seed on one task (see the module docstring)."""

    task: str = "grokking"
    optimizers: tuple[str, ...] = ("adamw", "critical")
    seeds: tuple[int, ...] = (0, 1, 2)
    inits: tuple[str, ...] = ("default",)
    lr: float | None = None  # None: the task's default (grokking 1e-3, lm 3e-3)
    weight_decay: float | None = None  # None: the task's default (grokking 1.0, lm 0.01)
    betas: tuple[float, float] = (0.9, 0.98)
    optimizer_kwargs: dict = field(default_factory=dict)  # {optimizer: {keyword: value}}
    device: str = "cpu"
    # grokking
    p: int = 113
    train_fraction: float = 0.3
    max_steps: int = 20000
    every: int = 100
    sweep_every: int = 1000
    sharpness_every: int = 1000
    stop_window: int = 1000
    # lm
    source: str = "text:builtin"
    steps: int = 3000
    model: dict = field(default_factory=default_lm_model)
    seq_len: int = 64
    batch_size: int = 32
    eval_every: int | None = None  # None: steps // 30 (at least 1, at most 100)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task {self.task!r} is unknown; choose one of {', '.join(TASKS)}")
        for name, values, allowed in (("optimizers", self.optimizers, OPTIMIZERS), ("inits", self.inits, INITS)):
            if not values:
                raise ValueError(f"{name} is empty; give at least one")
            unknown = [v for v in values if v not in allowed]
            if unknown:
                raise ValueError(f"{name} {', '.join(unknown)} unknown; choose from {', '.join(allowed)}")
            if len(set(values)) != len(values):
                raise ValueError(f"{name} {list(values)} repeats a value")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds {list(self.seeds)} must be distinct and non-empty")
        for name in ("lr", "weight_decay"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= (0 if name == "weight_decay" else 1e-300)):
                raise ValueError(f"{name}={value} must be {'>= 0' if name == 'weight_decay' else 'positive'}")
        unknown = sorted(set(self.optimizer_kwargs) - set(self.optimizers))
        if unknown:
            raise ValueError(f"optimizer_kwargs names {', '.join(unknown)}, which is not among the optimizers")
        if self.steps < 1:
            raise ValueError(f"steps={self.steps} must be >= 1")
        self.runs()  # every run's own validation, up front

    # ---- the runs --------------------------------------------------------------------------------

    def runs(self) -> dict[str, Run]:
        """Every optimizer x init x seed, by run name."""
        out = {}
        for optimizer in self.optimizers:
            for init in self.inits:
                for seed in self.seeds:
                    kwargs = dict(self.optimizer_kwargs.get(optimizer, {}))
                    out[f"{optimizer}-{init}-seed{seed}"] = Run(
                        self.task, optimizer, init, seed, kwargs, tuple(self.betas),
                        self._run_config(optimizer, init, seed, kwargs).to_dict())
        return out

    def _run_config(self, optimizer: str, init: str, seed: int, kwargs: dict):
        if self.task == "grokking":
            from thermolens.experiments.grokking.train import GrokConfig

            return GrokConfig(
                p=self.p, train_fraction=self.train_fraction, seed=seed, lr=self.lr or 1e-3,
                weight_decay=1.0 if self.weight_decay is None else self.weight_decay, adam_betas=tuple(self.betas),
                max_steps=self.max_steps, every=self.every, sweep_every=self.sweep_every,
                stop_window=self.stop_window, checkpoint_every=max(self.every, 1000), optimizer=optimizer,
                optimizer_kwargs=kwargs, init=init, sharpness_every=self.sharpness_every, device=self.device,
            )
        from thermolens.experiments.family.lm import LMConfig

        return LMConfig(
            model=dict(self.model), source=self.source, seq_len=self.seq_len, batch_size=self.batch_size,
            budget_tokens=self.steps * self.batch_size * self.seq_len, lr=self.lr or 3e-3,
            weight_decay=0.01 if self.weight_decay is None else self.weight_decay, seed=seed,
            eval_every=self.eval_every or max(1, min(100, self.steps // 30)),
        )

    def to_dict(self) -> dict[str, Any]:
        return io.to_jsonable(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CompareConfig:
        data = dict(data)
        for key in ("optimizers", "seeds", "inits", "betas"):
            data[key] = tuple(data[key])
        return cls(**data)


@dataclass(frozen=True)
class Run:
    """One run of a comparison: the task's own config (as a dict) and the optimizer choice."""

    task: str
    optimizer: str
    init: str
    seed: int
    kwargs: dict
    betas: tuple[float, float]
    config: dict  # GrokConfig.to_dict() or LMConfig.to_dict()


# --------------------------------------------------------------------------------------------------
# one run (inside a worker process)


def _temperature_frame(history: list[dict]) -> Any:
    import pandas as pd

    return pd.DataFrame(history, columns=["step", "layer", "head", "T", "T_star"])


def _run_grokking(spec: Run, run_dir: Path) -> dict[str, Any]:
    import torch

    from thermolens.experiments.grokking import train as grokking
    from thermolens.experiments.grokking.study import write_run

    config = grokking.GrokConfig.from_dict(spec.config)
    run = grokking.train(config, run_dir=run_dir)
    summary = write_run(run, run_dir)
    state = torch.load(run_dir / grokking.CHECKPOINT, weights_only=True, map_location="cpu")
    extra = state["optimizer"].get("critical") or {}
    history = (extra.get("temperature") or {}).get("history", [])
    io.write_table(run_dir / TEMPERATURE_TABLE, _temperature_frame(history))
    onset = summary["onset_step"]
    summary.update({
        "optimizer": config.optimizer, "init": config.init, "fallbacks": len(extra.get("events", [])),
        "onset_wall_s": onset * summary["ms_per_step"] / 1e3 if math.isfinite(onset) else math.nan,
    })
    io.write_json(run_dir / RESULT, summary)
    return summary


def lm_optimizer_factory(spec: Run, holder: dict) -> Callable:
    """``make_optimizer(model, config)`` for ``train_lm``: the run's optimizer over the freshly built
    model (kept in ``holder["optimizer"]``), after critical init when the run asks for it (inputs
    from the training stream with seed 10^6 + seed, which no training batch uses)."""

    def make(model, config):
        import torch

        from thermolens.experiments.family.lm import resolve_source
        from thermolens.optim import make_optimizer
        from thermolens.optim.init import critical_init

        if spec.init == "critical":
            source = resolve_source(config.source)
            tokens = source.sample(64, config.seq_len, seed=10**6 + config.seed, split="train")
            critical_init(model, torch.as_tensor(tokens, dtype=torch.int64))
        holder["optimizer"] = make_optimizer(spec.optimizer, model, lr=config.lr, weight_decay=config.weight_decay,
                                             betas=spec.betas, kwargs=spec.kwargs)
        return holder["optimizer"]

    return make


def _run_lm(spec: Run, run_dir: Path) -> dict[str, Any]:
    from thermolens.experiments.family.lm import LMConfig, train_lm

    config = LMConfig.from_dict(spec.config)
    holder: dict = {}
    run = train_lm(config, run_dir=run_dir, make_optimizer=lm_optimizer_factory(spec, holder))
    optimizer = holder["optimizer"]
    controller = getattr(optimizer, "controller", None)
    io.write_table(run_dir / TEMPERATURE_TABLE, _temperature_frame(controller.history if controller else []))
    summary = {"run": run_dir.name, "seed": config.seed, "optimizer": spec.optimizer, "init": spec.init,
               **run.summary(), "fallbacks": len(getattr(optimizer, "events", []))}
    io.write_json(run_dir / RESULT, summary)
    return summary


def _worker(spec: Run, run_dir: str) -> dict[str, Any]:
    from thermolens.experiments.grokking.study import one_torch_thread

    with one_torch_thread():
        return (_run_grokking if spec.task == "grokking" else _run_lm)(spec, Path(run_dir))


def finished(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / RESULT
    if not path.is_file():
        return None
    return {k: math.nan if v is None else v for k, v in io.read_json(path).items()}


# --------------------------------------------------------------------------------------------------
# the comparison


@dataclass(frozen=True)
class CompareResult:
    """``runs``: one row per run; ``summary``: one row per optimizer x init (mean, sd over seeds);
    ``verdict``: plain-words comparison with AdamW."""

    config: CompareConfig
    runs: Any  # pandas.DataFrame
    summary: Any  # pandas.DataFrame
    verdict: str


def _lm_fixed_points(runs, root: Path, config: CompareConfig):
    """Adds ``val_loss_at_<step>`` (quarter, half, all of the budget) and ``val_loss_at_wall``
    (validation loss of the last evaluation within the shortest total wall time of all runs)."""
    steps = sorted({max(config.steps // 4, 1), max(config.steps // 2, 1), config.steps})
    histories = {name: io.read_table(root / "runs" / name / "history.parquet") for name in runs["run"]}
    wall = min(float(h["wall_s"].iloc[-1]) for h in histories.values())
    for step in steps:
        runs[f"val_loss_at_{step}"] = [
            float(np.interp(step, h["step"], h["val_loss"])) for h in (histories[n] for n in runs["run"])]
    runs["val_loss_at_wall"] = [
        float(h.loc[h["wall_s"] <= wall + 1e-9, "val_loss"].iloc[-1]) if (h["wall_s"] <= wall + 1e-9).any() else math.nan
        for h in (histories[n] for n in runs["run"])]
    runs.attrs["wall_budget_s"] = wall
    return runs, steps, wall


def summarize(runs, config: CompareConfig, metrics: list[str]):
    """Mean, standard deviation (ddof 1), min and max over seeds of each metric, per optimizer x init."""
    import pandas as pd

    rows = []
    for (optimizer, init), group in runs.groupby(["optimizer", "init"], sort=False):
        row: dict[str, Any] = {"optimizer": optimizer, "init": init, "n_runs": len(group)}
        if config.task == "grokking":
            row["n_grokked"] = int(group["grokked"].sum())
        for metric in metrics:
            values = group[metric].to_numpy(float)
            ok = values[np.isfinite(values)]
            row[f"{metric}_mean"] = float(ok.mean()) if ok.size else math.nan
            row[f"{metric}_sd"] = float(ok.std(ddof=1)) if ok.size > 1 else math.nan
            row[f"{metric}_min"] = float(ok.min()) if ok.size else math.nan
            row[f"{metric}_max"] = float(ok.max()) if ok.size else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def _spread(row, metric: str, fmt: str) -> str:
    return (f"{row[metric + '_mean']:{fmt}} (range {row[metric + '_min']:{fmt}}-{row[metric + '_max']:{fmt}})"
            if math.isfinite(row[metric + "_mean"]) else "n/a")


def _paired(runs, optimizer: str, init: str, metric: str) -> str:
    """Seed-by-seed comparison with AdamW (same seed: same data order and initial weights)."""
    def by_seed(o, i):
        sel = runs[(runs["optimizer"] == o) & (runs["init"] == i)]
        return dict(zip(sel["seed"], sel[metric].astype(float)))

    mine, base = by_seed(optimizer, init), by_seed("adamw", "default")
    pairs = [(mine[s], base[s]) for s in mine if s in base and math.isfinite(mine[s]) and math.isfinite(base[s])]
    if not pairs:
        return ""
    wins = sum(a < b for a, b in pairs)
    mean = float(np.mean([a - b for a, b in pairs]))
    return f"; lower than AdamW's in {wins}/{len(pairs)} seeds (mean paired difference {mean:+.4g})"


def verdict(summary, config: CompareConfig, headline: str, runs=None) -> str:
    """Plain words: each optimizer against AdamW (default init) on the headline metric; a
    difference counts only if the seed ranges do not overlap. With ``runs``, the seed-by-seed
    (paired) comparison is added."""
    base = summary[(summary["optimizer"] == "adamw") & (summary["init"] == "default")]
    lines = []
    for _, row in summary.iterrows():
        label = f"{row['optimizer']} ({row['init']} init)"
        fmt = ".4g"
        text = f"{label}: {headline} {_spread(row, headline, fmt)}"
        if config.task == "grokking":
            text += f"; generalized in {row['n_grokked']}/{row['n_runs']} runs"
        if len(base) and not (row["optimizer"] == "adamw" and row["init"] == "default"):
            b = base.iloc[0]
            if not (math.isfinite(row[headline + "_mean"]) and math.isfinite(b[headline + "_mean"])):
                text += (" — no comparison with AdamW possible: one side has no value (no run generalized, "
                         "or none was evaluated within the budget)")
            else:
                ratio = row[headline + "_mean"] / b[headline + "_mean"]
                better = row[headline + "_max"] < b[headline + "_min"]  # every metric here: lower is better
                worse = row[headline + "_min"] > b[headline + "_max"]
                word = "better than" if better else "worse than" if worse else "not distinguishable from"
                if min(row["n_runs"], b["n_runs"]) < 2:
                    word = "with one seed no spread to judge by; nominally " + ("better than" if ratio < 1 else "worse than")
                text += f" — {ratio:.2f}x AdamW's mean; {word} AdamW over these seeds"
                if runs is not None:
                    text += _paired(runs, row["optimizer"], row["init"], headline)
        lines.append(text)
    return "\n".join(lines)


def run_compare(
    config: CompareConfig, root: str | Path, *, workers: int = 1,
    on_done: Callable[[dict[str, Any]], None] | None = None,
) -> CompareResult:
    """Run (or continue) every run of ``config`` under ``root/runs`` and summarize."""
    import multiprocessing

    import pandas as pd

    if workers < 1:
        raise ValueError(f"workers={workers} must be >= 1")
    root = Path(root)
    configs = config.runs()
    results: dict[str, dict[str, Any]] = {}
    todo = []
    for name in configs:
        run_dir = root / "runs" / name
        done = finished(run_dir)
        if done is not None:
            results[name] = done
            if on_done is not None:
                on_done(done)
        else:
            run_dir.mkdir(parents=True, exist_ok=True)
            todo.append(name)
    if workers == 1 or len(todo) <= 1:
        for name in todo:
            results[name] = _worker(configs[name], str(root / "runs" / name))
            if on_done is not None:
                on_done(results[name])
    else:
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(_worker, configs[n], str(root / "runs" / n)): n for n in todo}
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                if on_done is not None:
                    on_done(results[futures[future]])
    runs = pd.DataFrame([{"run": name, **results[name]} for name in configs])
    if config.task == "grokking":
        metrics = ["onset_step", "onset_wall_s", "final_test_acc", "ms_per_step"]
        headline = "onset_step"
    else:
        runs, steps, _ = _lm_fixed_points(runs, root, config)
        metrics = [f"val_loss_at_{s}" for s in steps] + ["val_loss_at_wall", "ms_per_step"]
        headline = f"val_loss_at_{config.steps}"
    summary = summarize(runs, config, metrics)
    words = verdict(summary, config, headline, runs)
    if config.task == "grokking":
        words += "\nwall time to generalization:\n" + verdict(summary, config, "onset_wall_s", runs)
    else:
        words += (f"\nat a fixed wall time of {runs.attrs['wall_budget_s']:.1f} s:\n"
                  + verdict(summary, config, "val_loss_at_wall", runs))
    return CompareResult(config=config, runs=runs, summary=summary, verdict=words)



# --------------------------------------------------------------------------------------------------
# diagnostics of a finished comparison


@dataclass(frozen=True)
class DiagnoseResult:
    """Tables of a comparison's diagnostics (one row per reading):

    ``sharpness``: run, optimizer, init, seed, step, sharpness, gd_threshold, sharpness_precond,
    adam_threshold (grokking: logged during training; lm: the final model only, no optimizer state);
    ``temperature``: run, optimizer, step, layer, head, T, T_star, source ("controller": the
    optimizer's own readings on training inputs; "sweep": T* of the thermometer's C(T) sweeps);
    ``spectra``: run, optimizer, block, rank, eigenvalue (K-FAC factors of the final model);
    ``headline``: one row per run.
    """

    task: str
    sharpness: Any
    temperature: Any
    spectra: Any
    headline: Any


def _final_model_and_loss(task: str, run_dir: Path, config: dict):
    """The run's final model and a loss closure on its training (grokking) / validation (lm) data.
    The embedding hook keeps per-example activations for the K-FAC capture (see CriticalOptimizer)."""
    import torch

    from thermolens.models.names import embed

    hooks = {embed(): lambda x: None}
    if task == "grokking":
        from thermolens.data.modular import make_dataset
        from thermolens.experiments.grokking.train import CHECKPOINT, GrokConfig
        from thermolens.models.hooked import HookedTransformer, nanda2023

        grok = GrokConfig.from_dict({**config, "device": "cpu"})
        model = HookedTransformer(nanda2023(grok.p))
        model.load_state_dict(torch.load(run_dir / CHECKPOINT, weights_only=True, map_location="cpu")["model"])
        data = make_dataset(grok.task)

        def loss_fn():
            out = model(data.train_tokens, last_only=True, hooks=hooks)[:, -1]
            return torch.nn.functional.cross_entropy(out.double(), data.train_labels)

        return model, loss_fn, grok.lr
    from thermolens.experiments.family.lm import LMConfig, load_member, resolve_source, validation_windows

    lm = LMConfig.from_dict(config)
    model, _ = load_member(run_dir)
    model.train()
    windows = validation_windows(resolve_source(lm.source), lm)[: lm.batch_size]

    def loss_fn():
        logits = model(windows[:, :-1], hooks=hooks)
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), windows[:, 1:].reshape(-1))

    return model, loss_fn, lm.lr


def diagnose(root: str | Path) -> DiagnoseResult:
    """Sharpness against the stability thresholds, per-head T against T*, and K-FAC factor
    spectra of every finished run of the comparison in ``root``."""
    import pandas as pd

    from thermolens.optim import sharpness as sh
    from thermolens.optim.kfac import factor_spectra

    root = Path(root)
    if not io.is_run_dir(root, "optimize-compare"):
        raise ValueError(f"{root} is not an `optimize compare` run directory (no such manifest.json); check the path")
    config = CompareConfig.from_dict(io.read_json(root / io.MANIFEST)["config"])
    sharp, temps, spectra, heads = [], [], [], []
    for name, spec in config.runs().items():
        run_dir = root / "runs" / name
        result = finished(run_dir)
        if result is None:
            continue
        ident = {"run": name, "optimizer": spec.optimizer, "init": spec.init, "seed": spec.seed}
        model, loss_fn, lr = _final_model_and_loss(config.task, run_dir, spec.config)
        if config.task == "grokking":
            history = io.read_table(run_dir / "history.parquet")
            cols = ["step", "sharpness", "gd_threshold", "sharpness_precond", "adam_threshold"]
            if "sharpness" in history:
                rows = history.loc[history["sharpness"].notna(), cols]
                sharp += [{**ident, **r} for r in rows.to_dict("records")]
            tstar = io.read_table(run_dir / "tstar.parquet")
            temps += [{**ident, "step": r["step"], "layer": r["layer"], "head": r["head"], "T": math.nan,
                       "T_star": r["T_star"], "source": "sweep"} for r in tstar.to_dict("records")]
        else:
            value = sh.hessian_sharpness(loss_fn, [p for p in model.parameters()], n_iter=20).value
            beta1 = spec.betas[0]
            sharp.append({**ident, "step": int(result["steps"]), "sharpness": value, "gd_threshold": sh.gd_threshold(lr),
                          "sharpness_precond": math.nan, "adam_threshold": sh.adam_threshold(lr, beta1)})
        controlled = io.read_table(run_dir / TEMPERATURE_TABLE)
        temps += [{**ident, **r, "source": "controller"} for r in controlled.to_dict("records")]
        model.zero_grad(set_to_none=True)
        for block, values in factor_spectra(model, loss_fn).items():
            spectra += [{**ident, "block": block, "rank": i, "eigenvalue": float(v)} for i, v in enumerate(values)]
        run_sharp = [r for r in sharp if r["run"] == name]
        T = model.head_temperature.detach().numpy()
        heads.append({
            **ident,
            "max_sharpness_over_gd_threshold": max((r["sharpness"] / r["gd_threshold"] for r in run_sharp), default=math.nan),
            "max_precond_over_adam_threshold": max((r["sharpness_precond"] / r["adam_threshold"] for r in run_sharp
                                                    if math.isfinite(r["sharpness_precond"])), default=math.nan),
            "final_T_mean": float(T.mean()), "final_T_min": float(T.min()), "final_T_max": float(T.max()),
        })
    columns = {
        "sharpness": ["run", "optimizer", "init", "seed", "step", "sharpness", "gd_threshold", "sharpness_precond",
                      "adam_threshold"],
        "temperature": ["run", "optimizer", "init", "seed", "step", "layer", "head", "T", "T_star", "source"],
        "spectra": ["run", "optimizer", "init", "seed", "block", "rank", "eigenvalue"],
    }
    if not heads:
        raise ValueError(f"{root} holds no finished run yet; run `thermolens optimize compare` to the end first")
    return DiagnoseResult(
        task=config.task,
        sharpness=pd.DataFrame(sharp, columns=columns["sharpness"]),
        temperature=pd.DataFrame(temps, columns=columns["temperature"]),
        spectra=pd.DataFrame(spectra, columns=columns["spectra"]),
        headline=pd.DataFrame(heads),
    )
