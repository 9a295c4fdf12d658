"""Builders turn the exported ONNX model into a target's deployable file. A runtime is one module: a Builder
subclass with its own pydantic config (unknown keys rejected), registered by name; the target's `build:` section is
parsed by the config of the builder it names."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import ValidationError

from squeezeflow.config import Strict
from squeezeflow.errors import SqueezeflowInputError, from_pydantic

BUILDERS: dict[str, type[Builder]] = {}

Validation = tuple[np.ndarray, np.ndarray]


class BuilderConfig(Strict):
    """The `build:` section of a target YAML; each builder subclasses it with the options it takes."""

    builder: str

    def largest_batch(self) -> int | None:
        """The largest batch the built model accepts (None: any); measurement must stay within it."""
        return None


class Builder:
    name: ClassVar[str]
    Config: ClassVar[type[BuilderConfig]]

    def __init__(self, config: BuilderConfig):
        self.config = config

    def build(self, source: Path, dest: Path, calibration: np.ndarray, validation: Validation | None = None) -> dict:
        """Write the target's model to `dest`. `validation` (x, y): a builder that can lose accuracy checks it."""
        raise NotImplementedError


def register_builder(cls: type[Builder]) -> type[Builder]:
    for attr in ("name", "Config"):
        if not hasattr(cls, attr):
            raise TypeError(f"builder {cls.__name__} must define '{attr}'")
    BUILDERS[cls.name] = cls
    return cls


def load_builders() -> dict[str, type[Builder]]:
    """Import every module of this package once: each builder module registers its class."""
    import importlib
    import pkgutil

    import squeezeflow.runtimes as package

    for mod in pkgutil.iter_modules(package.__path__):
        if mod.name not in ("agent", "base", "engines", "measure", "worker"):
            importlib.import_module(f"{package.__name__}.{mod.name}")
    return BUILDERS


def parse_build_config(data: Any, source: str | Path, field: str = "build") -> BuilderConfig:
    """The builder named in `data` parses the rest: an option it does not take fails naming file, field, value."""
    load_builders()
    if not isinstance(data, dict):
        raise SqueezeflowInputError(source, field, data, "expected a mapping with a 'builder' key")
    name = data.get("builder")
    if name not in BUILDERS:
        raise SqueezeflowInputError(source, f"{field}.builder", name, f"unknown builder; known: {sorted(BUILDERS)}")
    config = BUILDERS[name].Config
    try:
        return config.model_validate(data)
    except ValidationError as exc:
        err = from_pydantic(source, exc, prefix=f"{field}.")
        if any(e.get("type") == "extra_forbidden" for e in exc.errors()) and err.value is not None:
            options = sorted(set(config.model_fields) - {"builder"})
            err = SqueezeflowInputError(source, err.field, err.value, f"the {name} builder does not take this "
                                        f"option; it takes: {', '.join(options) or 'none'}")
        raise err from None


def builder_for(config: BuilderConfig) -> Builder:
    return load_builders()[config.builder](config)


def build_artifact(config: BuilderConfig, source: Path, dest: Path, calibration: np.ndarray,
                   validation: Validation | None = None) -> dict:
    """The one way a target's file is built (the build stage and the sweep both call this): the builder's own
    report plus the builder's name and the file's size."""
    info = builder_for(config).build(source, dest, calibration, validation)
    return {"builder": config.builder, "model_bytes": Path(dest).stat().st_size, **info}
