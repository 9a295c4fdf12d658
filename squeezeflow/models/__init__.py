"""Model architectures (a registry), self-describing layers (quantized ones too), and checkpoints that survive
compression."""

from squeezeflow.models import onnx_model, quant_layers  # noqa: F401  (register the onnx arch, quantized layers)
from squeezeflow.models.checkpoint import load_checkpoint, save_checkpoint
from squeezeflow.models.flops import count_parameters, parameter_counts
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

__all__ = ["ARCHS", "DEFAULT_HIDDEN", "LAYERS", "ModelSpec", "Standardize", "build_model", "choose_arch",
           "count_parameters", "describe", "input_norm", "load_checkpoint", "parameter_counts", "rebuild",
           "register_arch", "register_layer", "resolve_arch", "save_checkpoint", "with_input_norm"]
