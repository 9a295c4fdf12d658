"""Model architectures (a registry) and checkpoints (state dict + the spec that rebuilds the module)."""

from squeezeflow.models.registry import ARCHS, ModelSpec, build_model, register_arch
from squeezeflow.models.checkpoint import load_checkpoint, save_checkpoint

__all__ = ["ARCHS", "ModelSpec", "build_model", "register_arch", "load_checkpoint", "save_checkpoint"]
