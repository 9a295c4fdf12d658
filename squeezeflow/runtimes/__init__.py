"""Per-target builders (one module per runtime, each a registered class with its own config) and on-device
measurement through the target's runtime. Every module here is imported, so adding a runtime is adding a module."""

import importlib
import pkgutil

from squeezeflow.runtimes.base import (
    BUILDERS,
    Builder,
    BuilderConfig,
    build_artifact,
    builder_for,
    parse_build_config,
    register_builder,
)
from squeezeflow.runtimes.measure import MeasureSpec, measure

for _mod in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = ["BUILDERS", "Builder", "BuilderConfig", "build_artifact", "builder_for", "parse_build_config",
           "register_builder", "MeasureSpec", "measure"]
