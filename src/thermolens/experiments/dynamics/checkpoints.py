"""Weight snapshots along training, read back for measurements against training step.

``thermolens grok --snapshot-every N`` and ``thermolens family train --snapshot-every N`` save the
model's state dict (weights and the ``head_temperature`` buffer) every ``N`` steps, at step 0 and at the
last step, as ``snapshots/step-<step:07d>.safetensors`` in the run's directory
(``experiments.grokking.train.save_snapshot``). :func:`load_snapshots` reads one such directory:

* a grokking run (``<study>/runs/<run>/``: ``checkpoint.pt`` and/or the sweep's ``job.json`` of
  ``grok_job``): the model is ``nanda2023(p)``; the evaluation inputs are the held-out (test) pairs
  ``a b =`` of the run's split; the history is the run's thermometer readings (``step``,
  ``train_acc``, ``test_acc``, ``train_loss``, ``test_loss`` and the ensemble columns);
* a family member (``<family>/<member>/``: ``member.json`` and/or the sweep's ``job.json`` of
  ``train_member``): the model is the member's ``HookedTransformer``; the evaluation inputs are
  windows of length ``L`` of the source's validation stream; the history is ``history.parquet``.

A run still training is read too (its snapshots so far; the history of its last checkpoint, or none).
A family directory, a grokking study and anything else are refused with a ``ValueError`` that says
what was found and what to give instead (:func:`find_runs` lists the runs inside a directory).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from thermolens import io
from thermolens.experiments.grokking.train import CHECKPOINT, SNAPSHOTS, snapshot_path, snapshot_steps
from thermolens.models.hooked import HookedConfig, HookedTransformer, nanda2023

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["KINDS", "TrainingSnapshots", "find_runs", "load_snapshots"]

KINDS = ("grokking", "family")

# the files that mark a directory, as their writers name them (experiments.grokking.study and train,
# experiments.family.train and lm, runner.sweep)
_JOB = "job.json"
_GROK_JOB_FN = "thermolens.experiments.grokking.study:grok_job"
_MEMBER_JSON = "member.json"
_FAMILY_JOB_FN = "thermolens.experiments.family.train:train_member"
_FAMILY_JSON = "family.json"
_HISTORY = "history.parquet"

_NOUN = {"grokking": "grokking run", "family": "family member"}

#: how to record snapshots, per kind (for the error of a run without them)
_HOW = {
    "grokking": "`thermolens grok --snapshot-every 500 --out DIR ...` (every 500 steps; ~30-60 per run)",
    "family": "`thermolens family train --snapshot-every 20 --out DIR ...` (every 20 steps; ~20 per member)",
}


@dataclass(frozen=True, eq=False)
class TrainingSnapshots:
    """The weight snapshots of one training run, with what is needed to measure each of them.

    kind: ``"grokking"`` or ``"family"``. run_dir: the run's directory. steps: training steps of the
    snapshots, ascending (0 is the initial model). tokens: ``(n_seq, seq_len)`` int64 evaluation
    inputs (grokking: held-out ``a b =`` pairs, ``seq_len = 3``; family: validation windows,
    ``seq_len = L``). history: the run's own readings (None when the run has none on disk yet).
    label: a short name for plots (``"p113 seed0 frac0.3"``, ``"d64 N4 L128 seed0 markov:..."``).
    model_config: the architecture every snapshot loads into. config: the run's configuration as
    recorded (``GrokConfig.to_dict()`` or ``LMConfig.to_dict()``).
    """

    kind: str
    run_dir: Path
    steps: tuple[int, ...]
    tokens: torch.Tensor  # (n_seq, seq_len) int64
    history: pd.DataFrame | None
    label: str
    model_config: HookedConfig
    config: dict[str, Any]

    def path(self, step: int) -> Path:
        """The snapshot file of ``step`` (a ValueError names the recorded steps if there is none)."""
        if step not in self.steps:
            shown = ", ".join(str(s) for s in self.steps[:8])
            shown += f", ..., {self.steps[-1]}" if len(self.steps) > 8 else ""
            raise ValueError(f"{self.run_dir} has no snapshot at step {step}; its {len(self.steps)} snapshots "
                             f"are at steps {shown}")
        return snapshot_path(self.run_dir, step)

    def model_at(self, step: int, *, device: str | torch.device = "cpu") -> HookedTransformer:
        """The model as it was after ``step`` training steps, in eval mode (read from safetensors)."""
        from safetensors.torch import load_file

        path = self.path(step)
        model = HookedTransformer(self.model_config, seed=0)  # seeded: leaves the global RNG alone
        try:
            model.load_state_dict(load_file(str(path)))
        except RuntimeError as exc:
            raise ValueError(f"snapshot {path} does not fit the run's model ({exc})") from None
        return model.to(device).eval()


# --------------------------------------------------------------------------------------------------
# recognizing a run directory


def _job_fn(path: Path) -> str | None:
    job = path / _JOB
    return io.read_json(job).get("fn") if job.is_file() else None


def _kind(path: Path) -> str | None:
    """``"grokking"``, ``"family"`` or None: what training run ``path`` holds, from its files."""
    if not path.is_dir():
        return None
    fn = _job_fn(path)
    if (path / _MEMBER_JSON).is_file() or fn == _FAMILY_JOB_FN:
        return "family"
    if (path / CHECKPOINT).is_file() or fn == _GROK_JOB_FN:
        return "grokking"
    return None


def find_runs(root: str | Path) -> tuple[Path, ...]:
    """The training runs in ``root``: ``root`` itself if it is one, else its grokking runs and family
    members (in ``root``, ``root/runs`` of a grokking study, ``root/family`` of a family study), sorted."""
    root = Path(root)
    if _kind(root) is not None:
        return (root,)
    found = []
    for folder in (root, root / "runs", root / "family"):
        if folder.is_dir():
            found += [p for p in folder.iterdir() if _kind(p) is not None]
    return tuple(sorted(found))


def _not_a_run(run_dir: Path) -> ValueError:
    if not run_dir.exists():
        return ValueError(f"{run_dir} does not exist; give a grokking run (<study>/runs/<run>) or a family "
                          "member directory")
    if run_dir.name == SNAPSHOTS and _kind(run_dir.parent) is not None:
        return ValueError(f"{run_dir} is the snapshot folder of a run; give its run directory {run_dir.parent}")
    inside = find_runs(run_dir) if run_dir.is_dir() else ()
    if (run_dir / _FAMILY_JSON).is_file():
        what = "a model family (family.json)"
    elif io.is_run_dir(run_dir, "grok") or (run_dir / "study.json").is_file() and (run_dir / "runs").is_dir():
        what = "a grokking study"
    else:
        what = "neither a grokking run nor a family member"
    if inside:
        with_snapshots = sum(bool(snapshot_steps(p)) for p in inside)
        names = ", ".join(str(p.relative_to(run_dir)) for p in inside[:10])
        more = f", and {len(inside) - 10} more" if len(inside) > 10 else ""
        return ValueError(f"{run_dir} is {what} holding {len(inside)} runs ({with_snapshots} with snapshots), "
                          f"not one run; give one of them, e.g. {inside[0]} (find_runs lists them all): "
                          f"{names}{more}")
    return ValueError(
        f"{run_dir} is {what}: expected a grokking run directory (<study>/runs/<run>/ with {CHECKPOINT}) or a "
        f"family member directory (<family>/<member>/ with {_MEMBER_JSON}) holding {SNAPSHOTS}/step-*.safetensors"
    )


# --------------------------------------------------------------------------------------------------
# the two kinds


def _grokking(run_dir: Path, max_sequences: int, seed: int) -> dict[str, Any]:
    import pandas as pd

    from thermolens.data.modular import make_dataset
    from thermolens.experiments.grokking.train import GrokConfig

    state = None
    if (run_dir / CHECKPOINT).is_file():  # the run's own record of its config (and readings so far)
        state = torch.load(run_dir / CHECKPOINT, weights_only=True, map_location="cpu")
        config = GrokConfig.from_dict(state["config"])
    else:
        config = GrokConfig.from_dict(io.read_json(run_dir / _JOB)["config"])
    if (run_dir / _HISTORY).is_file():
        history = io.read_table(run_dir / _HISTORY)
    else:
        history = pd.DataFrame(state["history"]) if state is not None else None
    test = make_dataset(config.task).test_tokens  # (n_test, 3): a, b, '='
    if test.shape[0] > max_sequences:
        pick = np.sort(np.random.default_rng(seed).choice(test.shape[0], size=max_sequences, replace=False))
        test = test[torch.from_numpy(pick)]
    return {
        "tokens": test.to(torch.int64), "history": history, "model_config": nanda2023(config.p),
        "label": f"p{config.p} seed{config.seed} frac{config.train_fraction:g}", "config": config.to_dict(),
    }


def _family(run_dir: Path, max_sequences: int, seed: int) -> dict[str, Any]:
    from thermolens.experiments.family import lm

    if (run_dir / _MEMBER_JSON).is_file():
        config = lm.LMConfig.from_dict(io.read_json(run_dir / _MEMBER_JSON)["lm_config"])
    else:
        config = lm.LMConfig.from_dict(io.read_json(run_dir / _JOB)["config"]["lm"])
    source = lm.resolve_source(config.source)
    # held-out windows of length L; seed 0 draws them as the member's head scan does (train.train_member)
    windows = source.sample(max_sequences, config.seq_len, seed=lm.VAL_SEED + 1 + seed, split="val")
    history = io.read_table(run_dir / _HISTORY) if (run_dir / _HISTORY).is_file() else None
    model_config = config.hooked_config(source.vocab_size)
    label = (f"d{model_config.d_model} N{model_config.n_heads} L{config.seq_len} seed{config.seed} "
             f"{config.source}")
    return {"tokens": torch.as_tensor(windows, dtype=torch.int64), "history": history,
            "model_config": model_config, "label": label, "config": config.to_dict()}


def load_snapshots(run_dir: str | Path, *, max_sequences: int = 64, seed: int = 0) -> TrainingSnapshots:
    """The weight snapshots of one grokking run or family member, with its evaluation inputs and history.

    ``max_sequences``: at most this many evaluation sequences (grokking: a subset of the test pairs
    drawn with ``seed`` when there are more; family: exactly this many validation windows, drawn
    with ``seed``: seed 0 gives the windows of the member's head scan when ``max_sequences`` equals its
    ``scan_sequences``). Raises ValueError for a directory that is not one run (a family, a study:
    the message lists their runs) or that holds no snapshots (the message says how to record them).
    """
    if not isinstance(max_sequences, int) or max_sequences < 1:
        raise ValueError(f"max_sequences={max_sequences!r} must be a positive integer (e.g. 64)")
    run_dir = Path(run_dir)
    kind = _kind(run_dir)
    if kind is None:
        raise _not_a_run(run_dir)
    steps = tuple(snapshot_steps(run_dir))
    if not steps:
        raise ValueError(f"{run_dir} is a {_NOUN[kind]} without weight snapshots (no "
                         f"{SNAPSHOTS}/step-*.safetensors); train it again into a new directory with {_HOW[kind]}")
    parts = (_grokking if kind == "grokking" else _family)(run_dir, max_sequences, seed)
    return TrainingSnapshots(kind=kind, run_dir=run_dir, steps=steps, **parts)

