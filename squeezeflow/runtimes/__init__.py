"""Runtime plugins (one module per runtime: a registered `Runtime` class bringing its engine, its builders and what a
device agent needs; squeezeflow/runtimes/base.py) and on-device measurement through the target's runtime. Plugin
modules are imported on first use (`load_runtimes`) and import their libraries only where they are used, so the
measuring process (`squeezeflow.runtimes.worker`) and a device agent import neither torch nor the quantizer."""

from squeezeflow.runtimes.base import (
                                       BUILDERS,
                                       RUNTIMES,
                                       Builder,
                                       BuilderConfig,
                                       Runtime,
                                       build_artifact,
                                       builder_for,
                                       load_builders,
                                       load_runtimes,
                                       parse_build_config,
                                       register_builder,
                                       register_runtime,
)
from squeezeflow.runtimes.measure import MeasureSpec, measure, measure_isolated

__all__ = ["BUILDERS", "RUNTIMES", "Builder", "BuilderConfig", "Runtime", "build_artifact", "builder_for",
           "load_builders", "load_runtimes", "parse_build_config", "register_builder", "register_runtime",
           "MeasureSpec", "measure", "measure_isolated"]
