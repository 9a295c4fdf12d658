"""Runtime plugins. A runtime is one module of this package registering one `Runtime` subclass (@register_runtime):
how it loads and runs a built model (the engine measurement uses), the formats of built files it runs (`runs`), the
builders it brings (`builders`: each a `Builder` subclass with its own pydantic config, unknown keys rejected, and
the format of the file it writes, `produces`), and what a device agent needs (`safe_options`, `companions`).

A target's `build:` section is parsed by the config of the builder it names, and a target whose runtime does not run
the format its builder writes is refused when it loads (squeezeflow/targets.py). Plugin modules are imported on first
use (`load_runtimes`) and import their libraries (torch, the quantizer, the inference library) only inside the
functions that use them, so the measuring process (squeezeflow/runtimes/worker.py) and a device agent stay light."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import ValidationError

from squeezeflow.errors import SqueezeflowInputError, from_pydantic
from squeezeflow.io import predict_batches
from squeezeflow.strict import Strict

BUILDERS: dict[str, type[Builder]] = {}
RUNTIMES: dict[str, type[Runtime]] = {}
# Modules of this package that are not plugins (infrastructure, helpers): never imported by load_runtimes, so the
# measuring process and a device agent do not import them (trt_graph imports onnx).
NOT_PLUGINS = frozenset({"agent", "agent_client", "base", "engines", "measure", "trt_graph", "worker"})

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
    # The format of the file `build` writes, which a target's runtime must run (`Runtime.runs`): "onnx" (a standard
    # ONNX graph, QDQ included: any ONNX runtime loads it) or a runtime's own, such as "onnx-ort" or "tensorrt-plan".
    produces: ClassVar[str]

    def __init__(self, config: BuilderConfig):
        self.config = config

    def build(self, source: Path, dest: Path, calibration: np.ndarray, validation: Validation | None = None) -> dict:
        """Write the target's model to `dest`. `validation` (x, y): a builder that can lose accuracy checks it."""
        raise NotImplementedError


class Runtime:
    """A runtime plugin (a target's `runtime:` names it) and, once constructed, a model loaded by it: `run(x)` returns
    the logits for a batch of float32 inputs. Measurement, the champion comparison, the measuring process and a
    device agent all run a target's model through it. Its library is imported when a model is loaded, not before."""

    name: ClassVar[str]
    # The formats of built files it loads (`Builder.produces`): a target pairing it with a builder writing another
    # format is refused when it loads.
    runs: ClassVar[frozenset[str]]
    # The builders this plugin brings: registered with it, each writing a format it runs.
    builders: ClassVar[tuple[type[Builder], ...]] = ()
    # The options a device agent accepts from a client (others are refused): ones that only tune how the model
    # runs. An option that names a path (a cache or dump folder) would let a client write outside the agent's folder.
    safe_options: ClassVar[frozenset[str]] = frozenset()
    # Files it loads beside the model file (suffixes): registered with the version, downloaded with it for the
    # champion comparison, and sent to a device agent with it.
    companions: ClassVar[tuple[str, ...]] = ()

    def __init__(self, path: Path, threads: int = 1, options: dict[str, str] | None = None):
        raise NotImplementedError

    def run(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    @classmethod
    def unavailable(cls) -> str | None:
        """Why this runtime cannot run here (a missing library or device), or None."""
        return None

    @classmethod
    def config(cls, threads: int = 1, options: dict[str, str] | None = None) -> dict:
        """How this runtime loads a model for a target: recorded with the registered version, so a user can load it
        the way it was validated."""
        return {"threads": threads, **(options or {})}

    def predict(self, x: np.ndarray, batch: int = 512) -> np.ndarray:
        return predict_batches(self.run, x, batch)


def register_builder(cls: type[Builder]) -> type[Builder]:
    for attr in ("name", "Config", "produces"):
        if not hasattr(cls, attr):
            raise TypeError(f"builder {cls.__name__} must define '{attr}'")
    BUILDERS[cls.name] = cls
    return cls


def register_runtime(cls: type[Runtime]) -> type[Runtime]:
    """Register a runtime and the builders it brings; a builder whose output it does not run is a plugin bug."""
    for attr in ("name", "runs"):
        if not hasattr(cls, attr):
            raise TypeError(f"runtime {cls.__name__} must define '{attr}'")
    for builder in cls.builders:
        if getattr(builder, "produces", None) not in cls.runs:
            raise TypeError(f"runtime {cls.name} brings builder {builder.__name__}, whose output "
                            f"({getattr(builder, 'produces', None)}) it does not run (it runs: {sorted(cls.runs)})")
    for builder in cls.builders:
        register_builder(builder)
    RUNTIMES[cls.name] = cls
    return cls


def load_runtimes() -> dict[str, type[Runtime]]:
    """Import every plugin module of this package once: each registers its runtime and that runtime's builders."""
    import importlib
    import pkgutil

    package = __name__.rpartition(".")[0]  # this package, found without importing it (that would be a cycle)
    for mod in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if mod.name not in NOT_PLUGINS:
            importlib.import_module(f"{package}.{mod.name}")
    return RUNTIMES


def load_builders() -> dict[str, type[Builder]]:
    """Every registered builder (the plugin modules imported once)."""
    load_runtimes()
    return BUILDERS


def builders_run_by(runtime: str) -> list[str]:
    """The builders whose output `runtime` runs."""
    runs = load_runtimes()[runtime].runs
    return sorted(name for name, cls in load_builders().items() if cls.produces in runs)


def runtimes_running(builder: str) -> list[str]:
    """The runtimes that run `builder`'s output."""
    produces = load_builders()[builder].produces
    return sorted(name for name, cls in load_runtimes().items() if produces in cls.runs)


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
