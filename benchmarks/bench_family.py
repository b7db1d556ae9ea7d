"""Model-family benchmark: the quick family end to end, the training step of a member against the
same causal LM built from PyTorch's own ``nn.TransformerEncoderLayer``, and the projected cost of
the default family.

* Quick family: ``experiments.family.train_family(quick(), executor="local")`` on every core (the
  sweep runner, one torch thread per worker), from an empty directory; target < 10 minutes.
* Step time: one member architecture (1 layer, pre-LN, GELU, MLP 4d, causal) trained with AdamW on
  the same Markov windows, ours (``HookedTransformer``, whose attention goes through
  ``thermo.boltzmann``) against ``nn.TransformerEncoderLayer(norm_first=True)`` with a causal mask
  (the fused PyTorch attention path); one torch thread; the two contenders alternate step by step so
  load from other users of the machine hits both alike. Target: ours within 2x of the peer.
* Default family: every architecture of the default grid timed for a few steps (one thread),
  projected to the full budget x sources x seeds on 2 workers, plus the per-member overhead
  (validation and head scan) measured on the quick family. Target: < 2 hours.
"""

from __future__ import annotations

import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from thermolens.data.sources import parse_source
from thermolens.experiments.family import train as family
from thermolens.experiments.family import lm
from thermolens.models.hooked import HookedTransformer

N_ROUNDS = 12
STEP_SIZES = ((64, 4, 128), (128, 4, 256))  # (d, N, L)


class TorchCausalLM(nn.Module):
    """The member architecture from PyTorch modules: embeddings, one pre-LN encoder layer with a
    causal mask, final LayerNorm, unembedding."""

    def __init__(self, vocab: int, d: int, n_heads: int, n_ctx: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.randn(n_ctx, d) * 0.8 / math.sqrt(d))
        self.layer = nn.TransformerEncoderLayer(d, n_heads, dim_feedforward=4 * d, dropout=0.0, activation="gelu",
                                                batch_first=True, norm_first=True)
        self.ln = nn.LayerNorm(d)
        self.unembed = nn.Linear(d, vocab)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(n_ctx))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        n = tokens.shape[1]
        x = self.embed(tokens) + self.pos[:n]
        x = self.layer(x, src_mask=self.mask[:n, :n], is_causal=True)
        return self.unembed(self.ln(x))


def _stepper(model: nn.Module, windows: torch.Tensor):
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)

    def step() -> float:
        start = time.perf_counter()
        logits = model(windows[:, :-1])
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), windows[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - start

    return step


def step_times() -> list[tuple[str, float, float]]:
    source = parse_source("markov:h=1.5,order=2,vocab=16,seed=0")
    rows = []
    for d, n_heads, L in STEP_SIZES:
        windows = source.sample(4096 // L, L + 1, seed=0)
        config = lm.LMConfig(model={"n_layers": 1, "d_model": d, "n_heads": n_heads, "d_head": d // n_heads,
                                    "d_mlp": 4 * d, "act": "gelu"}, source=source.spec, seq_len=L)
        ours = _stepper(HookedTransformer(config.hooked_config(source.vocab_size), seed=0), windows)
        peer = _stepper(TorchCausalLM(source.vocab_size, d, n_heads, L), windows)
        ours(), peer()  # warm-up
        t_ours, t_peer = [], []
        for _ in range(N_ROUNDS):
            t_ours.append(ours())
            t_peer.append(peer())
        rows.append((f"d={d}, N={n_heads}, L={L}, {4096 // L}x{L} tokens", 1e3 * statistics.median(t_ours),
                     1e3 * statistics.median(t_peer)))
    return rows


def quick_family() -> tuple[family.FamilyResult, float]:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = family.train_family(family.quick(), Path(tmp) / "famq", executor="local")
        return result, time.perf_counter() - start


def default_projection(overhead_s: float, workers: int = 2) -> tuple[float, int, float]:
    """Projected seconds of the default family on ``workers`` cores, its member count, and the
    step-time sum it rests on."""
    config = family.default()
    plan = config.plan()
    seen: dict[tuple[int, int, int], float] = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        source = parse_source(config.sources[0])
        for m in plan.members:
            key = (m.d, m.N, m.L)
            if key in seen:
                continue
            lm_config = m.lm_config()
            windows = source.sample(lm_config.batch_size, m.L + 1, seed=0)
            step = _stepper(HookedTransformer(lm_config.hooked_config(source.vocab_size), seed=0), windows)
            step()
            seen[key] = statistics.median(step() for _ in range(4))
    finally:
        torch.set_num_threads(threads)
    steps = plan.members[0].lm_config().steps
    total = sum(seen[(m.d, m.N, m.L)] * steps + overhead_s for m in plan.members)
    return total / workers, len(plan.members), sum(seen.values())


def main() -> str:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        steps = step_times()
    finally:
        torch.set_num_threads(threads)
    result, wall = quick_family()
    members = result.members
    train_s = float(members["wall_s"].sum())
    per_member = wall * (os.cpu_count() or 1) / max(len(members), 1)
    overhead = max(per_member - train_s / max(len(members), 1), 0.0)  # validation, scan, process hand-off
    projected, n_default, _ = default_projection(overhead)

    lines = [
        "## family",
        "",
        "Quick family end to end (72 members, local sweep on every core) and the projected default family "
        f"({n_default} members); training step of one member against the same causal LM from "
        "`nn.TransformerEncoderLayer` (one thread, median of alternating steps). The machine is shared with "
        "other engineers: absolute times may be inflated by their load.",
        "",
        "| measurement | thermolens | peer (PyTorch `nn.TransformerEncoderLayer`) | target | result |",
        "|---|---|---|---|---|",
    ]
    for label, ours, peer in steps:
        ratio = ours / peer
        lines.append(f"| step time, {label} | {ours:.1f} ms | {peer:.1f} ms | <= 2x peer | "
                     f"{ratio:.2f}x {'pass' if ratio <= 2 else 'FAIL'} |")
    lines += [
        f"| quick family wall time ({len(members)} members, {os.cpu_count()} workers) | {wall:.0f} s | — | < 600 s | "
        f"{wall / 600:.2f} of budget {'pass' if wall < 600 else 'FAIL'} |",
        f"| quick family: mean member cost (core-seconds) | {per_member:.2f} s (training {train_s / len(members):.2f} s, "
        f"validation + scan + hand-off {overhead:.2f} s) | — | — | — |",
        f"| default family, projected on 2 workers | {projected / 60:.0f} min | — | < 120 min | "
        f"{projected / 7200:.2f} of budget {'pass' if projected < 7200 else 'FAIL'} |",
        "",
        "The default-family figure is a projection (each architecture's step time over 4 steps x its "
        f"{family.default().plan().members[0].lm_config().steps} steps x sources x seeds, plus the quick family's "
        "per-member overhead), not a run; the lead's full run records the real wall time.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(main())
