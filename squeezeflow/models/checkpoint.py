"""Checkpoints: the model as plain data (models/tree.py: what it is now) + the spec (how it was first built) + the
weights."""

from __future__ import annotations

import io
import pickle
import warnings
from pathlib import Path

import torch
from torch import nn

from squeezeflow.errors import SqueezeflowInputError
from squeezeflow.io import atomic_path
from squeezeflow.models.registry import ModelSpec
from squeezeflow.models.tree import describe_tree, load_resized, rebuild_tree


def save_checkpoint(path: Path, model: nn.Module, spec: ModelSpec) -> None:
    # Saved through a buffer: torch.save names the zip's records after the file, and the temp name is random,
    # which would give identical weights different bytes (and DVC hashes).
    buf = io.BytesIO()
    torch.save({"spec": spec.to_dict(), "model": describe_tree(model), "state_dict": model.state_dict()}, buf)
    with atomic_path(Path(path)) as tmp:
        tmp.write_bytes(buf.getvalue())


def _brief(exc: BaseException) -> str:
    """torch.load's errors run to paragraphs of advice (some of it to load untrusted files with weights_only=False):
    keep the line that says what is wrong, on one line."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1].strip()
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "") or type(exc).__name__
    line = line.split(". ", 1)[0].rstrip(".")
    return line if len(line) <= 160 else line[:157] + "..."


def load_checkpoint(path: Path) -> tuple[nn.Module, ModelSpec]:
    """A missing, corrupt or foreign file is bad input naming the file (SqueezeflowInputError), never a torch error."""
    path = Path(path)
    if not path.is_file():
        raise SqueezeflowInputError(path, "<file>", str(path), "no such checkpoint file (run the stage that writes it)")
    if path.stat().st_size == 0:
        raise SqueezeflowInputError(path, "<file>", str(path), "an empty file, not a squeezeflow checkpoint")
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error below says it all
            warnings.simplefilter("ignore")
            # weights_only: a checkpoint is data, never code.
            blob = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError, OSError) as exc:
        raise SqueezeflowInputError(path, "<file>", str(path), "not a readable squeezeflow checkpoint "
                                    f"(torch.load: {_brief(exc)})") from None
    if isinstance(blob, dict) and "layers" in blob and "model" not in blob:  # written before models/tree.py
        blob = {**blob, "model": {"type": "sequential", "layers": blob["layers"]}}
    missing = [k for k in ("model", "state_dict", "spec") if not isinstance(blob, dict) or k not in blob]
    if missing:
        found = sorted(map(str, blob)) if isinstance(blob, dict) else type(blob).__name__
        raise SqueezeflowInputError(path, missing[0], None, f"not a squeezeflow checkpoint: no '{missing[0]}' "
                                    f"(found {found})")
    try:
        model = rebuild_tree(blob["model"])
        load_resized(model, blob["state_dict"])
        spec = ModelSpec.from_dict(blob["spec"])
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
        raise SqueezeflowInputError(path, "<file>", str(path), "not a valid squeezeflow checkpoint "
                                    f"({type(exc).__name__}: {_brief(exc)})") from None
    model.eval()
    return model, spec
