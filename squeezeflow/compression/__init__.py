"""Compression techniques, each a registered class (see base.py) in its own module, composed by recipes.

Every module in this package is imported here, so adding a technique is adding a module that registers a class.
"""

import importlib
import pkgutil

from squeezeflow.compression.base import (
    KIND_ORDER,
    TECHNIQUES,
    Applied,
    CompressContext,
    Technique,
    TechniqueConfig,
    register_technique,
)
from squeezeflow.compression.masks import apply_masks, prunable_weights, weight_masks
from squeezeflow.compression.prune import magnitude_prune, sparsity

for _mod in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = ["KIND_ORDER", "TECHNIQUES", "Applied", "CompressContext", "Technique", "TechniqueConfig",
           "register_technique", "apply_masks", "magnitude_prune", "prunable_weights", "sparsity", "weight_masks"]
