"""The scan and the avalanche analysis at corpus scale on the bundled MiniLM (issue 18 targets).

- peak memory (max RSS of a fresh process) of the default quenched scan (64 T, 72 heads, 200 bootstrap
  replicates) flat in corpus length: 16k, 65k, 262k and 1M tokens, beside the per-sequence storage the
  scan had before ``bootstrap_blocks`` (262k tokens);
- the 1M-token scan's time as a ratio to plain forward passes over the same tokens (each in a fresh
  process, one after the other);
- a streamed scan (batches of 16) equal to a single-batch run over the same 16k tokens;
- ``thermolens avalanches`` at 262k and 1M tokens: time and peak memory.

The corpus beyond the built-in text (~110k MiniLM tokens) is the Python standard library's own source
files in sorted order: real, non-repeating text and code that every machine has offline.
"""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np

SIZES = (16_384, 65_536, 262_144, 1_048_576)
AVALANCHE_SIZES = (262_144, 1_048_576)
CHARS_PER_TOKEN = 8  # above MiniLM's WordPiece average on this text (~4-6): never too little text


def corpus_texts(n_tokens: int) -> list[str]:
    """The built-in text, then standard-library sources, until about ``n_tokens`` tokens' worth of characters."""
    from thermolens.data import corpus

    texts = [corpus.builtin_text()]
    need = n_tokens * CHARS_PER_TOKEN - len(texts[0])
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py")):
        if need <= 0:
            break
        if "test" in path.parts:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        texts.append(text)
        need -= len(text)
    return texts


_SCRIPT = """
import json, resource, sys, time
import torch
from benchmarks.bench_scale import corpus_texts
from thermolens import models
from thermolens.data import corpus
kind, n_tokens, extra = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
loaded = models.load_model(None)
texts = corpus_texts(n_tokens)
out = {}
if kind == "plain":
    tokens = corpus.tokenize_corpus(loaded.tokenizer, texts, seq_len=128, max_tokens=n_tokens)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for ids, mask in tokens.batches(16):
            loaded.model(input_ids=ids, attention_mask=mask)
    out = {"time": time.perf_counter() - t0, "n_tokens": tokens.n_tokens}
elif kind == "scan":
    from thermolens.experiments.scan.heads import ScanConfig, scan
    res = scan(loaded, texts, config=ScanConfig(max_tokens=n_tokens, **extra))
    t = res.timings
    out = {"time": t["sweep"] + t["bootstrap_and_tables"], "n_tokens": res.n_tokens, "timings": t,
           "T_star_median": res.summary()["T_star_median"]}
else:
    from thermolens.experiments.avalanches.measure import avalanches
    t0 = time.perf_counter()
    res = avalanches(loaded, texts, max_tokens=n_tokens)
    out = {"time": time.perf_counter() - t0 - res.timings.get("load_and_tokenize", 0.0), "timings": res.timings,
           "n_avalanches": int((res.cascades["source"] == "model").sum()), "tau": res.model.tau,
           "n_tokens": res.n_tokens}
out["peak_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
print(json.dumps(out))
"""


def _fresh(kind: str, n_tokens: int, **extra) -> dict:
    """Run one job in a fresh Python process; its figures and its peak RSS."""
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, kind, str(n_tokens), json.dumps(extra)],
                          capture_output=True, text=True, cwd=root)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} at {n_tokens} tokens failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _single_batch_difference(n_tokens: int = 16_384) -> tuple[float, float]:
    """Largest relative differences of the curves and of T* between batches of 16 and one batch of everything."""
    from thermolens import models
    from thermolens.experiments.scan.heads import ScanConfig, scan

    loaded = models.load_model(None)
    texts = corpus_texts(n_tokens)
    streamed = scan(loaded, texts, config=ScanConfig(max_tokens=n_tokens, batch_size=16))
    whole = scan(loaded, texts, config=ScanConfig(max_tokens=n_tokens, batch_size=n_tokens // 128))
    curves = max(float(np.max(np.abs(streamed.curves[c] - whole.curves[c]) / (np.abs(whole.curves[c]) + 1e-12)))
                 for c in ("F", "U", "S", "C"))
    t_star = float(np.max(np.abs(streamed.heads["T_star"] / whole.heads["T_star"] - 1)))
    return curves, t_star


def main() -> str:
    import torch

    scans = {n: _fresh("scan", n) for n in SIZES}
    per_sequence = _fresh("scan", SIZES[2], bootstrap_blocks=10**9)
    plain = _fresh("plain", SIZES[-1])
    big = scans[SIZES[-1]]
    curves_diff, t_star_diff = _single_batch_difference()
    aval = {n: _fresh("avalanches", n) for n in AVALANCHE_SIZES}

    peaks = [scans[n]["peak_gib"] for n in SIZES]
    flat = max(peaks) - min(peaks)
    rows = [(f"quenched scan, {scans[n]['n_tokens']:,} tokens", f"{scans[n]['time']:.1f} s",
             f"{scans[n]['peak_gib']:.2f} GiB", "") for n in SIZES]
    rows[-1] = (*rows[-1][:3], f"flat: spread {flat:.2f} GiB over 64x the tokens: {'pass' if flat < 0.5 else 'FAIL'}")
    rows.append((f"  before (one bootstrap unit per sequence), {per_sequence['n_tokens']:,} tokens",
                 f"{per_sequence['time']:.1f} s", f"{per_sequence['peak_gib']:.2f} GiB", "the old storage"))
    ratio = big["time"] / plain["time"]
    rows.append((f"plain forward passes, {plain['n_tokens']:,} tokens (sdpa, batches of 16)", f"{plain['time']:.1f} s",
                 f"{plain['peak_gib']:.2f} GiB", "reference"))
    rows.append((f"1M-token scan / plain passes over the same tokens", f"{ratio:.2f}x", "",
                 f"<= 2x: {'pass' if ratio <= 2 else 'FAIL'}"))
    rows.append(("  of which forward + capture / ensemble sums / bootstrap + tables",
                 " / ".join(f"{big['timings'][k]:.1f} s" for k in ("forward_and_capture", "thermo",
                                                                     "bootstrap_and_tables")), "", ""))
    rows.append(("streamed (batches of 16) vs one batch, 16,384 tokens: max relative difference of F, U, S, C / of T*",
                 f"{curves_diff:.1e} / {t_star_diff:.1e}", "", f"float tolerance: {'pass' if curves_diff < 1e-9 else 'FAIL'}"))
    for n in AVALANCHE_SIZES:
        a = aval[n]
        rows.append((f"avalanches (default job), {a['n_tokens']:,} tokens: {a['n_avalanches']:,} avalanches, tau {a['tau']:.3f}",
                     f"{a['time']:.1f} s", f"{a['peak_gib']:.2f} GiB", ""))
    lines = ["## scale (issue 18): the bundled all-MiniLM-L6-v2 on a million tokens, 2 cores", "",
             f"torch threads: {torch.get_num_threads()}. Every row but the single-batch check runs in a fresh "
             "process (peak = its max RSS, model and tokenizer included); times exclude model loading and "
             "tokenization. Corpus: the built-in text, then the standard library's sources. Scan defaults: "
             "64 T, 72 heads, nulls, 200 bootstrap replicates over at most 512 blocks of sequences.", "",
             "| measurement | time | peak RSS | target |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines)
