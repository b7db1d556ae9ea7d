"""A family of small causal LMs over widths, heads, context lengths, sources and seeds (issue 8, part 2).

Every member is a ``HookedTransformer`` with ``d_model = d`` (the width, the seed paper's embedding
dimension), ``N`` heads of ``d_head = d / N``, ``n_layers`` layers, an MLP of ``mlp_ratio * d`` and
context ``n_ctx = L``, trained by ``experiments.lm.train_lm`` on one source to the SAME token
budget (``budget_tokens`` predicted tokens, documented in ``member.json``). A combination with
``d % N != 0`` cannot be built and is skipped with its reason listed (``FamilyPlan.skipped``).

After training, each member's heads are scanned (quenched: logits captured once at T = 1 on
``scan_sequences`` validation windows of length L, DESIGN.md §3) by ``scan_heads``, which feeds the
captured logits to the scan's own accumulation and tables (``experiments.scan``: ``T*`` as the
refined peak of ``C(T)``, a bootstrap CI over sequences, the Gaussian and row-shuffled nulls matched
in valid keys and logit spread). A member directory holds::

    model.safetensors   member.json   history.parquet   heads.parquet   result.json (written by the sweep)
    snapshots/step-<step:07d>.safetensors   weights along training (``snapshot_every > 0`` only)

``member.json`` records the thermolens version and git commit; ``load_family`` warns (and lists the
members) when a family directory mixes members trained by different code.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from thermolens import io
from thermolens.experiments.family import lm

FAMILY_JSON = "family.json"
HEADS = "heads.parquet"
JOB_FN = "thermolens.experiments.family.train:train_member"


@dataclass(frozen=True)
class FamilyConfig:
    """The grid and the training budget shared by every member.

    widths (d = d_model), heads (N), seq_lens (L), sources (specs), seeds: the grid (all combinations
    with d % N == 0). n_layers, mlp_ratio, act: the rest of the architecture. budget_tokens (predicted
    tokens per member), batch_tokens (tokens per step: ``batch_size = batch_tokens // L`` windows, so
    every member takes the same number of steps), lr, weight_decay, warmup_steps, eval_every,
    eval_batches: ``LMConfig`` settings, the same for every member. scan_sequences, n_boot: the
    per-head T* scan (validation windows, bootstrap resamples of its CI). snapshot_every: each
    member's weights every that many steps, at step 0 and the last step (``lm.train_lm``); 0: none.
    Snapshots change no number a member reports, so a finished member is kept as it is whatever
    ``snapshot_every`` a later run of the family asks for (``train_family``).
    """

    widths: tuple[int, ...] = (32, 64, 128, 256)
    heads: tuple[int, ...] = (1, 2, 4, 8)
    seq_lens: tuple[int, ...] = (64, 128, 256)
    sources: tuple[str, ...] = ("markov:h=0.75,order=2,vocab=16,seed=0", "markov:h=1.5,order=2,vocab=16,seed=0")
    seeds: tuple[int, ...] = (0, 1)
    n_layers: int = 1
    mlp_ratio: int = 4
    act: str = "gelu"
    budget_tokens: int = 3 * 2**18
    batch_tokens: int = 2048
    lr: float = 1e-2
    weight_decay: float = 0.01
    warmup_steps: int = 20
    eval_every: int = 32
    eval_batches: int = 8
    scan_sequences: int = 32
    n_boot: int = 200
    snapshot_every: int = 0

    def __post_init__(self) -> None:
        for name in ("widths", "heads", "seq_lens", "sources", "seeds"):
            values = getattr(self, name)
            if not values:
                raise ValueError(f"{name} is empty; give at least one value")
            if len(set(values)) != len(values):
                raise ValueError(f"{name}={list(values)} repeats a value; list each once")
        for name in ("widths", "heads", "seq_lens"):
            bad = [v for v in getattr(self, name) if not isinstance(v, int) or v < 1]
            if bad:
                raise ValueError(f"{name} must be positive integers; got {bad}")
        if min(self.seq_lens) < 2:
            raise ValueError(f"seq_lens={list(self.seq_lens)}: every context length must be at least 2")
        if max(self.seq_lens) > self.batch_tokens:
            raise ValueError(f"batch_tokens={self.batch_tokens} is less than one window of L={max(self.seq_lens)}; "
                             "raise batch_tokens")
        for name in ("n_layers", "mlp_ratio", "scan_sequences"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        if self.scan_sequences < 2 and self.n_boot > 0:
            raise ValueError("scan_sequences must be >= 2 for a bootstrap CI of T* (or set n_boot=0)")
        members = self.plan().members
        if not members:
            raise ValueError(
                f"no width in {list(self.widths)} is divisible by a head count in {list(self.heads)}; "
                "every member needs d % N == 0"
            )
        members[0].lm_config()  # the shared training settings validate

    def plan(self) -> FamilyPlan:
        """The members to train and the combinations skipped (with the reason)."""
        members, skipped = [], []
        for source in self.sources:
            for L in self.seq_lens:
                for d in self.widths:
                    for N in self.heads:
                        for seed in self.seeds:
                            m = Member(d=d, N=N, L=L, source=source, seed=seed, family=self)
                            if d % N:
                                skipped.append((m.name, f"d={d} is not divisible by N={N} heads (d_head = d/N)"))
                            else:
                                members.append(m)
        return FamilyPlan(members=tuple(members), skipped=tuple(skipped))

    def to_dict(self) -> dict[str, Any]:
        return io.to_jsonable(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FamilyConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        data = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names}
        return cls(**data)


def quick() -> FamilyConfig:
    """The quick preset: 2 sources x 2 context lengths x 3 widths x 3 head counts x 2 seeds = 72 tiny
    members, about two minutes on 2 cores; enough to exercise every fit, too small for conclusions."""
    return FamilyConfig(
        widths=(16, 32, 64), heads=(1, 2, 4), seq_lens=(16, 32),
        sources=("markov:h=1.0,order=2,vocab=8,seed=0", "markov:h=2.0,order=2,vocab=8,seed=0"),
        seeds=(0, 1), budget_tokens=2**17, batch_tokens=512, lr=1e-2, warmup_steps=10, eval_every=32,
        eval_batches=8, scan_sequences=16, n_boot=100,
    )


def default() -> FamilyConfig:
    """The default family: the issue's grid (widths 32-256, 1-8 heads, L = 64-256) on two order-2
    Markov sources (H = 0.75 and 1.5 bits/token) x 2 seeds = 192 members of 3 x 2^18 tokens (384 steps)
    each, within the 2-hour budget on 2 cores (docs/scaling.md: how to scale it up)."""
    return FamilyConfig()


PRESETS: dict[str, Callable[[], FamilyConfig]] = {"quick": quick, "default": default}


@dataclass(frozen=True)
class Member:
    """One point of the grid."""

    d: int
    N: int
    L: int
    source: str
    seed: int
    family: FamilyConfig

    @property
    def name(self) -> str:
        tag = re.sub(r"[^A-Za-z0-9.]+", "_", self.source).strip("_")
        return f"{tag}-L{self.L}-d{self.d}-N{self.N}-s{self.seed}"

    def lm_config(self) -> lm.LMConfig:
        f = self.family
        d_head = self.d // self.N if self.d % self.N == 0 else 1
        return lm.LMConfig(
            model={"n_layers": f.n_layers, "d_model": self.d, "n_heads": self.N, "d_head": d_head,
                   "d_mlp": f.mlp_ratio * self.d, "act": f.act},
            source=self.source, seq_len=self.L, batch_size=max(1, f.batch_tokens // self.L), budget_tokens=f.budget_tokens,
            lr=f.lr, weight_decay=f.weight_decay, warmup_steps=f.warmup_steps, seed=self.seed,
            eval_every=f.eval_every, eval_batches=f.eval_batches, snapshot_every=f.snapshot_every,
        )

    def job_config(self) -> dict[str, Any]:
        """What the sweep job receives (JSON-able)."""
        return {
            "member": {"d": self.d, "N": self.N, "L": self.L, "source": self.source, "seed": self.seed},
            "lm": self.lm_config().to_dict(),
            "scan": {"sequences": self.family.scan_sequences, "n_boot": self.family.n_boot},
        }


@dataclass(frozen=True)
class FamilyPlan:
    members: tuple[Member, ...]
    skipped: tuple[tuple[str, str], ...]  # (member name, reason)


# --------------------------------------------------------------------------------------------------
# per-head critical temperatures of a trained member


def scan_heads(model, windows, *, temperatures=None, n_boot: int = 200, ci: float = 0.95,
               seed: int = 0, null_sequences: int = 4):
    """Per-head ``T*`` (with bootstrap CI over sequences) and its null references for a ``HookedTransformer``.

    ``windows`` ``(n_seq, L)`` int64 tokens. The pre-softmax logits of every layer are captured at
    T = 1 (``run_with_cache``, hook ``blocks.{L}.attn.logits``) with the causal mask, and handed to
    the scan's accumulation (``thermo.sequence_sums`` and both null ensembles) and tables, so the
    columns are those of ``ScanResult.heads`` (``T_star, T_star_lo, T_star_hi, at_edge, n_keys,
    logit_std, T_star_null_gauss, T_star_null_shuffled, differs_from_null, ...``).
    """
    import torch

    from thermolens import thermo
    from thermolens.experiments.scan import heads as scan_mod
    from thermolens.models import names

    cfg = model.cfg
    config = scan_mod.ScanConfig(temperatures=tuple(temperatures or scan_mod.DEFAULT_TEMPERATURES),
                                 seq_len=max(int(windows.shape[1]), 2), n_boot=n_boot, ci=ci, seed=seed,
                                 null_sequences=null_sequences)
    temps = np.asarray(config.temperatures, dtype=float)
    betas = torch.as_tensor(1.0 / temps, dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)
    layers = list(range(cfg.n_layers))
    acc = {layer: scan_mod._LayerSums() for layer in layers}
    take = min(null_sequences, windows.shape[0])
    with torch.inference_mode():
        _, cache = model.run_with_cache(windows, stop_after=names.attn_logits(cfg.n_layers - 1))
        for layer in layers:
            logits = cache[names.attn_logits(layer)].float()  # (seq, head, q, k)
            mask = cache[names.attn_mask(layer)][None, None]  # (1, 1, q, k)
            mask = mask.expand(logits.shape[0], 1, *mask.shape[2:])
            acc[layer].real = thermo.sequence_sums(logits, betas, mask)
            scan_mod._add_null_sums(acc[layer], logits[:take], mask[:take], betas, generator)
    heads, _ = scan_mod._tabulate(acc, layers, list(range(cfg.n_heads)), temps, config, cfg.d_head)
    return heads


# --------------------------------------------------------------------------------------------------
# one member (the sweep job)


def train_member(config: dict, run_dir: Path) -> dict:
    """Train one member, scan its heads and return its headline numbers (the sweep's ``Job.fn``).

    ``config``: ``Member.job_config()``. Writes ``model.safetensors``, ``history.parquet``,
    ``member.json`` and ``heads.parquet`` into ``run_dir``.
    """
    run_dir = Path(run_dir)
    member = config["member"]
    lm_config = lm.LMConfig.from_dict(config["lm"])
    run = lm.train_lm(lm_config, run_dir=run_dir)
    source = lm.resolve_source(lm_config.source)
    # held-out windows, the same for every member of a source and length: (n_scan, L) int64
    windows = source.sample(int(config["scan"]["sequences"]), lm_config.seq_len, seed=lm.VAL_SEED + 1, split="val")
    heads = scan_heads(run.model, windows, n_boot=int(config["scan"]["n_boot"]), seed=lm_config.seed)
    io.write_table(run_dir / HEADS, heads)
    return {
        **member, **run.summary(), "d_head": run.model_config.d_head, "n_layers": run.model_config.n_layers,
        "T_star_median": float(heads["T_star"].median()),
        "n_differs_from_null": int(heads["differs_from_null"].sum()), "n_at_edge": int(heads["at_edge"].sum()),
    }


# --------------------------------------------------------------------------------------------------
# the whole family


@dataclass(frozen=True)
class FamilyResult:
    """Outcome of ``train_family``: the per-member summaries, failures and skipped combinations."""

    config: FamilyConfig
    members: Any  # pandas.DataFrame, one row per finished member
    failed: dict[str, str]
    skipped: tuple[tuple[str, str], ...]
    wall_s: float

    def summary(self) -> dict[str, Any]:
        m = self.members
        return {
            "n_members": int(len(m)), "n_failed": len(self.failed), "n_skipped": len(self.skipped),
            "skipped": [{"member": name, "reason": why} for name, why in self.skipped],
            "failed": self.failed, "wall_s": self.wall_s,
            "member_wall_s_mean": float(m["wall_s"].mean()) if len(m) else None,
            "ms_per_step_mean": float(m["ms_per_step"].mean()) if len(m) else None,
            "best_val_bits": float(m["val_bits"].min()) if len(m) else None,
        }


def write_family_json(root: Path, config: FamilyConfig) -> None:
    plan = config.plan()
    io.write_json(root / FAMILY_JSON, {
        "config": config.to_dict(), "members": [m.name for m in plan.members],
        "skipped": [{"member": name, "reason": why} for name, why in plan.skipped],
    })


def _job_config(member: Member, root: Path) -> dict[str, Any]:
    """``member.job_config()``, except that a finished member keeps the snapshot cadence it was trained with.

    The sweep runner refuses a finished job whose stored config differs from the one given. Snapshots
    change no number a member reports, so turning them on or off for a family must neither refuse nor
    redo its finished members: they are kept as they are (with the snapshots they have, or none), and
    only the members still to train follow ``snapshot_every``.
    """
    from thermolens.runner.sweep import JOB, RESULT

    config = member.job_config()
    run_dir = root / member.name
    if (run_dir / RESULT).is_file() and (run_dir / JOB).is_file():
        stored = io.read_json(run_dir / JOB).get("config", {}).get("lm", {})
        config["lm"].pop("snapshot_every", None)
        if "snapshot_every" in stored:
            config["lm"]["snapshot_every"] = stored["snapshot_every"]
    return config


def train_family(
    config: FamilyConfig, root: str | Path, *, executor: str = "local", workers: int | None = None,
    address: str | None = None, retries: int = 1, progress: Callable[[int, int], None] | None = None,
) -> FamilyResult:
    """Train (or finish) every member under ``root/<member name>/`` with ``experiments.sweep.run_sweep``.

    Finished members (``result.json`` present) are never redone, whatever ``snapshot_every`` asks
    now: they keep the snapshots (or none) they were trained with (``_job_config``). A member that
    fails twice is reported in ``failed`` and the others go on.
    """
    import pandas as pd

    from thermolens.runner.sweep import Job, run_sweep

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    write_family_json(root, config)
    plan = config.plan()
    jobs = [Job(name=m.name, fn=JOB_FN, config=_job_config(m, root)) for m in plan.members]
    result = run_sweep(jobs, root, executor=executor, workers=workers, address=address, retries=retries,
                       progress=progress)
    rows = [{"member": name, **summary} for name, summary in sorted(result.done.items())]
    return FamilyResult(config=config, members=pd.DataFrame(rows), failed=dict(result.failed),
                        skipped=plan.skipped, wall_s=float(result.wall_s))


# --------------------------------------------------------------------------------------------------
# reading a family directory back


@dataclass(frozen=True)
class FamilyData:
    """A trained family read from disk.

    members: one row per member (d, N, L, source, seed, entropy_rate, val_loss, val_bits, n_params, ...).
    heads: one row per (member, layer, head) with the scan columns and the member's d, N, L, H, seed.
    versions: one row per member with its thermolens version and git commit.
    mixed_versions: True when the members were trained by different code (a warning was issued).
    """

    root: Path
    members: Any
    heads: Any
    versions: Any
    mixed_versions: bool


def load_family(root: str | Path) -> FamilyData:
    """Read every finished member under ``root`` (a directory of member directories).

    Warns (``UserWarning``), listing the members per version, when they come from different code
    versions (thermolens version or git commit); raises ValueError when there is no member.
    """
    import pandas as pd

    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root} is not a directory; give the --out of `thermolens family train`")
    member_rows, head_frames, version_rows = [], [], []
    for path in sorted(p for p in root.iterdir() if (p / lm.MEMBER_JSON).is_file() and (p / HEADS).is_file()):
        meta = io.read_json(path / lm.MEMBER_JSON)
        cfg, mc, summary = meta["lm_config"], meta["model_config"], meta["summary"]
        row = {
            "member": path.name, "d": mc["d_model"], "N": mc["n_heads"], "d_head": mc["d_head"],
            "n_layers": mc["n_layers"], "L": cfg["seq_len"], "source": cfg["source"], "seed": cfg["seed"],
            "H": summary["entropy_rate"], **{k: summary[k] for k in ("val_loss", "val_bits", "n_params", "tokens",
                                                                    "steps", "wall_s", "ms_per_step")},
        }
        member_rows.append(row)
        heads = io.read_table(path / HEADS)
        for key in ("member", "d", "N", "L", "H", "seed", "source"):
            heads[key] = row[key]
        head_frames.append(heads)
        version_rows.append({"member": path.name, "version": meta.get("thermolens_version"),
                             "git_commit": meta.get("git_commit")})
    if not member_rows:
        raise ValueError(f"{root} holds no trained member (no */member.json with heads.parquet); "
                         "train one with `thermolens family train --out DIR`")
    versions = pd.DataFrame(version_rows)
    keys = pd.Series([f"{r['version']}@{r['git_commit']}" for r in version_rows], index=versions.index)
    mixed = keys.nunique() > 1
    if mixed:
        groups = sorted(((k, list(versions.loc[keys == k, "member"])) for k in keys.unique()), key=lambda g: -len(g[1]))
        listing = "; ".join(
            f"{k} ({len(names)} members: {', '.join(names[:8])}{f', and {len(names) - 8} more' if len(names) > 8 else ''})"
            for k, names in groups
        )
        warnings.warn(f"the family in {root} mixes members trained by different code versions (version@commit) — "
                      f"{listing}; FamilyData.versions lists every member", UserWarning, stacklevel=2)
    return FamilyData(root=root, members=pd.DataFrame(member_rows), heads=pd.concat(head_frames, ignore_index=True),
                      versions=versions, mixed_versions=bool(mixed))
