"""Models with hook points: loading, capturing attention logits, temperature inside the forward pass."""

from thermolens.models import names
from thermolens.models.hooked import HookedConfig, HookedTransformer, nanda2023
from thermolens.models.attention import CapturedLogits, capture_logits, temperature, temperature_table
from thermolens.models.activations import SITES, capture_activations
from thermolens.models.loading import (
    LoadedModel, bundled_model_dir, check_device, free_memory, from_pretrained_model, load_model, resolve_dtype,
    weight_bytes,
)
from thermolens.models.loss import mlm_corruption, model_loss
from thermolens.models.mha import MHALogits, mha_forward, mha_logits, mha_temperature

__all__ = [
    "names",
    "HookedConfig",
    "HookedTransformer",
    "nanda2023",
    "LoadedModel",
    "load_model",
    "from_pretrained_model",
    "bundled_model_dir",
    "resolve_dtype",
    "check_device",
    "weight_bytes",
    "free_memory",
    "CapturedLogits",
    "capture_logits",
    "temperature",
    "temperature_table",
    "SITES",
    "capture_activations",
    "model_loss",
    "mlm_corruption",
    "MHALogits",
    "mha_logits",
    "mha_forward",
    "mha_temperature",
]
