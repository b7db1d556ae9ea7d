"""Reduced-precision forward passes (issue 18): a scan of the bundled MiniLM in float32, bfloat16 and
float16 on the CPU.

For each dtype: the scan's time against the float32 scan (and its forward + capture part alone), the
largest error of the captured logits against float32 (absolute, and in units of the dtype's unit
roundoff u times the largest |logit|), and per head the relative difference of T* from the float32
scan, with how many of the reduced-precision T* fall inside the float32 run's bootstrap CI. The
peer is the float32 forward pass itself. The captured logits are computed in float32 from the
model's q and k whatever the dtype, and the ensemble sums accumulate in float64.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

N_TOKENS = 4096
SEQ_LEN, BATCH = 128, 16
ROUNDS = 2  # scans of each dtype, interleaved; the median time is reported
DTYPES = ("float32", "bfloat16", "float16")
UNIT_ROUNDOFF = {"float32": 2.0**-24, "bfloat16": 2.0**-8, "float16": 2.0**-11}


def _logit_errors(models, tokens) -> dict[str, tuple[float, float]]:
    """Per dtype: (max |l - l_fp32|, that over u * max |l_fp32|), over every head, layer and valid key."""
    import torch

    from thermolens.models import capture_logits

    worst = {name: [0.0, 0.0] for name in DTYPES}
    with torch.inference_mode():
        for ids, mask in tokens.batches(BATCH):
            ref = capture_logits(models["float32"], ids, mask)
            scale = max(ref.logits[layer][ref.mask[layer].expand_as(ref.logits[layer])].abs().max().item()
                        for layer in ref.layers)
            for name in DTYPES[1:]:
                low = capture_logits(models[name], ids, mask)
                for layer in ref.layers:
                    valid = ref.mask[layer].expand_as(ref.logits[layer])
                    error = (low.logits[layer] - ref.logits[layer])[valid].abs().max().item()
                    worst[name][0] = max(worst[name][0], error)
                    worst[name][1] = max(worst[name][1], error / (UNIT_ROUNDOFF[name] * scale))
    return {name: (a, b) for name, (a, b) in worst.items()}


def _cpu_16bit_instructions() -> list[str]:
    """The CPU's native 16-bit float arithmetic (AVX-512 BF16/FP16, AMX), from /proc/cpuinfo's flags."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return []
    return [flag for flag in ("avx512_bf16", "avx512_fp16", "amx_bf16", "amx_fp16") if flag in flags]


def main() -> str:
    import torch

    from thermolens.data.corpus import builtin_text, tokenize_corpus
    from thermolens.experiments.scan.heads import ScanConfig, scan
    from thermolens.models import load_model

    models = {name: load_model(None, dtype=name) for name in DTYPES}
    config = ScanConfig(max_tokens=N_TOKENS, seq_len=SEQ_LEN, batch_size=BATCH, n_boot=200)
    tokens = tokenize_corpus(models["float32"].tokenizer, builtin_text(), seq_len=SEQ_LEN, max_tokens=N_TOKENS)
    texts = [builtin_text()]
    scan(models["float32"], texts, config=ScanConfig(max_tokens=512, n_boot=0))  # warm-up (kernel compile)

    times: dict[str, list[float]] = {name: [] for name in DTYPES}
    forward: dict[str, list[float]] = {name: [] for name in DTYPES}
    heads = {}
    for r in range(ROUNDS):
        for name in DTYPES if r % 2 == 0 else DTYPES[::-1]:
            start = time.perf_counter()
            result = scan(models[name], texts, config=config)
            times[name].append(time.perf_counter() - start)
            forward[name].append(result.timings["forward_and_capture"])
            heads[name] = result.heads
    t = {name: statistics.median(v) for name, v in times.items()}
    f = {name: statistics.median(v) for name, v in forward.items()}
    errors = _logit_errors(models, tokens)

    ref = heads["float32"]
    n_heads = len(ref)
    lines = [
        "## precision (issue 18): scan of the bundled all-MiniLM-L6-v2 with a reduced-precision forward pass",
        "",
        f"{tokens.n_tokens} tokens ({tokens.n_seq} x {SEQ_LEN}), 64 temperatures, 72 heads, 200 bootstrap "
        f"resamples, CPU, torch threads: {torch.get_num_threads()}; median of {ROUNDS} interleaved scans per "
        "dtype. Logits are computed in float32 from the model's q and k in every case; the ensemble sums "
        "accumulate in float64. u is the dtype's unit roundoff (2^-8 bfloat16, 2^-11 float16).",
        "",
        "| forward dtype | scan time | vs float32 | forward + capture | vs float32 | max abs logit error "
        "| in u x max abs logit | max abs rel. T* diff | median abs rel. T* diff | T* inside float32 CI |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in DTYPES:
        rel = np.abs(heads[name]["T_star"].to_numpy() / ref["T_star"].to_numpy() - 1)
        t_star = heads[name]["T_star"]
        inside = int(((t_star >= ref["T_star_lo"]) & (t_star <= ref["T_star_hi"])).sum())
        err, err_u = errors[name] if name != "float32" else (0.0, 0.0)
        lines.append(
            f"| {name} | {t[name]:.1f} s | {t[name] / t['float32']:.2f}x | {f[name]:.1f} s | "
            f"{f[name] / f['float32']:.2f}x | {err:.3g} | {err_u:.2f} | {rel.max():.2e} | {np.median(rel):.2e} | "
            f"{inside}/{n_heads} |"
        )
    width = (np.log(ref["T_star_hi"]) - np.log(ref["T_star_lo"])).median()
    native = _cpu_16bit_instructions()
    cpu = (f"This CPU has native 16-bit arithmetic ({', '.join(native)})." if native else
           "This CPU has no native 16-bit arithmetic (no AVX-512 BF16/FP16, no AMX in /proc/cpuinfo): its "
           "kernels convert to float32 and back, so here the 16-bit formats save memory, not time.")
    lines += [
        "",
        f"The float32 run's median bootstrap CI is {width:.3f} wide in ln T*; {int(ref['at_edge'].sum())} of "
        f"{n_heads} float32 heads peak at the grid edge. {cpu} The thermodynamic sums cost the same in every "
        "case (they always run on float32 logits); only the forward pass changes.",
    ]
    return "\n".join(lines)
