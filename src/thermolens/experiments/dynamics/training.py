"""Token clustering through training: the dynamics measurement at every weight snapshot of a run.

A grokking run (``thermolens grok --snapshot-every N``) or a family member (``thermolens family
--snapshot-every N``) keeps its weights along training (``checkpoints.load_snapshots``). At every snapshot
the model is traced at T = 1 over the same evaluation sequences, and the depth curve, the last layer's
order parameters and the effective mean-field parameters are measured as for any model. Along the
training step the last layer's ``r_1`` either grows continuously or jumps (``measure.transition_shape``),
and ``beta_eff`` / ``K_eff / K_#`` say where mean-field theory would place each snapshot.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from thermolens.experiments.dynamics.measure import MeasureConfig, depth_table, effective_table, transition_shape
from thermolens.experiments.dynamics.trace import trace

__all__ = ["TrainingResult", "training_dynamics"]


@dataclass(frozen=True)
class TrainingResult:
    label: str
    kind: str
    run_dir: str
    steps: tuple[int, ...]
    depth: pd.DataFrame  # depth_table rows with a step column (components tokens, null, minus_mean)
    effective: pd.DataFrame  # effective_table rows with a step column
    history: pd.DataFrame | None  # the run's own readings (accuracy, loss against step)
    shape: dict  # of the last layer's r1 against step
    timings: dict[str, float]

    def last_layer(self, quantity: str = "r1", component: str = "tokens") -> pd.DataFrame:
        rows = self.depth[(self.depth["quantity"] == quantity) & (self.depth["component"] == component)]
        return rows[rows["layer"] == rows["layer"].max()].sort_values("step")

    def summary(self) -> dict[str, Any]:
        last = self.last_layer()
        eff = self.effective
        return {
            "label": self.label, "kind": self.kind, "run_dir": self.run_dir, "steps": list(self.steps),
            "r1_last_layer": last["value"].tolist(),
            "mean_cosine_last_layer": self.last_layer("mean_cosine")["value"].tolist(),
            "r1_last_layer_minus_mean": self.last_layer("r1", "minus_mean")["value"].tolist(),
            "beta_eff": {int(layer): g.sort_values("step")["beta_eff"].tolist() for layer, g in eff.groupby("layer")},
            "K_ratio": {int(layer): g.sort_values("step")["K_ratio"].tolist() for layer, g in eff.groupby("layer")},
            "shape": self.shape,
        }

    def save(self, run_dir: Path, prefix: str) -> None:
        from thermolens import io

        for name in ("depth", "effective", "history"):
            table = getattr(self, name)
            if table is not None and len(table):
                io.write_table(Path(run_dir) / f"{prefix}{name}.parquet", table)


def training_dynamics(
    path: str | Path,
    config: MeasureConfig,
    *,
    max_sequences: int = 64,
    max_snapshots: int | None = None,
    progress: Callable | None = None,
) -> TrainingResult:
    """Measure every snapshot of the run in ``path`` (see the module docstring).

    ``max_snapshots``: keep this many snapshots, evenly spread over training (None: all).
    """
    from thermolens.experiments.dynamics.checkpoints import load_snapshots

    snaps = load_snapshots(path, max_sequences=max_sequences, seed=config.seed)
    steps = list(snaps.steps)
    if max_snapshots is not None and len(steps) > max_snapshots:
        steps = [steps[i] for i in np.unique(np.linspace(0, len(steps) - 1, max_snapshots).round().astype(int))]
    depth_parts, eff_parts = [], []
    start = time.perf_counter()
    for step in (progress(steps) if progress else steps):
        model = snaps.model_at(step)
        tr = trace(model, snaps.tokens, heads=False)
        depth = depth_table(tr.states, config, components=("tokens", "null", "minus_mean"), clusters=False)
        eff, _ = effective_table(tr.states, tr.logits, config)
        depth_parts.append(depth.assign(step=step))
        eff_parts.append(eff.assign(step=step))
    depth = pd.concat(depth_parts, ignore_index=True)
    result = TrainingResult(
        label=snaps.label, kind=snaps.kind, run_dir=str(snaps.run_dir), steps=tuple(steps), depth=depth,
        effective=pd.concat(eff_parts, ignore_index=True), history=snaps.history, shape={},
        timings={"measure_s": time.perf_counter() - start},
    )
    last = result.last_layer()
    shape = transition_shape(last["step"].to_numpy(), last["value"].to_numpy(), last["lo"].to_numpy(),
                             last["hi"].to_numpy())
    return dataclasses.replace(result, shape=shape)
