"""Recipe selection's measurement of one candidate: an agent that is down is not a verdict on the candidate."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

from squeezeflow.config import Params
from squeezeflow.errors import TransientError
from squeezeflow.export import export_onnx
from squeezeflow.models import ModelSpec, build_model
from squeezeflow.stages.base import StageContext
from squeezeflow.stages.select import _try
from squeezeflow.targets import load_target
from tests.receiver import unused_port_url


def test_a_candidate_the_agent_could_not_measure_stops_the_selection(tmp_path, monkeypatch):
    torch.manual_seed(0)
    src = tmp_path / "model.onnx"
    export_onnx(build_model(ModelSpec("mlp", (8,), 3, (16,))).eval(), (8,), src, 17, exporter="torchscript")
    path = tmp_path / "board.yaml"
    path.write_text(yaml.safe_dump({
        "name": "board", "build": {"builder": "ort-fp32"}, "measure": {"iterations": 10, "warmup": 1},
        "device": {"agent": unused_port_url(), "token_env": "SF_SELECT_TOKEN", "timeout_s": 5},
        "budgets": {"max_accuracy_drop": 5, "max_latency_p95_ms": 10, "max_model_bytes": 10**6}}))
    target = load_target(path)
    monkeypatch.setenv("SF_SELECT_TOKEN", "0123456789abcdef-token")
    ctx = StageContext(Params(), tmp_path / "out", {}, target)
    x = np.random.default_rng(0).normal(size=(40, 8)).astype(np.float32)
    splits = SimpleNamespace(x={"train": x, "val": x}, y={"train": np.zeros(40, int), "val": np.zeros(40, int)})
    with pytest.raises(TransientError, match="candidate small not measured: the device agent at .* is unreachable"):
        _try(ctx, "small", src, tmp_path, splits)


def test_a_candidate_whose_export_does_not_match_torch_is_a_reason_not_a_stop(tmp_path):
    """Its exported stage's parity (max |onnx - torch|, argmax agreement) decides: the candidate is not built or
    measured, and the selection goes on with the others."""
    src = tmp_path / "exported-small" / "model.onnx"
    src.parent.mkdir()
    torch.manual_seed(0)
    export_onnx(build_model(ModelSpec("mlp", (8,), 3, (16,))).eval(), (8,), src, 17, exporter="torchscript")
    (src.parent / "metrics.json").write_text('{"max_abs_diff": 0.25, "argmax_agreement": 0.97}')
    path = tmp_path / "board.yaml"
    path.write_text(yaml.safe_dump({"name": "board", "build": {"builder": "ort-fp32"},
                                    "budgets": {"max_accuracy_drop": 5, "max_latency_p95_ms": 10,
                                                "max_model_bytes": 10**6}}))
    ctx = StageContext(Params(), tmp_path / "out", {}, load_target(path))
    got = _try(ctx, "small", src, tmp_path / "work", splits=None)
    assert got == {"error": "its ONNX export does not match torch (max |diff| 0.25, argmax agreement 0.9700)"}
    assert not (tmp_path / "work").exists()  # nothing built
