"""Run a claims report: the pieces (study runs), then every claim's evaluation, then the verdicts.

Layout of a report directory (every file written atomically)::

    OUT/manifest.json             command, config, status (running / complete / failed / interrupted)
    OUT/pieces/<piece>/           one study run (job.json: its study and config; result.json: done)
    OUT/claims/<id>/              one claim's evaluation (result.json: its Evidence; its figure)
    OUT/claims.json               the verdict table: {"claims": [row, ...], "n_tests": ..., ...}
    OUT/report.html               one self-contained page (``thermolens.report.claims``)

Both stages are sweeps (``thermolens.runner.sweep``): a finished piece or evaluation is never redone,
so a report killed at any point (even ``kill -9``) continues where it stopped when run again on the
same directory, and pieces shared by several claims run once. A stored piece or evaluation whose
config differs from the one now asked for — another preset, another thermolens version — is
*stale*: :func:`stale_runs` names it and the differing keys, and it is recomputed.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thermolens import __version__, io
from thermolens.claims.base import PRESETS, Claim, Evidence, Piece
from thermolens.claims.registry import all_claims, select
from thermolens.claims.verdicts import ALPHA, decide
from thermolens.runner.study import INNER_EXECUTOR_ENV
from thermolens.runner.sweep import EXECUTORS, JOB, RESULT, Job, differing_keys, run_sweep, scoped_environ

__all__ = [
    "QUICK_BUDGET_S", "ClaimRow", "ClaimsConfig", "ClaimsReport", "Plan", "evaluate_job", "make_plan",
    "run_claims", "stale_runs",
]

SCHEMA = 1  # bump when the layout or the evidence format changes: stored evaluations are then stale
QUICK_BUDGET_S = 30 * 60
PIECES, CLAIMS = "pieces", "claims"
PIECE_FN = "thermolens.runner.study:run_piece"
EVALUATE_FN = "thermolens.claims.run:evaluate_job"


@dataclass(frozen=True)
class ClaimsConfig:
    """Which claims, under which preset, run how.

    ``executor`` runs the pieces: ``"inline"`` one after another in this process (each piece's own
    sweeps then use every core), ``"local"`` in worker processes, ``"ray"`` on a Ray cluster at
    ``address`` (the full preset's pieces are independent jobs). ``alpha`` is the family-wise level.
    """

    preset: str = "quick"
    only: tuple[str, ...] = ()
    executor: str = "inline"
    address: str | None = None
    workers: int | None = None
    alpha: float = ALPHA

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"preset {self.preset!r} is unknown; use one of {', '.join(PRESETS)}")
        if self.executor not in EXECUTORS:
            raise ValueError(f"executor {self.executor!r} is unknown; use one of {', '.join(EXECUTORS)}")
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha={self.alpha} must lie in (0, 1), e.g. 0.05")
        select(self.only)  # unknown ids are refused here, with the valid ones listed

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Plan:
    """The claims to run, their pieces (each once) and the estimated cost on 2 cores."""

    claims: tuple[Claim, ...]
    pieces: tuple[Piece, ...]
    est_s: float
    est_gib: float


def make_plan(config: ClaimsConfig) -> Plan:
    """Collect every selected claim's pieces under the preset; a shared piece must agree everywhere."""
    claims = tuple(select(config.only))
    pieces: dict[str, Piece] = {}
    for claim in claims:
        for piece in claim.pieces(config.preset):
            known = pieces.setdefault(piece.name, piece)
            if (known.study, known.config) != (piece.study, piece.config):
                raise RuntimeError(f"piece {piece.name!r} is defined differently by two claims (one is {claim.id!r})")
    est_s = sum(p.est_s for p in pieces.values())
    est_gib = max((p.est_gib for p in pieces.values()), default=0.0)
    if config.executor != "inline":
        parallel = max(1, min(len(pieces), config.workers or os.cpu_count() or 1))
        est_s /= parallel
        est_gib *= parallel if config.executor == "local" else 1
    return Plan(claims=claims, pieces=tuple(pieces.values()), est_s=est_s, est_gib=est_gib)


def _piece_job(piece: Piece) -> Job:
    return Job(name=piece.name, fn=PIECE_FN, config={"study": piece.study, "config": piece.config, "version": __version__})


def _claim_job(claim: Claim, preset: str) -> Job:
    # the pieces' own configs are part of the evaluation's: a recomputed piece makes it stale too
    pieces = {p.name: {"study": p.study, "config": p.config} for p in claim.pieces(preset)}
    config = {"id": claim.id, "preset": preset, "pieces": pieces, "version": __version__, "schema": SCHEMA}
    return Job(name=claim.id, fn=EVALUATE_FN, config=config)


def _jobs(plan: Plan, preset: str) -> dict[str, list[Job]]:
    return {
        PIECES: [_piece_job(p) for p in plan.pieces],
        CLAIMS: [_claim_job(c, preset) for c in plan.claims],
    }


def stale_runs(plan: Plan, preset: str, out: str | Path) -> dict[str, list[str]]:
    """Finished pieces and evaluations in ``out`` that will be recomputed: ``{"stage/name": keys}``.

    A stored run is stale when its stored config differs from the one the plan asks for (another
    preset, another thermolens version, a changed claim definition).
    """
    out = Path(out)
    stale: dict[str, list[str]] = {}
    for stage, jobs in _jobs(plan, preset).items():
        for job in jobs:
            run_dir = out / stage / job.name
            if (run_dir / RESULT).is_file() and (run_dir / JOB).is_file():
                stored = io.read_json(run_dir / JOB).get("config", {})
                differ = differing_keys(stored, io.to_jsonable(job.config))
                if differ:
                    stale[f"{stage}/{job.name}"] = differ
    return stale


def evaluate_job(config: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Sweep-job function of the second stage: one claim's evidence from its finished pieces.

    ``run_dir`` is ``OUT/claims/<id>``; the pieces lie in ``OUT/pieces/<name>``.
    """
    claim = all_claims()[config["id"]]
    root = Path(run_dir).parent.parent / PIECES
    pieces = {name: root / name for name in config["pieces"]}
    evidence = claim.evaluate(config["preset"], pieces, Path(run_dir))
    if not isinstance(evidence, Evidence):
        raise TypeError(f"claim {claim.id!r} returned {type(evidence).__name__}, not Evidence")
    return evidence.to_dict()


@dataclass(frozen=True)
class ClaimRow:
    """One row of the verdict table (the keys of ``claims.json``)."""

    id: str
    source: str
    statement: str
    verdict: str
    effect: float | None
    effect_label: str
    ci: tuple[float | None, float | None] | None
    null: float | None
    null_label: str
    null_ci: tuple[float | None, float | None] | None
    sensitivity: tuple[dict, ...]
    flipped_by: tuple[str, ...]
    n_tests: int
    test: str | None
    p_value: float | None
    p_adjusted: float | None
    reason: str
    note: str
    numbers: dict[str, Any]
    figure: str | None
    command: str
    run_dir: str
    pieces: dict[str, str]


@dataclass(frozen=True)
class ClaimsReport:
    """The verdict table of one report, with the family-wise control it was decided under."""

    preset: str
    alpha: float
    n_tests: int
    rows: tuple[ClaimRow, ...]
    failed: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return io.to_jsonable(dataclasses.asdict(self) | {"claims": [dataclasses.asdict(r) for r in self.rows]})

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame([dataclasses.asdict(r) for r in self.rows])

    def save(self, out: str | Path) -> Path:
        data = self.to_dict()
        data.pop("rows")
        return io.write_json(Path(out) / "claims.json", data)

    @classmethod
    def load(cls, out: str | Path) -> ClaimsReport:
        data = io.read_json(Path(out) / "claims.json")
        rows = tuple(ClaimRow(**row) for row in data.pop("claims"))
        return cls(rows=rows, **data)


def _failed_row(claim: Claim, preset: str, out: Path, error: str) -> ClaimRow:
    return ClaimRow(
        id=claim.id, source=claim.source, statement=claim.statement, verdict="inconclusive", effect=None,
        effect_label="", ci=None, null=None, null_label="", null_ci=None, sensitivity=(), flipped_by=(),
        n_tests=0, test=None, p_value=None, p_adjusted=None, reason="", note=f"could not be evaluated: {error}",
        numbers={}, figure=None, command=claim.command(preset), run_dir=str(out / CLAIMS / claim.id),
        pieces={p.name: str(out / PIECES / p.name) for p in claim.pieces(preset)},
    )


def _first_line(text: str) -> str:
    lines = [line for line in str(text).strip().splitlines() if line.strip()]
    return lines[-1] if lines else "unknown error"


def run_claims(
    config: ClaimsConfig,
    out: str | Path,
    *,
    progress: Callable[[str, int, int], None] | None = None,
) -> ClaimsReport:
    """Run (or finish) the report in ``out`` and write ``claims.json``; stale runs are recomputed.

    ``progress(stage, n_done, n_total)`` is called as pieces and evaluations finish. A piece or
    evaluation that fails (after one retry) leaves its claims "inconclusive" with the error, and is
    listed in ``failed``; the others still get their verdicts.
    """
    out = Path(out)
    plan = make_plan(config)
    jobs = _jobs(plan, config.preset)
    for key in stale_runs(plan, config.preset, out):
        shutil.rmtree(out / key)

    failed: dict[str, str] = {}
    with scoped_environ({INNER_EXECUTOR_ENV: "local" if config.executor == "inline" else "inline"}):
        pieces = run_sweep(
            jobs[PIECES], out / PIECES, executor=config.executor, workers=config.workers, address=config.address,
            progress=None if progress is None else (lambda done, total: progress(PIECES, done, total)),
        )
    failed.update({f"{PIECES}/{name}": _first_line(err) for name, err in pieces.failed.items()})
    ready = [
        job for job, claim in zip(jobs[CLAIMS], plan.claims)
        if all(p.name not in pieces.failed for p in claim.pieces(config.preset))
    ]
    evaluations = run_sweep(
        ready, out / CLAIMS, executor="inline",
        progress=None if progress is None else (lambda done, total: progress(CLAIMS, done, total)),
    )
    failed.update({f"{CLAIMS}/{name}": _first_line(err) for name, err in evaluations.failed.items()})

    evidence = {cid: Evidence.from_dict(summary) for cid, summary in evaluations.done.items()}
    verdicts = decide(evidence, config.alpha)
    rows = []
    for claim in plan.claims:
        if claim.id not in evidence:
            errors = [e for key, e in failed.items() if key == f"{CLAIMS}/{claim.id}"] + [
                f"piece {p.name} failed: {failed[f'{PIECES}/{p.name}']}"
                for p in claim.pieces(config.preset) if f"{PIECES}/{p.name}" in failed
            ]
            rows.append(_failed_row(claim, config.preset, out, "; ".join(errors) or "not evaluated"))
            continue
        ev, v = evidence[claim.id], verdicts[claim.id]
        rows.append(ClaimRow(
            id=claim.id, source=claim.source, statement=claim.statement, verdict=v.verdict, effect=ev.effect,
            effect_label=ev.effect_label, ci=ev.ci, null=ev.null, null_label=ev.null_label, null_ci=ev.null_ci,
            sensitivity=v.sensitivity, flipped_by=v.flipped_by, n_tests=v.n_tests,
            test=None if ev.decision is None else ev.decision.test, p_value=v.p_value, p_adjusted=v.p_adjusted,
            reason=ev.reason, note=v.note, numbers=ev.numbers,
            figure=None if ev.figure is None else str(out / CLAIMS / claim.id / ev.figure),
            command=claim.command(config.preset), run_dir=str(out / CLAIMS / claim.id),
            pieces={p.name: str(out / PIECES / p.name) for p in claim.pieces(config.preset)},
        ))
    n_primary = sum(v.p_adjusted is not None for v in verdicts.values())  # the Holm family
    report = ClaimsReport(preset=config.preset, alpha=config.alpha, n_tests=n_primary, rows=tuple(rows), failed=failed)
    report.save(out)
    return report
