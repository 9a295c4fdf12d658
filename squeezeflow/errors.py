"""One error type for bad input: it always names the file, the field and the value."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class SqueezeflowInputError(ValueError):
    """Bad user input (a dataset, params file or target profile), raised before any work is done."""

    def __init__(self, source: str | Path, field: str, value: Any, problem: str):
        self.source, self.field, self.value, self.problem = str(source), field, value, problem
        shown = repr(value)
        if len(shown) > 120:
            shown = shown[:117] + "..."
        super().__init__(f"{self.source}: field '{field}' = {shown}: {problem}")


def from_pydantic(source: str | Path, exc: Any, prefix: str = "") -> SqueezeflowInputError:
    """Turn a pydantic ValidationError into one clear message. A misspelled key is reported before the
    'field required' it causes, since the misspelling is what the user has to fix."""
    errors = sorted(exc.errors(), key=lambda e: e.get("type") != "extra_forbidden")
    err = errors[0]
    field = (prefix + ".".join(str(p) for p in err.get("loc", ())) if err.get("loc")
             else (prefix.rstrip(".") or "<root>"))
    value = None if err.get("type") == "missing" else err.get("input")
    return SqueezeflowInputError(source, field, value, err.get("msg", "invalid"))


class TransientError(RuntimeError):
    """Something that says nothing about the model failed (a device agent down, a measurement timeout, a
    download): not a verdict. Nothing is recorded or registered, and the next run tries again."""
