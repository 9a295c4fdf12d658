"""Compression techniques. Issue-2 scope: distillation into a smaller student, then magnitude pruning."""

from squeezeflow.compression.distill import distill
from squeezeflow.compression.prune import apply_masks, magnitude_prune, prunable_weights, sparsity, weight_masks

__all__ = ["distill", "magnitude_prune", "apply_masks", "prunable_weights", "sparsity", "weight_masks"]
