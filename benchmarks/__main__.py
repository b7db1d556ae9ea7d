"""Run every ``benchmarks/bench_*.py`` and write ``benchmarks/RESULTS.md``.

Each benchmark module defines ``main() -> str`` returning a Markdown section (a ``## `` heading, a
table with our figure beside the peer's figure from the same run, and the target). Ratios, not
absolute times, are what the targets are stated in: the machine is shared and noisy.

    python -m benchmarks                 # all
    python -m benchmarks stats scan      # only bench_stats.py and bench_scan.py
"""

from __future__ import annotations

import datetime as dt
import importlib
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def machine_line() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu}; {os.cpu_count()} cores; {gpu}; Python {platform.python_version()}; "
        f"torch {torch.__version__}; {platform.system()} {platform.release()}"
    )


def _sections(text: str) -> dict[str, str]:
    sections = {}
    for chunk in text.split("\n<!-- bench:")[1:]:
        key, _, body = chunk.partition(" -->\n")
        sections[key] = body.rstrip() + "\n"
    return sections


def main(argv: list[str]) -> None:
    names = argv or sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))
    out = HERE / "RESULTS.md"
    fresh: dict[str, str] = {}
    for name in names:
        module = importlib.import_module(f"benchmarks.bench_{name}")
        start = time.perf_counter()
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        body = module.main()
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        fresh[name] = (
            f"{body.rstrip()}\n\n_Run {stamp} on: {machine_line()} "
            f"({time.perf_counter() - start:.0f} s for this section)._\n"
        )
        print(f"[bench] {name} done", file=sys.stderr, flush=True)
    # Sections of benchmarks not re-run this time are kept, read only now: the file may have changed
    # while the benchmarks ran.
    sections = _sections(out.read_text()) if out.exists() else {}
    sections.update(fresh)
    text = "# Benchmark results\n\nWritten by `make bench` (`python -m benchmarks`). Each section states its machine and date;\npeer figures come from the same run.\n"
    for key in sorted(sections):
        text += f"\n<!-- bench:{key} -->\n{sections[key]}"
    out.write_text(text)
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
