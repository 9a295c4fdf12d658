"""Deploy a torch model the way the lifecycle does (export -> target build -> measure in the target's runtime)
and report everything the benchmark and the Pareto sweep compare. Used outside the DVC-tracked stages, for
experiments that try many variants."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from squeezeflow.data import Splits
from squeezeflow.export import export_onnx
from squeezeflow.models import ModelSpec
from squeezeflow.models.flops import flops, parameter_counts
from squeezeflow.runtimes import build_artifact, measure
from squeezeflow.targets import TargetProfile


def deploy_and_measure(model: nn.Module, spec: ModelSpec, splits: Splits, workdir: Path, target: TargetProfile,
                       opset: int = 17, exporter: str = "dynamo") -> dict:
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    exported, built = workdir / "exported.onnx", workdir / "model.onnx"
    export_onnx(model, spec.input_shape, exported, opset, spec.input_dtype, exporter)
    build_artifact(target.build, exported, built, splits.x["train"], (splits.x["val"], splits.y["val"]))
    return {**measure(built, splits.x["test"], splits.y["test"], target.measure), **parameter_counts(model),
            "flops": flops(model, spec.input_shape), "exported_bytes": exported.stat().st_size}
