"""A target's runtime by name: a built model loaded with it (`load_engine`), how it loads one (`engine_config`,
recorded with the registered version), the files it loads beside the model (`companion_files`), and why it cannot
run here (`engine_unavailable`). Each runtime is a plugin module of this package, a registered `Runtime` subclass
(squeezeflow/runtimes/base.py); an engine is a model loaded by it. Looking one up imports the plugin modules, which
import their libraries only when a model is loaded: the measuring process stays light.
"""

from __future__ import annotations

from pathlib import Path

from squeezeflow.runtimes.base import RUNTIMES, Runtime, load_runtimes

ENGINES = RUNTIMES  # the registered runtimes by name, filled by load_runtimes() (the lookups below call it)

__all__ = ["ENGINES", "companion_files", "engine_config", "engine_unavailable", "load_engine", "load_runtimes"]


def engine_unavailable(runtime: str) -> str | None:
    runtimes = load_runtimes()
    return runtimes[runtime].unavailable() if runtime in runtimes else f"unknown runtime '{runtime}'"


def engine_config(runtime: str, threads: int = 1, options: dict[str, str] | None = None) -> dict:
    return {"runtime": runtime, **load_runtimes()[runtime].config(threads, options)}


def companion_files(runtime: str, model: Path) -> list[Path]:
    """The files beside `model` that the runtime loads (those that exist)."""
    runtimes = load_runtimes()
    suffixes = runtimes[runtime].companions if runtime in runtimes else ()
    return [p for p in (Path(model).with_suffix(s) for s in suffixes) if p.is_file()]


def load_engine(runtime: str, path: Path, threads: int = 1, options: dict[str, str] | None = None) -> Runtime:
    runtimes = load_runtimes()
    if runtime not in runtimes:
        raise KeyError(f"unknown runtime '{runtime}'; known: {sorted(runtimes)}")
    return runtimes[runtime](Path(path), threads, options)
