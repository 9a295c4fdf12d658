"""Model architectures (a registry), self-describing layers, and checkpoints that survive compression."""

from squeezeflow.models import quant_layers  # noqa: F401  (registers the quantized layers)
from squeezeflow.models.checkpoint import load_checkpoint, save_checkpoint
from squeezeflow.models.layers import (
           LAYERS,
           Standardize,
           describe,
           input_norm,
           rebuild,
           register_layer,
           with_input_norm,
)
from squeezeflow.models.registry import (
           ARCHS,
           DEFAULT_HIDDEN,
           ModelSpec,
           build_model,
           choose_arch,
           register_arch,
           resolve_arch,
)

__all__ = ["ARCHS", "DEFAULT_HIDDEN", "ModelSpec", "build_model", "register_arch", "choose_arch", "resolve_arch",
           "LAYERS", "describe", "rebuild", "register_layer",
           "load_checkpoint", "save_checkpoint", "Standardize", "input_norm", "with_input_norm"]
