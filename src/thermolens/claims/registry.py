"""The claims of the seed papers, by their fixed ids (scripts and ``--only`` rely on these)."""

from __future__ import annotations

import importlib

from thermolens.claims.base import Claim

__all__ = ["CLAIM_IDS", "all_claims", "select"]

CLAIM_IDS = (
    "theorem1", "theorem2", "theorem3", "detect-critical-point", "critical-training",
    "kim-canonical-ensemble", "kim-precursor",
    "mr-doi-onsager", "mr-noisy-transformer", "mr-hegselmann-krause", "mr-rates",
    "aubin-specialization", "aubin-gap",
)
# one module per group of claims sharing their studies; each exposes CLAIMS
_MODULES = ("scaling", "criticality", "training", "kim", "meanfield", "committee")


def all_claims() -> dict[str, Claim]:
    """Every claim, in the order of ``CLAIM_IDS``."""
    found: dict[str, Claim] = {}
    for name in _MODULES:
        for claim in importlib.import_module(f"thermolens.claims.{name}").CLAIMS:
            if claim.id in found:
                raise RuntimeError(f"claim id {claim.id!r} is defined twice")
            found[claim.id] = claim
    if set(found) != set(CLAIM_IDS):
        raise RuntimeError(f"claims defined {sorted(found)} differ from the fixed ids {list(CLAIM_IDS)}")
    return {cid: found[cid] for cid in CLAIM_IDS}


def select(only: str | list[str] | tuple[str, ...] | None) -> list[Claim]:
    """The claims named in ``only`` (comma-separated text or a list), all of them when empty."""
    claims = all_claims()
    if not only:
        return list(claims.values())
    ids = [s.strip() for s in only.split(",")] if isinstance(only, str) else [s.strip() for s in only]
    ids = [s for s in ids if s]
    unknown = [s for s in ids if s not in claims]
    if unknown:
        raise ValueError(f"unknown claim id(s) {', '.join(unknown)}; valid ids: {', '.join(CLAIM_IDS)}")
    return [claims[cid] for cid in CLAIM_IDS if cid in ids]
