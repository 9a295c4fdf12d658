"""Per-target builders (one module per runtime, each a registered class with its own config) and on-device
measurement through the target's runtime. Builder modules are imported on first use (`load_builders`), so the
measuring process (`squeezeflow.runtimes.worker`) and a device agent import neither torch nor the quantizer."""

from squeezeflow.runtimes.base import (
                                       BUILDERS,
                                       Builder,
                                       BuilderConfig,
                                       build_artifact,
                                       builder_for,
                                       load_builders,
                                       parse_build_config,
                                       register_builder,
)
from squeezeflow.runtimes.measure import MeasureSpec, measure, measure_isolated

__all__ = ["BUILDERS", "Builder", "BuilderConfig", "build_artifact", "builder_for", "load_builders",
           "parse_build_config", "register_builder", "MeasureSpec", "measure", "measure_isolated"]
