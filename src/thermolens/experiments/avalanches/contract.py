"""The avalanche study under the study contract (``thermolens.runner.study``): one ``thermolens avalanches`` run.

The config is ``AvalancheConfig`` (site, lattice, thresholds, temperatures, ...) plus the two things the
command takes besides it: the model (``None``: the bundled all-MiniLM-L6-v2, or a local model directory)
and the corpus (``None``: the built-in English text, or text files / directories). ``run`` computes
``thermolens.experiments.avalanches.measure.avalanches`` and writes its result with
``AvalancheResult.save`` (every file atomic) beside ``study.json``; a run directory that already holds
the finished result of the same config is read back instead of recomputed, so a report resumed after
``kill -9`` never redoes a finished avalanche run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thermolens import io
from thermolens.experiments.avalanches.measure import AvalancheConfig, AvalancheResult
from thermolens.runner.study import Study, config_to_dict

__all__ = ["AvalancheStudyConfig", "STUDY", "load", "run", "summary"]

STUDY_JSON = "study.json"
RESULT_JSON = "avalanches.json"


@dataclass(frozen=True)
class AvalancheStudyConfig:
    """One avalanche run: ``avalanches`` (the command's config), ``model`` (None = the bundled MiniLM, or a
    local model directory) and ``corpus`` (None = the built-in text, or paths of text files / directories)."""

    avalanches: AvalancheConfig = field(default_factory=AvalancheConfig)
    model: str | None = None
    corpus: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.corpus is not None and not self.corpus:
            raise ValueError("corpus=() names no text; pass None for the built-in corpus or list text files")


def _finished(run_dir: Path, config: AvalancheStudyConfig) -> bool:
    """True when ``run_dir`` holds the finished result of exactly ``config``."""
    stored = run_dir / STUDY_JSON
    return (stored.is_file() and (run_dir / RESULT_JSON).is_file()
            and io.read_json(stored).get("config") == config_to_dict(config))


def run(config: AvalancheStudyConfig, run_dir: Path) -> AvalancheResult:
    """Compute the avalanche analysis of ``config`` into ``run_dir`` (or read it back when it is finished)."""
    from thermolens.data.corpus import read_texts
    from thermolens.experiments.avalanches.measure import avalanches

    run_dir = Path(run_dir)
    if _finished(run_dir, config):
        return AvalancheResult.load(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RESULT_JSON).unlink(missing_ok=True)  # a result of another config is not this one's
    io.write_json(run_dir / STUDY_JSON, {"study": "avalanches", "config": config_to_dict(config)})
    texts = None if config.corpus is None else read_texts(list(config.corpus))
    result = avalanches(config.model, texts, config=config.avalanches)
    result.save(run_dir)  # avalanches.json last: its presence marks the result complete
    return result


def load(run_dir: Path) -> AvalancheResult:
    """A finished avalanche run directory, read back."""
    return AvalancheResult.load(Path(run_dir))


def summary(result: AvalancheResult) -> dict[str, Any]:
    """The command's ``--json`` headline numbers, without the timings (they differ from run to run)."""
    return {k: v for k, v in result.summary().items() if k != "timings_s"}


def with_avalanches(config: AvalancheStudyConfig, **changes: Any) -> AvalancheStudyConfig:
    """``config`` with fields of its ``AvalancheConfig`` replaced (e.g. ``site="attn"``)."""
    return dataclasses.replace(config, avalanches=dataclasses.replace(config.avalanches, **changes))


STUDY = Study(name="avalanches", config_type=AvalancheStudyConfig, run=run, load=load, summary=summary)
