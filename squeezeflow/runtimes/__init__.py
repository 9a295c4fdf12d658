"""Per-target builders (a registry of classes) and on-device measurement through the target's runtime."""

from squeezeflow.runtimes.builders import BUILDERS, Builder, register_builder
from squeezeflow.runtimes.measure import measure

__all__ = ["BUILDERS", "Builder", "register_builder", "measure"]
