"""The model's own loss on a batch, so performance can be read off at every temperature.

* Causal LMs (GPT-2, Llama): next-token cross-entropy, mean over the predicted tokens (token ``t+1``
  predicted from tokens ``<= t``; padding is neither predicted nor a predictor).
* Masked LMs (BERT with its MLM head): the BERT pre-training objective (Devlin et al. 2018,
  arXiv:1810.04805, §3.1): 15% of the real, non-special tokens are chosen with a seeded generator;
  of those 80% become ``[MASK]``, 10% a uniformly random token of the vocabulary, 10% stay; the
  loss is the cross-entropy of the original token at the chosen positions. At least one position
  is always chosen. The same ``seed`` and batch give the same positions, so losses at different
  temperatures are paired.
* No head to score (e.g. the bundled MiniLM, a sentence-transformers export without the MLM head):
  ``None``.

Inside a :func:`thermolens.models.temperature` block the loss is that of the heated model.
"""

from __future__ import annotations

import torch

from thermolens.models.attention import check_batch, forward_kwargs
from thermolens.models.loading import LoadedModel

__all__ = ["model_loss", "mlm_corruption"]

MASK_PROB = 0.15  # Devlin et al. 2018, §3.1
P_MASK_TOKEN, P_RANDOM_TOKEN = 0.8, 0.1  # the remaining 0.1 keep the original token


def mlm_corruption(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    mask_token_id: int,
    vocab_size: int,
    special_ids: tuple[int, ...] = (),
    seed: int = 0,
    mask_prob: float = MASK_PROB,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's 80/10/10 corruption: ``(corrupted input_ids, labels)`` with labels -100 where unscored."""
    if not 0 < mask_prob <= 1:
        raise ValueError(f"mask_prob must be in (0, 1], got {mask_prob}")
    g = torch.Generator().manual_seed(int(seed))
    ids = input_ids.cpu()
    candidates = attention_mask.cpu().bool()
    if special_ids:
        candidates &= ~torch.isin(ids, torch.tensor(special_ids))
    if not bool(candidates.any()):
        raise ValueError("the batch has no real, non-special token to mask; pass longer sequences")
    draw = torch.rand(ids.shape, generator=g)
    chosen = candidates & (draw < mask_prob)
    if not bool(chosen.any()):  # a short batch: score the candidate with the smallest draw
        flat = torch.where(candidates, draw, torch.inf).argmin()
        chosen.view(-1)[flat] = True
    how = torch.rand(ids.shape, generator=g)
    random_tokens = torch.randint(vocab_size, ids.shape, generator=g)
    corrupted = ids.clone()
    corrupted[chosen & (how < P_MASK_TOKEN)] = mask_token_id
    swap = chosen & (how >= P_MASK_TOKEN) & (how < P_MASK_TOKEN + P_RANDOM_TOKEN)
    corrupted[swap] = random_tokens[swap]
    labels = ids.masked_fill(~chosen, -100)
    return corrupted, labels


def _mask_token_id(loaded: LoadedModel) -> int:
    tok = loaded.tokenizer
    token_id = getattr(tok, "mask_token_id", None) if tok is not None else None
    if token_id is None:
        raise ValueError(
            f"{loaded.name} has a masked-LM head but no tokenizer with a mask token; "
            "load it with its tokenizer (from_pretrained_model(model, tokenizer))"
        )
    return int(token_id)


def model_loss(
    loaded: LoadedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    *,
    seed: int = 0,
) -> float | None:
    """Masked-LM or next-token loss (nats per scored token) of one batch; ``None`` without an LM head."""
    if loaded.loss_kind is None:
        return None
    input_ids, attention_mask = check_batch(input_ids, attention_mask)
    if loaded.loss_kind == "causal":
        if not bool((attention_mask[:, 1:] * attention_mask[:, :-1]).any()):
            raise ValueError("next-token loss needs sequences of at least 2 real tokens")
        labels = input_ids.masked_fill(attention_mask == 0, -100)
    else:
        tok = loaded.tokenizer
        special = tuple(int(i) for i in getattr(tok, "all_special_ids", ()) or ())
        input_ids, labels = mlm_corruption(
            input_ids,
            attention_mask,
            mask_token_id=_mask_token_id(loaded),
            vocab_size=int(loaded.model.config.vocab_size),
            special_ids=special,
            seed=seed,
        )
    kwargs = forward_kwargs(loaded, input_ids, attention_mask)
    with torch.no_grad():
        out = loaded.model(**kwargs, labels=labels.to(kwargs["input_ids"].device))
    loss = float(out.loss)
    if loss != loss:  # NaN
        raise ValueError(
            f"the loss of {loaded.name} is NaN on this batch; check the inputs and the model dtype"
        )
    return loss
