"""A small GPT-style transformer of our own, with named hook points and temperature inside attention.

The model is config driven (``HookedConfig``): any number of layers, heads, widths and context
length, ReLU or GELU, LayerNorm on or off, causal or bidirectional attention. Its attention calls
``thermolens.thermo.boltzmann`` — the project's only softmax-at-temperature — with ``beta = 1/T``
per head, so a temperature is applied *inside* the forward pass and every head's pre-softmax logits
``l = q.k / sqrt(d_head)`` (DESIGN.md §3) can be read out by name.

Hook points (names from ``thermolens.models.names``; shapes in brackets)::

    embed                       (batch, pos, d_model)    token + position embedding
    blocks.{L}.resid.pre        (batch, pos, d_model)
    blocks.{L}.attn.logits      (batch, head, q, k)      pre-softmax logits, masked keys left as computed
    blocks.{L}.attn.pattern     (batch, head, q, k)      Boltzmann weights at the head's temperature
    blocks.{L}.attn.z           (batch, q, head, d_head) every head's output, before W_O mixes them
    blocks.{L}.attn.out         (batch, q, d_model)
    blocks.{L}.mlp.post         (batch, q, d_mlp)        after the activation
    blocks.{L}.resid.post       (batch, q, d_model)
    unembed                     (batch, q, d_vocab_out)

A hook is a function of the activation that returns a replacement (or ``None`` to keep it); hooks
are arguments of one forward call, so nothing stays attached to the model. ``run_with_cache`` also
returns ``blocks.{L}.attn.mask`` (q, k) booleans, True where the key is visible to the query.

``nanda2023(p)`` is the one-layer modular-arithmetic model of Nanda et al. 2023
(arXiv:2301.05217): d_model 128, 4 heads of 32, d_mlp 512, ReLU, no LayerNorm, learned positions,
3 positions, causal attention (TransformerLens ``HookedTransformer`` default, which they used),
weights drawn N(0, (0.8/sqrt(d_model))^2) and biases zero (TransformerLens "gpt2" init).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from thermolens.models.names import (
    attn_logits,
    attn_mask,
    attn_out,
    attn_pattern,
    attn_z,
    embed,
    mlp_post,
    resid_post,
    resid_pre,
    unembed,
)

Hook = Callable[[torch.Tensor], "torch.Tensor | None"]

ACTIVATIONS = ("relu", "gelu")

#: contexts up to this length compute attention by broadcasting instead of batched matmul
SMALL_CONTEXT = 16


# --------------------------------------------------------------------------------------------------
# config


@dataclass(frozen=True)
class HookedConfig:
    """Architecture of a ``HookedTransformer``.

    ``temperature`` is the attention temperature per head at which the model runs by default:
    a number (every head), ``n_heads`` numbers (every layer) or ``n_layers`` tuples of ``n_heads``.
    ``init_range`` is the std of the normal weight init; ``None`` means ``0.8 / sqrt(d_model)``.
    ``d_vocab_out`` ``None`` means ``d_vocab``.
    """

    n_layers: int = 1
    d_model: int = 128
    n_heads: int = 4
    d_head: int = 32
    d_mlp: int = 512
    n_ctx: int = 3
    d_vocab: int = 114
    d_vocab_out: int | None = 113
    act: str = "relu"
    layernorm: bool = False
    causal: bool = True
    temperature: float | tuple = 1.0
    init_range: float | None = None

    def __post_init__(self) -> None:
        for name in ("n_layers", "d_model", "n_heads", "d_head", "d_mlp", "n_ctx", "d_vocab"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} must be a positive integer")
        if self.d_vocab_out is not None and (not isinstance(self.d_vocab_out, int) or self.d_vocab_out < 1):
            raise ValueError(f"d_vocab_out={self.d_vocab_out!r} must be a positive integer or None")
        if self.act not in ACTIVATIONS:
            raise ValueError(f"act={self.act!r} is unknown; choose one of {', '.join(ACTIVATIONS)}")
        if self.init_range is not None and not self.init_range > 0:
            raise ValueError(f"init_range={self.init_range} must be positive (or None for 0.8/sqrt(d_model))")
        temps = self.temperature_table()
        if not all(math.isfinite(t) and t > 0 for row in temps for t in row):
            raise ValueError(f"temperature={self.temperature!r} must be positive and finite for every head")

    @property
    def vocab_out(self) -> int:
        return self.d_vocab if self.d_vocab_out is None else self.d_vocab_out

    @property
    def std(self) -> float:
        return self.init_range if self.init_range is not None else 0.8 / math.sqrt(self.d_model)

    def temperature_table(self) -> tuple[tuple[float, ...], ...]:
        """The temperature as ``n_layers`` tuples of ``n_heads`` floats."""
        t = self.temperature
        if isinstance(t, (int, float)):
            return tuple((float(t),) * self.n_heads for _ in range(self.n_layers))
        t = tuple(t)
        if len(t) == self.n_heads and all(isinstance(v, (int, float)) for v in t):
            return tuple(tuple(float(v) for v in t) for _ in range(self.n_layers))
        if len(t) == self.n_layers and all(len(tuple(row)) == self.n_heads for row in t):
            return tuple(tuple(float(v) for v in row) for row in t)
        raise ValueError(
            f"temperature={self.temperature!r} must be a number, {self.n_heads} numbers (one per head), "
            f"or {self.n_layers} tuples of {self.n_heads}"
        )


def nanda2023(p: int = 113, **overrides) -> HookedConfig:
    """The one-layer modular-arithmetic transformer of Nanda et al. 2023 (arXiv:2301.05217)."""
    base = dict(
        n_layers=1, d_model=128, n_heads=4, d_head=32, d_mlp=512, n_ctx=3,
        d_vocab=p + 1, d_vocab_out=p, act="relu", layernorm=False, causal=True,
    )
    base.update(overrides)
    return HookedConfig(**base)


# --------------------------------------------------------------------------------------------------
# model


class _StopForward(Exception):
    """Raised inside a forward pass to end it once the activation asked for is cached."""


def _apply(hooks: Mapping[str, Hook] | None, cache: dict | None, name: str, x: torch.Tensor) -> torch.Tensor:
    if hooks is not None and name in hooks:
        replaced = hooks[name](x)
        if replaced is not None:
            x = replaced
    if cache is not None:
        cache[name] = x
    return x


class Block(nn.Module):
    """One pre-LN (or LN-free) transformer block: attention then MLP, both residual."""

    def __init__(self, cfg: HookedConfig, layer: int) -> None:
        super().__init__()
        self.cfg, self.layer = cfg, layer
        h, dh, d = cfg.n_heads, cfg.d_head, cfg.d_model
        self.W_QKV = nn.Parameter(torch.empty(d, 3 * h * dh))  # columns: (q|k|v, head, d_head)
        self.b_QKV = nn.Parameter(torch.zeros(3 * h * dh))
        self.W_O = nn.Parameter(torch.empty(h * dh, d))  # rows: (head, d_head)
        self.b_O = nn.Parameter(torch.zeros(d))
        self.W_in = nn.Parameter(torch.empty(d, cfg.d_mlp))
        self.b_in = nn.Parameter(torch.zeros(cfg.d_mlp))
        self.W_out = nn.Parameter(torch.empty(cfg.d_mlp, d))
        self.b_out = nn.Parameter(torch.zeros(d))
        self.ln1 = nn.LayerNorm(d) if cfg.layernorm else None
        self.ln2 = nn.LayerNorm(d) if cfg.layernorm else None

    # TransformerLens-shaped views, for analysis code
    @property
    def W_Q(self) -> torch.Tensor:  # (head, d_model, d_head)
        return self._split(0)

    @property
    def W_K(self) -> torch.Tensor:
        return self._split(1)

    @property
    def W_V(self) -> torch.Tensor:
        return self._split(2)

    def _split(self, which: int) -> torch.Tensor:
        h, dh = self.cfg.n_heads, self.cfg.d_head
        return self.W_QKV.view(self.cfg.d_model, 3, h, dh)[:, which].permute(1, 0, 2)

    def forward(
        self,
        x: torch.Tensor,  # (batch, pos, d_model), or (d_vocab, pos, d_model) when `tokens` is given
        beta: torch.Tensor,  # (head,) inverse temperatures
        *,
        last_only: bool,
        hooks: Mapping[str, Hook] | None,
        cache: dict | None,
        tokens: torch.Tensor | None = None,  # (batch, pos): x is the table of every (token, position)
    ) -> torch.Tensor:
        from thermolens.thermo import boltzmann

        cfg, L = self.cfg, self.layer
        h, dh, hd = cfg.n_heads, cfg.d_head, cfg.n_heads * cfg.d_head
        n_pos = x.shape[1]
        n_q = 1 if last_only else n_pos
        a_in = self.ln1(x) if self.ln1 is not None else x
        # Queries only where outputs are wanted; keys and values everywhere.
        q = torch.matmul(a_in[:, -n_q:], self.W_QKV[:, :hd]) + self.b_QKV[:hd]
        kv = torch.matmul(a_in, self.W_QKV[:, hd:]) + self.b_QKV[hd:]
        if tokens is not None:
            # The first layer sees only embed(token) + pos(position): project the small table once
            # and gather, instead of projecting every example (same numbers, far less work).
            pos = torch.arange(n_pos, device=x.device)
            q = q[tokens[:, -n_q:], pos[-n_q:] - (n_pos - n_q)]
            kv = kv[tokens, pos]
            x = x[tokens[:, -n_q:], pos[-n_q:]] if cache is None else x[tokens, pos]
            x = _apply(hooks, cache, embed(), x) if cache is not None else x
        x = _apply(hooks, cache, resid_pre(L), x)
        n_batch = q.shape[0]
        q = q.view(n_batch, n_q, h, dh).transpose(1, 2)  # (batch, head, q, d_head)
        kv = kv.view(n_batch, n_pos, 2, h, dh).permute(2, 0, 3, 1, 4)  # (2, batch, head, pos, d_head)
        k, v = kv[0], kv[1]
        # Short contexts: broadcast-multiply-and-sum beats batched matmul of tiny matrices (~2x on CPU).
        small = n_pos <= SMALL_CONTEXT
        if small:
            logits = (q.unsqueeze(3) * k.unsqueeze(2)).sum(-1) / math.sqrt(dh)  # (batch, head, q, k)
        else:
            logits = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(dh)  # (batch, head, q, k)
        q_pos = torch.arange(n_pos - n_q, n_pos, device=x.device)
        k_pos = torch.arange(n_pos, device=x.device)
        if cfg.causal:
            mask = k_pos[None, :] <= q_pos[:, None]  # (q, k), True where visible
        else:
            mask = torch.ones(n_q, n_pos, dtype=torch.bool, device=x.device)
        if cache is not None:
            cache[attn_mask(L)] = mask
        logits = _apply(hooks, cache, attn_logits(L), logits)
        if bool(torch.all(beta == beta[0])):
            pattern = boltzmann(logits, float(beta[0]), mask)
        else:  # per-head temperatures: fold each head's beta into its logits, then the T = 1 ensemble
            pattern = boltzmann(logits * beta.view(1, h, 1, 1).to(logits.dtype), 1.0, mask)
        pattern = _apply(hooks, cache, attn_pattern(L), pattern.to(v.dtype))
        z = (pattern.unsqueeze(-1) * v.unsqueeze(2)).sum(3) if small else torch.matmul(pattern, v)  # (batch, head, q, d_head)
        z = _apply(hooks, cache, attn_z(L), z.transpose(1, 2))  # (batch, q, head, d_head)
        z = z.reshape(n_batch, n_q, hd)  # (batch, q, head*d_head)
        attn = _apply(hooks, cache, attn_out(L), torch.matmul(z, self.W_O) + self.b_O)
        x = (x if x.shape[1] == n_q else x[:, -n_q:]) + attn
        m_in = self.ln2(x) if self.ln2 is not None else x
        pre = torch.matmul(m_in, self.W_in) + self.b_in
        post = torch.relu(pre) if cfg.act == "relu" else torch.nn.functional.gelu(pre)
        post = _apply(hooks, cache, mlp_post(L), post)  # (batch, q, d_mlp)
        x = x + torch.matmul(post, self.W_out) + self.b_out
        return _apply(hooks, cache, resid_post(L), x)


def _fill_head_temperature(module, state_dict, prefix, *args) -> None:
    """State dicts written before ``head_temperature`` existed load with the config's temperatures."""
    if prefix + "head_temperature" not in state_dict:
        state_dict[prefix + "head_temperature"] = torch.tensor(module.cfg.temperature_table(), dtype=torch.float32)


class HookedTransformer(nn.Module):
    """GPT-style transformer built from a ``HookedConfig``; see the module docstring for hooks.

    ``forward(tokens)`` maps ``(batch, pos)`` int64 tokens to ``(batch, pos, d_vocab_out)`` logits;
    with ``last_only=True`` only the final position is computed (``(batch, 1, d_vocab_out)``),
    which is all a next-token answer at the last position needs and saves most of the work.
    ``seed`` draws the initial weights (``None``: from the global generator).
    """

    def __init__(self, cfg: HookedConfig, *, seed: int | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.W_E = nn.Parameter(torch.empty(cfg.d_vocab, cfg.d_model))
        self.W_pos = nn.Parameter(torch.empty(cfg.n_ctx, cfg.d_model))
        self.blocks = nn.ModuleList(Block(cfg, layer) for layer in range(cfg.n_layers))
        self.ln_final = nn.LayerNorm(cfg.d_model) if cfg.layernorm else None
        self.W_U = nn.Parameter(torch.empty(cfg.d_model, cfg.vocab_out))
        self.b_U = nn.Parameter(torch.zeros(cfg.vocab_out))
        self._temperature: torch.Tensor | None = None  # set only inside `temperature(...)` blocks
        # The operating temperature of every head, (layer, head): model state, saved with the weights,
        # so a temperature steered during training (thermolens.optim) stays with the model.
        self.register_buffer("head_temperature", torch.tensor(cfg.temperature_table(), dtype=torch.float32))
        self.register_load_state_dict_pre_hook(_fill_head_temperature)
        generator = torch.Generator().manual_seed(int(seed)) if seed is not None else None
        with torch.no_grad():
            for name, param in self.named_parameters():
                if name.rsplit(".", 1)[-1].startswith("W_"):
                    param.copy_(torch.randn(param.shape, generator=generator) * cfg.std)

    # ---- temperature -----------------------------------------------------------------------------

    def default_temperature(self) -> torch.Tensor:
        """``(n_layers, n_heads)`` operating temperatures: the config's, unless steered since
        (the ``head_temperature`` buffer)."""
        return self.head_temperature

    def _temperature_tensor(self, temperature) -> torch.Tensor:
        cfg = self.cfg
        if temperature is None:
            return self._temperature if self._temperature is not None else self.default_temperature()
        t = torch.as_tensor(temperature, dtype=torch.float32, device=self.W_E.device)
        if t.ndim == 0:
            t = t.expand(cfg.n_layers, cfg.n_heads)
        elif t.shape == (cfg.n_heads,):
            t = t.expand(cfg.n_layers, cfg.n_heads)
        if t.shape != (cfg.n_layers, cfg.n_heads):
            raise ValueError(
                f"temperature of shape {tuple(t.shape)} does not fit the model; give a number, "
                f"{cfg.n_heads} values or an ({cfg.n_layers}, {cfg.n_heads}) table"
            )
        if not torch.all(torch.isfinite(t) & (t > 0)):
            raise ValueError("every attention temperature must be positive and finite")
        return t

    @contextlib.contextmanager
    def temperature(self, temperature) -> Iterator[HookedTransformer]:
        """Run every forward call inside the block at attention temperature ``T`` (per head)."""
        previous = self._temperature
        self._temperature = self._temperature_tensor(temperature)
        try:
            yield self
        finally:
            self._temperature = previous

    # ---- forward ---------------------------------------------------------------------------------

    def forward(
        self,
        tokens: torch.Tensor,  # (batch, pos) int64
        *,
        temperature=None,
        last_only: bool = False,
        hooks: Mapping[str, Hook] | None = None,
        cache: dict | None = None,
    ) -> torch.Tensor:
        cfg = self.cfg
        if tokens.ndim != 2 or tokens.shape[1] > cfg.n_ctx:
            raise ValueError(
                f"tokens of shape {tuple(tokens.shape)} do not fit; give (batch, pos) with pos <= n_ctx={cfg.n_ctx}"
            )
        beta = 1.0 / self._temperature_tensor(temperature)  # (layer, head)
        n_batch, n_pos = tokens.shape
        use_table = n_batch > cfg.d_vocab and not (hooks and {embed(), resid_pre(0)} & set(hooks))
        if use_table:
            x = self.W_E[:, None, :] + self.W_pos[None, :n_pos]  # (d_vocab, pos, d_model)
        else:
            x = _apply(hooks, cache, embed(), self.W_E[tokens] + self.W_pos[:n_pos])  # (batch, pos, d_model)
        for layer, block in enumerate(self.blocks):
            final = layer == cfg.n_layers - 1
            x = block(
                x, beta[layer], last_only=last_only and final, hooks=hooks, cache=cache,
                tokens=tokens if (use_table and layer == 0) else None,
            )
        if self.ln_final is not None:
            x = self.ln_final(x)
        logits = torch.matmul(x, self.W_U) + self.b_U  # (batch, q, d_vocab_out)
        return _apply(hooks, cache, unembed(), logits)

    def run_with_cache(
        self, tokens: torch.Tensor, *, temperature=None, last_only: bool = False,
        hooks: Mapping[str, Hook] | None = None, stop_after: str | None = None,
    ) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
        """Forward pass that also returns every named activation (and the attention masks).

        ``stop_after``: a hook name; the pass ends once that activation is computed (and cached),
        and the output logits are ``None`` — e.g. ``attn_logits(0)`` skips everything after the
        first attention scores.
        """
        cache: dict[str, torch.Tensor] = {}
        if stop_after is None:
            logits = self.forward(tokens, temperature=temperature, last_only=last_only, hooks=hooks, cache=cache)
            return logits, cache
        hooks = dict(hooks or {})
        inner = hooks.get(stop_after)

        def stop(x: torch.Tensor) -> None:
            replaced = inner(x) if inner is not None else None
            cache[stop_after] = x if replaced is None else replaced
            raise _StopForward

        hooks[stop_after] = stop
        try:
            self.forward(tokens, temperature=temperature, last_only=last_only, hooks=hooks, cache=cache)
        except _StopForward:
            return None, cache
        raise ValueError(f"stop_after={stop_after!r} is not a hook point this forward pass reaches")

    def weight_norm(self) -> float:
        """Euclidean norm of all parameters together (the quantity weight decay shrinks)."""
        with torch.no_grad():
            return float(torch.sqrt(sum((p.double() ** 2).sum() for p in self.parameters())))
