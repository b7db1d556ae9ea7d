"""What a claim is, and the evidence it returns.

A :class:`Claim` names the study runs it needs under a preset (its :class:`Piece` s, each a
``(study, config)`` pair run through the study contract of ``thermolens.runner.study``) and an
``evaluate`` function that turns the finished pieces into :class:`Evidence`. Evidence is not yet a
verdict: the report controls the family-wise error over all claims (Holm), so a claim hands over its
primary hypothesis test as a :class:`Decision` — a p-value and the verdict each outcome means — and
the analyst's alternative choices as :class:`Variant` s decided at the same level. A verdict that
flips within the variants becomes "inconclusive" (``thermolens.claims.verdicts``).

Claims whose content is an identity or a closed-form computation (no sampling) carry a fixed
``verdict`` and no decision; they add no test to the Holm family.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "PRESETS", "VERDICTS", "Claim", "Decision", "Evidence", "Piece", "Variant",
]

VERDICTS = ("supported", "not supported", "contradicted", "inconclusive")
PRESETS = ("quick", "full")


def _check_verdict(value: str | None, what: str) -> None:
    if value is not None and value not in VERDICTS:
        raise ValueError(f"{what}={value!r} is not a verdict; use one of {VERDICTS}")


def _finite_or_none(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else float(x)


@dataclass(frozen=True)
class Piece:
    """One study run a claim needs: ``study`` (``"module:STUDY"``) on ``config`` (JSON values).

    ``name`` is unique in a report; two claims that need the same run name the same piece with the
    same config, and it runs once. ``est_s`` (seconds on 2 cores) and ``est_gib`` (peak memory) are
    the estimates checked before a report starts.
    """

    name: str
    study: str
    config: dict[str, Any]
    est_s: float
    est_gib: float = 1.0


@dataclass(frozen=True)
class Decision:
    """The primary hypothesis test of a claim.

    ``test`` says in one line what is tested and how (``"H0: alpha_k = 0, two-sided bootstrap over
    members"``); ``p_value`` is its p-value; the verdict is ``if_rejected`` when the Holm-adjusted
    test rejects at the report's level and ``if_not_rejected`` otherwise.
    """

    test: str
    p_value: float
    if_rejected: str
    if_not_rejected: str

    def __post_init__(self) -> None:
        if not 0.0 <= self.p_value <= 1.0 or math.isnan(self.p_value):
            raise ValueError(f"p_value={self.p_value} of '{self.test}' must lie in [0, 1]")
        _check_verdict(self.if_rejected, "if_rejected")
        _check_verdict(self.if_not_rejected, "if_not_rejected")


@dataclass(frozen=True)
class Variant:
    """The claim re-evaluated under one reasonable alternative choice of the analyst.

    Either a test (``p_value`` with ``if_rejected`` / ``if_not_rejected``, decided at the level the
    primary test met in Holm's procedure) or a fixed ``verdict`` (closed-form claims).
    """

    choice: str
    effect: float | None = None
    p_value: float | None = None
    if_rejected: str | None = None
    if_not_rejected: str | None = None
    verdict: str | None = None

    def __post_init__(self) -> None:
        for name in ("if_rejected", "if_not_rejected", "verdict"):
            _check_verdict(getattr(self, name), name)
        if (self.p_value is None) == (self.verdict is None):
            raise ValueError(f"variant '{self.choice}' needs exactly one of p_value or verdict")
        if self.p_value is not None and (self.if_rejected is None or self.if_not_rejected is None):
            raise ValueError(f"variant '{self.choice}' has a p_value but not both if_rejected and if_not_rejected")
        object.__setattr__(self, "effect", _finite_or_none(self.effect))


@dataclass(frozen=True)
class Evidence:
    """What one claim measured, before the report's multiple-comparison control.

    ``effect`` (with its ``ci``) is the claim's headline quantity, labelled; ``null`` (with
    ``null_ci``) is the same quantity on a null model or the value the claim predicts, labelled.
    Exactly one of ``decision`` and ``verdict`` is set. ``needs_full`` (text: what the full preset
    would run) makes the row "inconclusive: needs the full preset" whatever the numbers say.
    ``numbers`` holds further headline values; ``figure`` a PNG file name inside the claim's
    directory; ``reason`` one sentence on how the numbers lead to the verdict.
    """

    effect: float | None
    effect_label: str
    reason: str
    ci: tuple[float, float] | None = None
    null: float | None = None
    null_label: str = ""
    null_ci: tuple[float, float] | None = None
    decision: Decision | None = None
    verdict: str | None = None
    variants: tuple[Variant, ...] = ()
    numbers: dict[str, Any] = field(default_factory=dict)
    figure: str | None = None
    needs_full: str | None = None

    def __post_init__(self) -> None:
        _check_verdict(self.verdict, "verdict")
        if (self.decision is None) == (self.verdict is None):
            raise ValueError("evidence needs exactly one of decision (a test) or verdict (a closed-form claim)")
        object.__setattr__(self, "effect", _finite_or_none(self.effect))
        object.__setattr__(self, "null", _finite_or_none(self.null))
        for name in ("ci", "null_ci"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(_finite_or_none(v) for v in value))
        object.__setattr__(self, "variants", tuple(self.variants))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Evidence:
        data = dict(data)
        if data.get("decision") is not None:
            data["decision"] = Decision(**data["decision"])
        data["variants"] = tuple(Variant(**v) for v in data.get("variants") or ())
        for name in ("ci", "null_ci"):
            if data.get(name) is not None:
                data[name] = tuple(data[name])
        return cls(**data)


@dataclass(frozen=True)
class Claim:
    """One claim of a seed paper, testable under each preset.

    ``pieces(preset)`` lists the study runs it needs; ``evaluate(preset, pieces, claim_dir)`` reads
    them (``pieces`` maps piece name to its finished run directory), may write a figure into
    ``claim_dir``, and returns :class:`Evidence`. ``command(preset)`` is the shell command that
    reproduces the row on its own.
    """

    id: str
    source: str
    statement: str
    pieces: Callable[[str], list[Piece]]
    evaluate: Callable[[str, dict[str, Path], Path], Evidence]
    command: Callable[[str], str]
