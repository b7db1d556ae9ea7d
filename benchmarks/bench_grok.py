"""Grokking benchmark: training-step time of our hooked model against the same model written with
plain PyTorch modules, and the cost of the thermometer at its default cadence.

Both models are the Nanda et al. 2023 configuration at p = 113, training fraction 0.3 (3,831
sequences, full batch), float32, one torch thread, AdamW; each measurement alternates the two
contenders step by step so that load from other users of the machine hits both alike.
"""

from __future__ import annotations

import math
import statistics
import time

import numpy as np
import torch
from torch import nn

from thermolens.data.modular import ModularTask, make_dataset
from thermolens.experiments.grokking import thermometer
from thermolens.experiments.grokking.train import GrokConfig
from thermolens.models.hooked import HookedTransformer, nanda2023

N_ROUNDS = 15


class PlainAttentionModel(nn.Module):
    """The same one-layer architecture from standard modules: nn.Embedding, nn.Linear, softmax."""

    def __init__(self, p: int, d_model: int = 128, n_heads: int = 4, d_head: int = 32, d_mlp: int = 512) -> None:
        super().__init__()
        self.n_heads, self.d_head = n_heads, d_head
        self.embed = nn.Embedding(p + 1, d_model)
        self.pos = nn.Parameter(torch.randn(3, d_model) * 0.8 / math.sqrt(d_model))
        self.qkv = nn.Linear(d_model, 3 * n_heads * d_head)
        self.out = nn.Linear(n_heads * d_head, d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, d_mlp), nn.ReLU(), nn.Linear(d_mlp, d_model))
        self.unembed = nn.Linear(d_model, p)
        self.register_buffer("causal", torch.tril(torch.ones(3, 3, dtype=torch.bool)))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens) + self.pos  # (batch, pos, d_model)
        b, n, _ = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.n_heads, self.d_head).permute(2, 0, 3, 1, 4)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.d_head)
        pattern = torch.softmax(scores.masked_fill(~self.causal, float("-inf")), dim=-1)
        x = x + self.out((pattern @ v).transpose(1, 2).reshape(b, n, -1))
        x = x + self.mlp(x)
        return self.unembed(x)  # (batch, pos, p)


def _stepper(model: nn.Module, forward, data):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1.0, betas=(0.9, 0.98))

    def step() -> float:
        start = time.perf_counter()
        out = forward(data.train_tokens)[:, -1]
        loss = nn.functional.cross_entropy(out.double(), data.train_labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - start

    return step


def main() -> str:
    torch.set_num_threads(1)
    data = make_dataset(ModularTask(p=113, train_fraction=0.3, seed=0))
    ours = HookedTransformer(nanda2023(113), seed=0)
    ours_full = HookedTransformer(nanda2023(113), seed=0)
    plain = PlainAttentionModel(113)
    steppers = {
        "ours (training path, answer position only)": _stepper(ours, lambda t: ours(t, last_only=True), data),
        "ours (all positions)": _stepper(ours_full, ours_full, data),
        "plain PyTorch modules (all positions)": _stepper(plain, plain, data),
    }
    times: dict[str, list[float]] = {name: [] for name in steppers}
    for _ in range(3):  # warm-up
        for step in steppers.values():
            step()
    for _ in range(N_ROUNDS):
        for name, step in steppers.items():
            times[name].append(step())
    med = {name: statistics.median(v) * 1e3 for name, v in times.items()}

    # thermometer: one reading on train + test inputs versus `every` training steps of the same model
    every = GrokConfig().every
    nulls = {
        "train": thermometer.null_draw(data.n_train, 1, 4, 3, seed=1),
        "test": thermometer.null_draw(data.n_test, 1, 4, 3, seed=2),
    }
    sweep_every, temps = GrokConfig().sweep_every, np.asarray(GrokConfig().sweep_temperatures)
    readings, sweeps, train_ms = [], [], []
    step = steppers["ours (training path, answer position only)"]
    for _ in range(5):
        start = time.perf_counter()
        thermometer.read(ours, data.train_tokens, data.train_labels, nulls["train"])
        thermometer.read(ours, data.test_tokens, data.test_labels, nulls["test"])
        readings.append((time.perf_counter() - start) * 1e3)
        start = time.perf_counter()
        thermometer.temperature_sweep(ours, data.test_tokens, temps)
        sweeps.append((time.perf_counter() - start) * 1e3)
        train_ms.append(statistics.median(step() for _ in range(3)) * 1e3)
    reading_ms, sweep_ms, step_ms = statistics.median(readings), statistics.median(sweeps), statistics.median(train_ms)
    overhead = (reading_ms / every + sweep_ms / sweep_every) / step_ms

    plain_ms = med["plain PyTorch modules (all positions)"]
    lines = [
        "## grok",
        "",
        "Training step of the Nanda et al. 2023 model at p = 113, training fraction 0.3 (3,831 sequences, full "
        f"batch), float32, 1 torch thread, AdamW; median of {N_ROUNDS} steps, contenders interleaved step by step.",
        "",
        "| contender | ms / step | ratio to plain PyTorch | target | pass |",
        "|---|---:|---:|---|---|",
    ]
    for name, ms in med.items():
        ratio = ms / plain_ms
        target = "<= 1.0 (no slower than plain PyTorch)" if name.startswith("ours") else "reference"
        ok = ("yes" if ratio <= 1.0 else "no") if name.startswith("ours") else "—"
        lines.append(f"| {name} | {ms:.1f} | {ratio:.2f} | {target} | {ok} |")
    lines += [
        "",
        "TransformerLens 2.18 was not measured: it pins numpy<2 and cannot live in the shared environment; the "
        "plain-PyTorch model above stands in as the peer.",
        "",
        f"Thermometer at its default cadence (a reading of train + test inputs every {every} steps, a C(T) sweep "
        f"every {sweep_every}):",
        "",
        "| quantity | value | target | pass |",
        "|---|---:|---|---|",
        f"| one reading (train 3,831 + test 8,938 sequences) | {reading_ms:.1f} ms | | |",
        f"| one temperature sweep ({temps.size} T, test inputs) | {sweep_ms:.1f} ms | | |",
        f"| training step (same run) | {step_ms:.1f} ms | | |",
        f"| overhead = (reading / {every} + sweep / {sweep_every}) / step | {100 * overhead:.1f} % | <= 5 % "
        f"| {'yes' if overhead <= 0.05 else 'no'} |",
        "",
        "The machine is shared with other engineers' jobs; absolute times vary with their load, the ratios "
        "less so because contenders are interleaved.",
    ]
    return "\n".join(lines)
