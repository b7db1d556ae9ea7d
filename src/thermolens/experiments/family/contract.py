"""The model family as a study (``thermolens.runner.study``): train it, rescan its heads on other grids.

The claims of the seed paper that the family answers (Aranda Barois 2024, Theorems 1 and 3:
``thermolens.claims.scaling``) need one piece: the trained family of ``train.train_family``, plus
each member's per-head ``T*`` scanned again on the alternative temperature grids of the
sensitivity analysis (the grid decides which heads have an interior ``C(T)`` maximum, so a
verdict on ``T* ~ d^(-alpha)`` must survive another grid). A run directory::

    study.json                       the StudyConfig (a resumed run must be given the same one)
    family/                          `thermolens family train --out` layout (family.json, one dir per member)
    rescans/<member>/heads-<grid>.parquet   the member's scan on each alternative grid (a sweep job)

Both stages are sweeps (``thermolens.runner.sweep``) on ``inner_executor()``: a finished member or
rescan is never redone, so a run killed at any point continues when called again on the same
directory.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from thermolens import io
from thermolens.experiments.family import train
from thermolens.runner.study import Study, check_stored_config, config_from_dict, inner_executor, read_stored_config

__all__ = ["STUDY", "FamilyRun", "StudyConfig", "TemperatureGrid", "load", "rescan_member", "run"]

STUDY_JSON = "study.json"
FAMILY = "family"
RESCANS = "rescans"
RESCAN_FN = "thermolens.experiments.family.contract:rescan_member"


@dataclass(frozen=True)
class TemperatureGrid:
    """``n`` temperatures spaced geometrically from ``t_min`` to ``t_max`` (as the scan's default,
    ``experiments.scan.heads.DEFAULT_TEMPERATURES`` = 64 points over 0.05-25.6)."""

    t_min: float
    t_max: float
    n: int

    def __post_init__(self) -> None:
        if not 0 < self.t_min < self.t_max:
            raise ValueError(f"temperature grid {self.t_min}..{self.t_max}: need 0 < t_min < t_max")
        if self.n < 3:
            raise ValueError(f"temperature grid with n={self.n} points: a C(T) peak needs at least 3")

    @property
    def name(self) -> str:
        return f"{self.t_min:g}-{self.t_max:g}x{self.n}"

    def temperatures(self) -> tuple[float, ...]:
        return tuple(float(t) for t in np.geomspace(self.t_min, self.t_max, self.n))


#: the sensitivity grids: the default range at half the resolution, and a range 10x wider at each end
DEFAULT_GRIDS = (TemperatureGrid(0.05, 25.6, 32), TemperatureGrid(0.01, 100.0, 80))


@dataclass(frozen=True)
class StudyConfig:
    """``family``: the grid and training budget (``train.FamilyConfig``); ``grids``: alternative
    temperature grids on which every trained member's heads are scanned again, without the
    bootstrap CI (``T*`` and the nulls only: the sensitivity analysis needs the point estimates)."""

    family: train.FamilyConfig = field(default_factory=train.FamilyConfig)
    grids: tuple[TemperatureGrid, ...] = DEFAULT_GRIDS

    def __post_init__(self) -> None:
        names = [g.name for g in self.grids]
        if len(set(names)) != len(names):
            raise ValueError(f"grids {names} repeat a grid; list each once")


@dataclass(frozen=True)
class FamilyRun:
    """A finished piece: the family read back (``train.FamilyData``) and, per alternative grid name,
    the head table on that grid (columns of ``FamilyData.heads``: scan columns plus the member's
    ``member, d, N, L, H, seed, source``)."""

    config: StudyConfig
    data: train.FamilyData
    grid_heads: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        members = self.data.members
        excess = members["val_bits"] - members["H"]
        return {
            "n_members": int(len(members)), "n_heads": int(len(self.data.heads)),
            "widths": sorted(int(d) for d in members["d"].unique()),
            "best_val_bits": float(members["val_bits"].min()),
            "n_within_half_bit_of_floor": int((excess <= 0.5).sum()),
            "n_at_edge": int(self.data.heads["at_edge"].sum()),
            "n_at_edge_by_grid": {name: int(h["at_edge"].sum()) for name, h in self.grid_heads.items()},
            "mixed_versions": self.data.mixed_versions,
        }


def rescan_member(config: dict, run_dir: Path) -> dict:
    """Sweep job: scan one trained member's heads on every grid of ``config["grids"]``.

    ``run_dir`` is ``<study run>/rescans/<member>``; the member is ``<study run>/family/<member>``
    (found relative to ``run_dir``, so a moved run directory still resumes). The windows are the
    member's own scan windows (``train.train_member``: held-out, seed ``VAL_SEED + 1``).
    """
    from thermolens.experiments.family import lm

    run_dir = Path(run_dir)
    model, meta = lm.load_member(run_dir.parent.parent / FAMILY / config["member"])
    lm_config = lm.LMConfig.from_dict(meta["lm_config"])
    windows = lm.resolve_source(lm_config.source).sample(
        int(config["sequences"]), lm_config.seq_len, seed=lm.VAL_SEED + 1, split="val")  # (n_seq, L)
    n_at_edge = {}
    for values in config["grids"]:
        grid = TemperatureGrid(**values)
        heads = train.scan_heads(model, windows, temperatures=grid.temperatures(), n_boot=0, seed=lm_config.seed)
        io.write_table(run_dir / f"heads-{grid.name}.parquet", heads)
        n_at_edge[grid.name] = int(heads["at_edge"].sum())
    return {"member": config["member"], "n_at_edge": n_at_edge}


def run(config: StudyConfig, run_dir: Path) -> FamilyRun:
    """Train (or finish) the family into ``run_dir/family`` and rescan every member on ``config.grids``.

    Members and rescans already finished are not redone. Raises ``RuntimeError`` naming the members
    that failed every attempt (their tracebacks are in their ``error.txt``): a rerun retries them.
    """
    from thermolens.runner.sweep import Job, run_sweep

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    check_stored_config(config, run_dir, "family study", name=STUDY_JSON)
    executor = inner_executor()
    trained = train.train_family(config.family, run_dir / FAMILY, executor=executor)
    failed = dict(trained.failed)
    if config.grids:
        grids = [dataclasses.asdict(g) for g in config.grids]
        jobs = [Job(name=name, fn=RESCAN_FN,
                    config={"member": name, "grids": grids, "sequences": config.family.scan_sequences})
                for name in trained.members["member"]]
        failed.update(run_sweep(jobs, run_dir / RESCANS, executor=executor).failed)
    if failed:
        raise RuntimeError(f"{len(failed)} member(s) or rescan(s) failed every attempt: {', '.join(sorted(failed))}; "
                           f"tracebacks in their error.txt under {run_dir}; run again to retry them")
    return load(run_dir)


def load(run_dir: Path) -> FamilyRun:
    """A finished run read back: the family (``train.load_family``) and the rescanned head tables."""
    import pandas as pd

    run_dir = Path(run_dir)
    config = read_stored_config(StudyConfig, run_dir, "family study", name=STUDY_JSON)
    data = train.load_family(run_dir / FAMILY)
    keys = ["member", "d", "N", "L", "H", "seed", "source"]
    member_keys = data.heads[keys].drop_duplicates("member")
    grid_heads = {}
    for grid in config.grids:
        frames = []
        for member in data.members["member"]:
            path = run_dir / RESCANS / member / f"heads-{grid.name}.parquet"
            if not path.is_file():
                raise ValueError(f"{path} is missing: the rescan of {member} did not finish; run the study again")
            frames.append(io.read_table(path).assign(member=member))
        grid_heads[grid.name] = pd.concat(frames, ignore_index=True).merge(member_keys, on="member", how="left")
    return FamilyRun(config=config, data=data, grid_heads=grid_heads)


STUDY = Study(name="family", config_type=StudyConfig, run=run, load=load, summary=FamilyRun.summary)
