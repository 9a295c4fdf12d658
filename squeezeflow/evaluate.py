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
    exported = workdir / "exported.onnx"
    export_onnx(model, spec.input_shape, exported, opset, spec.input_dtype, exporter)
    return {**build_and_measure(exported, splits, workdir, target), **parameter_counts(model),
            "flops": flops(model, spec.input_shape)}


def build_and_measure(exported: Path, splits: Splits, workdir: Path, target: TargetProfile) -> dict:
    """An exported model built with the target's builder and measured in its runtime on the test split."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    built = workdir / "model.onnx"
    build_artifact(target.build, exported, built, splits.x["train"], (splits.x["val"], splits.y["val"]))
    return {**measure(built, splits.x["test"], splits.y["test"], target.measure),
            "exported_bytes": Path(exported).stat().st_size}
