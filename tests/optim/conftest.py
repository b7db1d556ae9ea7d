import pytest
import torch

from thermolens.experiments.grokking.study import one_torch_thread
from thermolens.models.hooked import HookedConfig, HookedTransformer


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    with one_torch_thread():  # bitwise-reproducible CPU arithmetic
        yield


def tiny_lm(seed: int = 0) -> HookedTransformer:
    cfg = HookedConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, n_ctx=8, d_vocab=11,
                       d_vocab_out=None, layernorm=True)
    return HookedTransformer(cfg, seed=seed)


def lm_loss(model, tokens):
    logits = model(tokens[:, :-1])
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))


def tokens(n: int = 24, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 11, (n, 9), generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def make_lm():
    return tiny_lm


@pytest.fixture
def make_tokens():
    return tokens


@pytest.fixture
def loss_of():
    return lm_loss
