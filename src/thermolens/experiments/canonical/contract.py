"""Softmax attention as a canonical ensemble, checked on a real model (Kim, arXiv:2602.08216).

Kim reads scaled dot-product attention as a canonical ensemble with energy ``E_K = -q.k`` at the
temperature ``T_K = sqrt(d_k)``: the attention weights are Boltzmann weights
``p_j = exp(q.k_j / T_K) / Z``. thermolens uses the logits ``l = q.k / sqrt(d_k)`` with ``E = -l``
at ``T = 1`` (DESIGN.md §3), so ``E_K = sqrt(d_k) E``, ``T_K = sqrt(d_k) T`` and the weights, the
entropy and the specific heat are the same numbers. This study measures, for every query row of
every head of a model on a corpus, how far that identity holds in floating point:

* ``pattern_T1``: ``max |p_model - softmax(l)|`` — the model's own attention probabilities
  (``output_attentions`` of the eager implementation) against thermolens' ensemble at ``T = 1`` on
  the logits captured by ``thermolens.models.capture_logits``;
* ``kim_weights``: ``max |p_model - exp(q.k / T_K) / Z|`` with ``q``, ``k`` read from the model's
  own query and key projections (forward hooks, independent of the capture) and ``T_K = sqrt(d_k)``;
* ``energy_map``: ``max |q.k / sqrt(d_k) - l| / max |l|`` (the map of energies);
* ``free_energy``: ``max |F - (U - T S)| / max(1, max |F|)`` with ``F = -T log Z`` from
  ``thermolens.thermo.ensemble`` and ``U = sum_j p_j E_j``, ``S = -sum_j p_j log p_j`` summed
  directly from the weights (the model's own at ``T = 1``);
* ``heat_capacity``: ``max |C - beta^2 Var_p(E)| / max(1, C)`` (ensemble against the direct
  variance);
* ``heat_capacity_kim``: ``max |C - Var_p(E_K) / T_K^2| / max(1, C)`` (the same in Kim's units, at
  ``T_K = sqrt(d_k) T``);
* ``tstar_map``: per head, ``T*`` (peak of the row-averaged ``C(T)``, ``thermolens.thermo``) on
  our logits and ``T*_K`` on Kim's energies over the mapped grid: ``max |T*_K / (sqrt(d_k) T*) - 1|``;
* ``tstar_weights``: ``max |softmax(l / T*) - softmax(q.k / T*_K)|`` — both describe the same weights.

Beside the errors (``checks.parquet``, one row per model, dtype, layer and check) it records the
smallest specific heat met (``C >= 0``) and the resolution of the check: the error of
``kim_weights`` with ``T_K`` off ``sqrt(d_k)`` by ``kim_offset`` (``facts.parquet``); per head
``T*`` and ``T*_K`` go to ``tstar.parquet``. Models: the bundled MiniLM (or ``model``) on the
built-in corpus, and tiny random-weight models of ``random_architectures`` on random tokens, each
in every dtype of ``dtypes``. Captured logits are stored in float32 by the capture code, so checks
built on them (all but ``kim_weights``, which compares the model's probabilities with its own
``q.k``) are limited to float32 precision even for a float64 model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from thermolens import io
from thermolens.runner.study import Study, check_stored_config

__all__ = ["CHECKS", "STUDY", "CanonicalConfig", "CanonicalResult", "check_layer", "load", "run", "summary"]

CHECKS = ("pattern_T1", "kim_weights", "energy_map", "free_energy", "heat_capacity", "heat_capacity_kim",
          "tstar_map", "tstar_weights")
DTYPES = ("float32", "float64")
#: tiny random-weight architectures whose query/key projections the check can read
RANDOM_ARCHITECTURES = ("gpt2", "bert")
BUNDLED = "all-MiniLM-L6-v2"


def default_temperatures() -> tuple[float, ...]:
    return tuple(float(t) for t in np.geomspace(0.1, 10.0, 25))


@dataclass(frozen=True)
class CanonicalConfig:
    """What the identity is checked on.

    ``model``: a local model directory or Hugging Face name (None: the bundled all-MiniLM-L6-v2),
    fed ``max_tokens`` tokens of the built-in corpus in sequences of ``seq_len``;
    ``random_architectures``: tiny random-weight models (``"gpt2"``, ``"bert"``; weights drawn from
    ``seed`` with ``init_range`` so the logits spread over a few units) fed ``n_random_seq``
    random sequences of ``seq_len`` tokens; every model is checked in every dtype of ``dtypes``.
    ``thermo_temperatures``: where F, S, C are compared (must include 1, the model itself);
    ``temperatures``: the grid of the ``T*`` comparison; ``kim_offset``: the relative error of
    ``T_K`` whose effect on the weights is reported as the check's resolution.
    """

    model: str | None = None
    seq_len: int = 64
    max_tokens: int = 512
    dtypes: tuple[str, ...] = DTYPES
    random_architectures: tuple[str, ...] = ("gpt2",)
    n_random_seq: int = 4
    init_range: float = 0.2
    thermo_temperatures: tuple[float, ...] = (0.5, 1.0, 2.0)
    temperatures: tuple[float, ...] = field(default_factory=default_temperatures)
    kim_offset: float = 0.01
    seed: int = 0

    def __post_init__(self) -> None:
        bad = sorted(set(self.dtypes) - set(DTYPES))
        if not self.dtypes or bad:
            raise ValueError(f"dtypes={list(self.dtypes)}: use one or more of {DTYPES}")
        bad = sorted(set(self.random_architectures) - set(RANDOM_ARCHITECTURES))
        if bad:
            raise ValueError(f"random architectures {bad} are not supported; choose from {RANDOM_ARCHITECTURES}")
        if self.seq_len < 4 or self.max_tokens < self.seq_len or self.n_random_seq < 1:
            raise ValueError(f"seq_len={self.seq_len}, max_tokens={self.max_tokens}, n_random_seq={self.n_random_seq}: "
                             "need seq_len >= 4, max_tokens >= seq_len and at least one random sequence")
        if 1.0 not in self.thermo_temperatures or min(self.thermo_temperatures) <= 0:
            raise ValueError("thermo_temperatures must be positive and include 1.0 (the model's own operating point)")
        temps = np.asarray(self.temperatures, float)
        if temps.size < 5 or np.any(temps <= 0) or np.any(np.diff(temps) <= 0):
            raise ValueError("temperatures must be at least 5 positive, strictly ascending values, e.g. geomspace(0.1, 10, 25)")
        if not 0 < self.kim_offset < 1 or not self.init_range > 0:
            raise ValueError(f"kim_offset={self.kim_offset} must lie in (0, 1) and init_range={self.init_range} be > 0")


@dataclass(frozen=True)
class CanonicalResult:
    """``checks``: model, dtype, layer, check, error; ``facts``: per model, dtype and layer the
    smallest C met (``C_min``), the error with ``T_K`` off by ``kim_offset`` (``off_error``),
    ``d_head`` and ``n_rows``; ``tstar``: per head ``T_star``, ``T_star_kim``, ``at_edge``."""

    config: CanonicalConfig
    checks: Any  # pandas.DataFrame
    facts: Any  # pandas.DataFrame
    tstar: Any  # pandas.DataFrame


# --------------------------------------------------------------------------------------------------
# the models and what they are fed


def _random_model(architecture: str, config: CanonicalConfig):
    """A tiny random-weight model of ``architecture`` (2 layers, 4 heads of 8), eager attention."""
    import torch
    import transformers as tf

    from thermolens.models import from_pretrained_model

    torch.manual_seed(config.seed)
    if architecture == "gpt2":
        hf_config = tf.GPT2Config(vocab_size=101, n_embd=32, n_layer=2, n_head=4, n_positions=config.seq_len,
                                  initializer_range=config.init_range, attn_pdrop=0.0, resid_pdrop=0.0, embd_pdrop=0.0)
        model = tf.GPT2Model(hf_config)
    else:
        hf_config = tf.BertConfig(vocab_size=101, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=37, max_position_embeddings=config.seq_len,
                                  initializer_range=config.init_range, attention_probs_dropout_prob=0.0,
                                  hidden_dropout_prob=0.0)
        model = tf.BertModel(hf_config)
    model.eval()
    return from_pretrained_model(model, name=f"random-{architecture}")


def _inputs(loaded, config: CanonicalConfig, random: bool):
    """``(input_ids, attention_mask)``: random tokens for a random model, else the built-in corpus."""
    import torch

    from thermolens.data import corpus

    if random:
        generator = torch.Generator().manual_seed(config.seed)
        ids = torch.randint(0, int(loaded.model.config.vocab_size), (config.n_random_seq, config.seq_len),
                            generator=generator)
        return ids, torch.ones_like(ids)
    if loaded.tokenizer is None:
        raise ValueError(f"model {loaded.name!r} has no tokenizer; the check feeds it the built-in corpus")
    tokens = corpus.tokenize_corpus(loaded.tokenizer, [corpus.builtin_text()], seq_len=config.seq_len,
                                    max_tokens=config.max_tokens, model_max_length=loaded.max_positions)
    return tokens.input_ids, tokens.attention_mask


#: where each family's query and key vectors are read: module path of layer L, and how its output
#: splits into (q, k) of shape (batch, pos, n_heads * d_head)
_QK_SITES: dict[str, tuple[Callable[[int], tuple[str, ...]], Callable[..., tuple[Any, Any]]]] = {
    "bert": (lambda L: (f"encoder.layer.{L}.attention.self.query", f"encoder.layer.{L}.attention.self.key"),
             lambda outs: (outs[0], outs[1])),
    "gpt2": (lambda L: (f"h.{L}.attn.c_attn",), lambda outs: tuple(outs[0].chunk(3, dim=-1)[:2])),
}


def _own_attention(loaded, ids, mask) -> tuple[list[Any], list[tuple[Any, Any]]]:
    """The model's own attention probabilities ``(batch, head, q, k)`` per layer and its ``(q, k)``
    per layer ``(batch, head, pos, d_head)``, from one eager forward pass with forward hooks on the
    query/key projections (removed on return, also when the pass raises)."""
    import torch

    from thermolens.models.attention import check_batch, forward_kwargs

    if loaded.family not in _QK_SITES:
        raise ValueError(f"the q.k check reads the projections of {sorted(_QK_SITES)} models, not {loaded.family!r}")
    paths, split = _QK_SITES[loaded.family]
    base = loaded.base_model
    outputs: dict[tuple[int, int], Any] = {}
    handles = []

    def keep(key: tuple[int, int]):
        return lambda module, args, out: outputs.__setitem__(key, out.detach())

    try:
        for layer in range(loaded.n_layers):
            for i, path in enumerate(paths(layer)):
                handles.append(base.get_submodule(path).register_forward_hook(keep((layer, i))))
        ids, mask = check_batch(ids, mask)
        with torch.no_grad():
            out = base(**forward_kwargs(loaded, ids, mask), output_attentions=True)
    finally:
        for handle in handles:
            handle.remove()
    qk = []
    for layer in range(loaded.n_layers):
        q, k = split([outputs[(layer, i)] for i in range(len(paths(layer)))])
        n_batch, n_pos, _ = q.shape
        shape = (n_batch, n_pos, loaded.n_heads, loaded.d_head)
        qk.append((q.reshape(shape).transpose(1, 2), k.reshape(shape).transpose(1, 2)))
    return list(out.attentions), qk


# --------------------------------------------------------------------------------------------------
# one layer


def _direct(p, energy, beta: float) -> tuple[Any, Any, Any]:
    """``U = <E>``, ``S = -sum p log p`` and ``C = beta^2 Var_p(E)`` summed directly over keys."""
    import torch

    U = (p * energy).sum(-1)
    S = -torch.special.xlogy(p, p).sum(-1)
    C = beta**2 * (p * (energy - U[..., None]) ** 2).sum(-1)
    return U, S, C


def check_layer(logits, mask, p_model, q, k, config: CanonicalConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """Errors of every check (see the module docstring) on one layer, and its facts.

    ``logits`` ``(batch, head, q, k)`` as captured (``-inf`` at absent keys), ``mask`` bool
    broadcastable to it (True = the key exists), ``p_model`` the model's own probabilities, ``q``,
    ``k`` ``(batch, head, pos, d_head)``. Returns ``(errors, facts)``; facts hold ``C_min``,
    ``off_error``, ``d_head``, ``n_rows`` and per-head ``T_star``, ``T_star_kim``, ``at_edge``.
    """
    import torch

    from thermolens import thermo

    d_head = int(q.shape[-1])
    T_K = math.sqrt(d_head)
    l = logits.double()
    valid = torch.broadcast_to(mask, l.shape)
    p_model = p_model.double()
    qk = q.double() @ k.double().transpose(-1, -2)  # Kim's -E_K, (batch, head, q, k)
    l0 = torch.where(valid, l, torch.zeros_like(l))
    energy, energy_K = -l0, -torch.where(valid, qk, torch.zeros_like(qk))

    errors = {
        "pattern_T1": float((p_model - thermo.boltzmann(l, 1.0, mask)).abs().max()),
        "kim_weights": float((p_model - thermo.boltzmann(qk, 1.0 / T_K, mask)).abs().max()),
        "energy_map": float(((qk / T_K - l0).abs() * valid).max() / l0.abs().max().clamp_min(1e-300)),
    }
    off_error = float((p_model - thermo.boltzmann(qk, 1.0 / (T_K * (1.0 + config.kim_offset)), mask)).abs().max())

    temps = np.asarray(config.thermo_temperatures, float)
    ens = thermo.ensemble(l, 1.0 / temps, mask)  # fields (n_T, batch, head, q)
    e_free, e_heat, e_heat_K = 0.0, 0.0, 0.0
    for i, T in enumerate(temps):
        beta = 1.0 / T
        p = p_model if T == 1.0 else thermo.boltzmann(l, beta, mask)
        p_K = p_model if T == 1.0 else thermo.boltzmann(qk, beta / T_K, mask)
        U, S, C = _direct(p, energy, beta)
        _, _, C_K = _direct(p_K, energy_K, beta / T_K)
        F = ens.free_energy[i]
        e_free = max(e_free, float((F - (U - T * S)).abs().max() / max(1.0, float(F.abs().max()))))
        scale = ens.heat_capacity[i].abs().clamp_min(1.0)  # C relative to its size (at least 1)
        e_heat = max(e_heat, float(((ens.heat_capacity[i] - C).abs() / scale).max()))
        e_heat_K = max(e_heat_K, float(((ens.heat_capacity[i] - C_K).abs() / scale).max()))
    errors.update(free_energy=e_free, heat_capacity=e_heat, heat_capacity_kim=e_heat_K)

    grid = np.asarray(config.temperatures, float)
    ours = thermo.curves(thermo.sequence_sums(l, 1.0 / grid, mask, precision="float64"), grid)
    kims = thermo.curves(thermo.sequence_sums(qk, 1.0 / (T_K * grid), mask, precision="float64"), T_K * grid)
    point = thermo.critical_temperature(grid, ours.heat_capacity)  # per head
    point_K = thermo.critical_temperature(T_K * grid, kims.heat_capacity)
    t_star = torch.as_tensor(np.asarray(point.T_star, float))[None, :, None, None]
    t_star_K = torch.as_tensor(np.asarray(point_K.T_star, float))[None, :, None, None]
    errors["tstar_map"] = float(np.max(np.abs(np.asarray(point_K.T_star) / (T_K * np.asarray(point.T_star)) - 1.0)))
    errors["tstar_weights"] = float((thermo.boltzmann(l / t_star, 1.0, mask)
                                     - thermo.boltzmann(qk / t_star_K, 1.0, mask)).abs().max())
    facts = {
        "C_min": float(torch.nan_to_num(ens.heat_capacity, nan=math.inf).min()), "off_error": off_error,
        "d_head": d_head, "n_rows": int(valid.any(-1).sum()),
        "T_star": np.asarray(point.T_star, float), "T_star_kim": np.asarray(point_K.T_star, float),
        "at_edge": np.asarray(point.at_edge, bool),
    }
    return errors, facts


# --------------------------------------------------------------------------------------------------
# the study


def _models(config: CanonicalConfig) -> Iterator[tuple[str, Any, bool]]:
    """``(label, LoadedModel, is_random)`` of every model checked, loaded one at a time."""
    from thermolens.models import load_model

    yield (config.model or BUNDLED), load_model(config.model), False
    for architecture in config.random_architectures:
        yield f"random-{architecture}", _random_model(architecture, config), True


def run(config: CanonicalConfig, run_dir: Path) -> CanonicalResult:
    """Check every model in every dtype; write ``checks``, ``facts``, ``tstar`` tables and the config."""
    import pandas as pd
    import torch

    from thermolens.models import capture_logits

    run_dir = Path(run_dir)
    check_stored_config(config, run_dir, "canonical-ensemble check", name="config.json")
    checks, facts, tstar = [], [], []
    for label, loaded, random in _models(config):
        loaded.model.set_attn_implementation("eager")  # output_attentions: the model's own softmax
        ids, mask = _inputs(loaded, config, random)
        for dtype in config.dtypes:
            loaded.model.to(getattr(torch, dtype))
            p_model, qk = _own_attention(loaded, ids, mask)
            captured = capture_logits(loaded, ids, mask)
            for layer in range(loaded.n_layers):
                errors, fact = check_layer(captured.logits[layer], captured.mask[layer], p_model[layer],
                                           *qk[layer], config)
                key = {"model": label, "dtype": dtype, "layer": layer}
                checks.extend({**key, "check": name, "error": value} for name, value in errors.items())
                facts.append({**key, **{k: fact[k] for k in ("C_min", "off_error", "d_head", "n_rows")}})
                tstar.extend({**key, "head": h, "T_star": float(fact["T_star"][h]),
                              "T_star_kim": float(fact["T_star_kim"][h]), "at_edge": bool(fact["at_edge"][h])}
                             for h in range(len(fact["T_star"])))
    result = CanonicalResult(config=config, checks=pd.DataFrame(checks), facts=pd.DataFrame(facts),
                             tstar=pd.DataFrame(tstar))
    io.write_table(run_dir / "checks.parquet", result.checks)
    io.write_table(run_dir / "facts.parquet", result.facts)
    io.write_table(run_dir / "tstar.parquet", result.tstar)
    return result


def load(run_dir: Path) -> CanonicalResult:
    """A finished check read back (no computation)."""
    from thermolens.runner.study import config_from_dict

    run_dir = Path(run_dir)
    return CanonicalResult(
        config=config_from_dict(CanonicalConfig, io.read_json(run_dir / "config.json")),
        checks=io.read_table(run_dir / "checks.parquet"), facts=io.read_table(run_dir / "facts.parquet"),
        tstar=io.read_table(run_dir / "tstar.parquet"),
    )


def summary(result: CanonicalResult) -> dict[str, Any]:
    """Largest error per model and dtype over layers and checks, the smallest C, the resolution."""
    out: dict[str, Any] = {}
    for (model, dtype), part in result.checks.groupby(["model", "dtype"], sort=True):
        facts = result.facts[(result.facts["model"] == model) & (result.facts["dtype"] == dtype)]
        out[f"{model}/{dtype}"] = {
            "max_error": float(part["error"].max()),
            "worst_check": str(part.loc[part["error"].idxmax(), "check"]),
            "C_min": float(facts["C_min"].min()), "off_error": float(facts["off_error"].min()),
        }
    return out


STUDY = Study(name="canonical", config_type=CanonicalConfig, run=run, load=load, summary=summary)
