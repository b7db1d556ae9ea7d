"""Scan speed and memory on the bundled MiniLM (issue 2 targets).

- quenched scan, 64 temperatures, all 72 heads, 16,384 tokens: <= 2x one plain forward pass over the same
  tokens (same process); the naive way (one hooked forward pass per temperature) printed beside it;
- propagated scan at 16 temperatures: <= 1.2x the cost of 16 plain forward passes;
- peak memory (max RSS of a fresh process) of a 65,536-token quenched scan: < 4 GiB.
"""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np

N_TOKENS = 16384
N_TOKENS_PROPAGATED = 4096  # 16 full passes per token: a quarter of the corpus keeps the section short
REPEAT = 3  # interleaved runs of each timed figure
NAIVE_SAMPLE = 4  # temperatures actually timed for the naive baseline; the 64-T figure is scaled from them


def _plain_forward(loaded, tokens, batch_size: int) -> float:
    import torch

    start = time.perf_counter()
    with torch.inference_mode():
        for ids, mask in tokens.batches(batch_size):
            loaded.model(input_ids=ids, attention_mask=mask)
    return time.perf_counter() - start


def _naive_per_temperature(loaded, tokens, temperatures, batch_size: int) -> float:
    """One hooked forward pass per temperature, evaluating the ensemble at that temperature only."""
    import torch

    from thermolens import models, thermo

    start = time.perf_counter()
    with torch.inference_mode():
        for T in temperatures:
            beta = torch.tensor([1.0 / T], dtype=torch.float64)
            for ids, mask in tokens.batches(batch_size):
                captured = models.capture_logits(loaded, ids, mask)
                for layer, logits in captured.logits.items():
                    thermo.sequence_sums(logits, beta, captured.mask[layer])
    return time.perf_counter() - start


def _peak_memory_gib(n_tokens: int) -> float:
    code = (
        "import resource, thermolens as tl; from thermolens.experiments.scan.heads import ScanConfig;"
        f"tl.scan(None, None, config=ScanConfig(max_tokens={n_tokens}, n_boot=200));"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 2**20  # ru_maxrss is in KiB on Linux


def main() -> str:
    import torch

    from thermolens import models
    from thermolens.data import corpus
    from thermolens.experiments.scan.heads import DEFAULT_TEMPERATURES, ScanConfig, scan

    loaded = models.load_model(None)
    tokens = corpus.tokenize_corpus(loaded.tokenizer, [corpus.builtin_text()], seq_len=128, max_tokens=N_TOKENS)
    batch = 16
    # Warm-ups: the plain pass, and the scan (which loads the compiled ensemble kernel from
    # numba's disk cache).
    _plain_forward(loaded, tokens, batch)
    scan(loaded, None, config=ScanConfig(max_tokens=2 * batch * 128, batch_size=batch, n_boot=10))

    def sweep_time(res) -> float:
        return res.timings["sweep"] + res.timings["bootstrap_and_tables"]

    # The machine is shared and its speed drifts by tens of percent: plain and scan runs are
    # interleaved REPEAT times; the figures are the best of each (interference only ever slows a
    # run down) and the median ratio of neighbouring pairs is printed beside them.
    plains, scans = [], []
    for _ in range(REPEAT):
        plains.append(_plain_forward(loaded, tokens, batch))
        scans.append(scan(loaded, None, config=ScanConfig(max_tokens=N_TOKENS, batch_size=batch)))
    t_plain = min(plains)
    result = min(scans, key=sweep_time)
    t_scan_sweep = sweep_time(result)
    pair_ratio = float(np.median([sweep_time(r) / p for r, p in zip(scans, plains)]))

    sample = np.asarray(DEFAULT_TEMPERATURES)[:: len(DEFAULT_TEMPERATURES) // NAIVE_SAMPLE][:NAIVE_SAMPLE]
    t_naive = _naive_per_temperature(loaded, tokens, sample, batch) * len(DEFAULT_TEMPERATURES) / NAIVE_SAMPLE

    temps16 = tuple(float(t) for t in np.geomspace(0.25, 4.0, 16))
    small = corpus.tokenize_corpus(loaded.tokenizer, [corpus.builtin_text()], seq_len=128, max_tokens=N_TOKENS_PROPAGATED)
    plains16, props = [], []  # the baseline is timed as what it is: 16 plain passes in a row
    for _ in range(REPEAT):
        plains16.append(sum(_plain_forward(loaded, small, batch) for _ in temps16))
        props.append(sweep_time(scan(loaded, None, config=ScanConfig(
            max_tokens=N_TOKENS_PROPAGATED, batch_size=batch, temperatures=temps16, mode="propagated", n_boot=0))))
    t_plain16, t_prop = min(plains16), min(props)
    prop_pair_ratio = float(np.median([t / p for t, p in zip(props, plains16)]))

    peak = _peak_memory_gib(65536)
    rows = [
        ("plain forward pass, 16,384 tokens (sdpa)", f"{t_plain:.2f} s", "1.00x", "reference"),
        ("quenched scan, 64 T, 72 heads (incl. nulls + 200 bootstrap)", f"{t_scan_sweep:.2f} s",
         f"{t_scan_sweep / t_plain:.2f}x (pairs: {pair_ratio:.2f}x)",
         f"<= 2x (both): {'pass' if max(t_scan_sweep / t_plain, pair_ratio) <= 2 else 'FAIL'}"),
        ("  of which forward + capture", f"{result.timings['forward_and_capture']:.2f} s", "", ""),
        ("  of which ensemble sums (real + nulls)", f"{result.timings['thermo']:.2f} s", "", ""),
        ("  of which bootstrap + tables", f"{result.timings['bootstrap_and_tables']:.2f} s", "", ""),
        (f"naive: one hooked pass per T, 64 T (timed {NAIVE_SAMPLE}, scaled)", f"{t_naive:.1f} s",
         f"{t_naive / t_plain:.1f}x", "baseline"),
        (f"16 plain forward passes, {N_TOKENS_PROPAGATED:,} tokens each", f"{t_plain16:.2f} s", "", "reference below"),
        (f"propagated scan, 16 T, {N_TOKENS_PROPAGATED:,} tokens (capture + ensemble at each T)", f"{t_prop:.2f} s",
         f"{t_prop / t_plain16:.2f}x of 16 plain (pairs: {prop_pair_ratio:.2f}x)",
         f"<= 1.2x (both): {'pass' if max(t_prop / t_plain16, prop_pair_ratio) <= 1.2 else 'FAIL'}"),
        ("peak RSS, 65,536-token quenched scan (fresh process)", f"{peak:.2f} GiB", "",
         f"< 4 GiB: {'pass' if peak < 4 else 'FAIL'}"),
    ]
    lines = ["## scan (issue 2): bundled all-MiniLM-L6-v2, 6 x 12 heads, seq_len 128", "",
             f"torch threads: {torch.get_num_threads()}. Times exclude model loading and tokenization. Plain and "
             f"scan runs are interleaved {REPEAT} times: each time is the best of its {REPEAT}, and 'pairs' is "
             "the median ratio of neighbouring runs (the naive baseline is run once).", "",
             "| measurement | time | ratio | target |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines)
