"""Hugging Face `transformers` sequence classifiers as squeezeflow models (`teacher.source: {kind: huggingface}`).

A factory like a user's (`squeezeflow.models.hf:hf_model`), so checkpoints, students (`student.kwargs:
{num_hidden_layers: 1}`), lineage and fingerprints work unchanged. Nothing is downloaded: a directory loads with
local_files_only=True, a config builds the architecture with fresh weights.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import torch
from torch import nn

from squeezeflow.imports import import_torchvision


class HfClassifier(nn.Module):
    """Token ids in, logits out: the attention mask (ids != pad_token_id) is made inside, so the ONNX takes ids
    only, as every other squeezeflow model does."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.pad_id = model.config.pad_token_id

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        mask = None if self.pad_id is None else (input_ids != self.pad_id).long()
        return self.model(input_ids=input_ids, attention_mask=mask).logits


def hf_model(num_classes: int, input_shape: tuple[int, ...], path: str | None = None,
             config: dict[str, Any] | None = None, **overrides) -> nn.Module:
    """AutoModelForSequenceClassification from `path` (a local directory) or `config` (model_type and sizes), with
    `overrides` on the config (num_hidden_layers for a shallower student keeps the first layers' weights) and the
    data's number of classes."""
    import_torchvision()  # transformers imports torchvision when it is installed: the CPU-only shim first
    import transformers
    from transformers import AutoModelForSequenceClassification

    transformers.logging.set_verbosity_error()  # load reports list every unused weight of a shallower student
    fields = {**overrides, "num_labels": int(num_classes)}
    with contextlib.redirect_stdout(io.StringIO()):
        cfg = _config(path, config, fields)
        if len(input_shape) != 1:
            raise ValueError(f"a Hugging Face sequence classifier takes token ids (N, length); the data's samples "
                             f"are {tuple(input_shape)}")
        positions = getattr(cfg, "max_position_embeddings", None)
        if positions is not None and input_shape[0] > positions:
            raise ValueError(f"sequences of {input_shape[0]} tokens exceed the model's max_position_embeddings "
                             f"({positions})")
        if path is not None:
            model = AutoModelForSequenceClassification.from_pretrained(path, config=cfg, local_files_only=True,
                                                                       ignore_mismatched_sizes=True)
        else:
            model = AutoModelForSequenceClassification.from_config(cfg)
    return HfClassifier(model)


def _config(path: str | None, config: dict[str, Any] | None, fields: dict):
    from transformers import AutoConfig

    if path is not None:
        try:
            return AutoConfig.from_pretrained(path, local_files_only=True, **fields)
        except (OSError, ValueError) as exc:
            raise ValueError(f"not a Hugging Face model directory ({' '.join(str(exc).split())[:200]})") from None
    spec = dict(config or {})
    model_type = spec.pop("model_type")
    try:
        return AutoConfig.for_model(model_type, **{**spec, **fields})
    except (KeyError, ValueError) as exc:
        raise ValueError(f"unknown Hugging Face model_type or config ({' '.join(str(exc).split())[:200]})") from None
