"""Cost of capture and of temperature inside the forward pass, on the bundled MiniLM.

Issue 2 target: propagated mode at 16 temperatures costs no more than 1.2x the cost of 16 plain
forward passes. The peer beside each figure is the obvious alternative measured in the same run:
forcing transformers' eager attention (what ``output_attentions`` / a hooked softmax needs).
Variants are interleaved over rounds (order reversed every other round) and the median is
reported, because the machine is shared and noisy.
"""

from __future__ import annotations

import statistics
import time

N_TEMPERATURES = 16
SEQ_LEN, MAX_TOKENS, BATCH = 128, 512, 4
ROUNDS = 4


def main() -> str:
    import torch

    from thermolens.data.corpus import builtin_text, tokenize_corpus
    from thermolens.models import capture_logits, load_model, temperature
    from thermolens.models.attention import forward_kwargs

    torch.manual_seed(0)
    loaded = load_model()
    corpus = tokenize_corpus(loaded.tokenizer, builtin_text(), seq_len=SEQ_LEN, max_tokens=MAX_TOKENS)
    batches = [forward_kwargs(loaded, ids, mask) for ids, mask in corpus.batches(BATCH)]
    temps = torch.logspace(-1, 1, N_TEMPERATURES, dtype=torch.float64).tolist()
    per_head = torch.exp(torch.randn(loaded.n_layers, loaded.n_heads, dtype=torch.float64))

    def plain_pass():
        for kw in batches:
            loaded.base_model(**kw)

    def plain_16():
        for _ in temps:
            plain_pass()

    def heated_16(T_of=lambda t: t):
        for t in temps:
            with temperature(loaded, T_of(t)):
                plain_pass()

    def heated_16_eager():
        loaded.model.set_attn_implementation("eager")
        try:
            heated_16()
        finally:
            loaded.model.set_attn_implementation("sdpa")

    def heated_16_captured():
        for t in temps:
            with temperature(loaded, t):
                capture_pass()

    def capture_pass():
        for kw in batches:
            capture_logits(loaded, kw["input_ids"], kw["attention_mask"])

    def eager_attentions_pass():
        loaded.model.set_attn_implementation("eager")
        try:
            for kw in batches:
                loaded.base_model(**kw, output_attentions=True)
        finally:
            loaded.model.set_attn_implementation("sdpa")

    variants = {
        "plain16": plain_16,
        "heated16": heated_16,
        "heated16_per_head": lambda: heated_16(lambda t: per_head * t),
        "heated16_eager": heated_16_eager,
        "heated16_capture": heated_16_captured,
        "plain": plain_pass,
        "capture": capture_pass,
        "eager_attn": eager_attentions_pass,
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    with torch.no_grad():
        plain_pass()  # warm-up
        for r in range(ROUNDS):
            # Alternate the order, so a load change during a round does not favour one variant.
            order = list(variants.items()) if r % 2 == 0 else list(variants.items())[::-1]
            for name, fn in order:
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    t = {k: statistics.median(v) for k, v in times.items()}

    def ratio(a, b):
        return t[a] / t[b]

    target = 1.2
    rows = [
        ("16 temperatures, all heads, scalar T (sdpa kept)", "heated16", "plain16", target),
        ("16 temperatures, per-head T tensor (sdpa kept)", "heated16_per_head", "plain16", target),
        ("16 temperatures, forced eager attention (peer: the naive way)", "heated16_eager", "plain16", None),
        ("16 temperatures, all heads, logits of all 72 heads captured in each pass",
         "heated16_capture", "plain16", None),
        ("capture logits of all 72 heads, one pass", "capture", "plain", None),
        ("eager output_attentions=True, one pass (peer)", "eager_attn", "plain", None),
    ]
    lines = [
        "## models",
        "",
        f"Bundled all-MiniLM-L6-v2 (6 x 12 heads), built-in corpus, {corpus.n_tokens} tokens "
        f"({corpus.n_seq} x {SEQ_LEN}), batch {BATCH}, CPU float32, median of {ROUNDS} interleaved rounds.",
        "",
        "| what | time (s) | baseline | baseline time (s) | ratio | target | pass |",
        "|---|---:|---|---:|---:|---:|---|",
    ]
    for label, key, base, tgt in rows:
        r = ratio(key, base)
        verdict = "" if tgt is None else ("yes" if r <= tgt else "NO")
        base_label = "16 plain passes" if base == "plain16" else "1 plain pass"
        lines.append(
            f"| {label} | {t[key]:.2f} | {base_label} | {t[base]:.2f} | {r:.3f} | "
            f"{'' if tgt is None else f'<= {tgt}'} | {verdict} |"
        )
    lines += [
        "",
        "The machine has 2 cores shared with other jobs; single figures can move by 10-20% between runs.",
    ]
    return "\n".join(lines)
