"""Stage 8 (per target): on-device validation through the target's runtime, in a process of its own under the
target's constraints (threads, CPU affinity, memory cap), here or on the device's agent (`device:` in the
profile). A model the runtime cannot run (a crash, out of memory) or a runtime unavailable here (TensorRT without
a GPU) gives metrics with an `error`: the stage succeeds, and the target's gate fails with that reason. A failure
that says nothing about the model (an agent down or refusing, a timeout, no token) raises TransientError: the
stage records nothing, so nothing is registered and the next run measures again."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from squeezeflow.errors import TransientError
from squeezeflow.export.onnx import check_onnx_file
from squeezeflow.onnxio import onnx_logits
from squeezeflow.runtimes.agent_client import measure_remote
from squeezeflow.runtimes.measure import measure_on_device
from squeezeflow.stages.base import Stage, StageContext, register_stage, stage_name
from squeezeflow.targets import TargetProfile

REFERENCE = "reference.onnx"  # in a build's output: the export it was built from, what the runtime is compared with


def measure_target(target: TargetProfile, model: Path, x: np.ndarray, y: np.ndarray,
                   reference: np.ndarray | None) -> dict:
    """Measure on the target's device agent when the profile names one, else on this machine."""
    if target.device is None:
        return measure_on_device(model, x, y, target.measure, target.runtime, reference)
    token = os.environ.get(target.device.token_env, "")
    if not token:
        why = (f"the device agent's token is not set: environment variable {target.device.token_env} "
               f"(device.token_env of target {target.name})")
        return {"error": why, "transient": why}
    return measure_remote(target.device.agent, token, model, x, y, target.measure, target.runtime, reference,
                          target.device.timeout_s, target.device.ca_file)


def run(ctx: StageContext) -> dict:
    splits = ctx.splits()
    model = ctx.input(stage_name("build", ctx.target.name)) / "model.onnx"
    check_onnx_file(model)  # a missing or corrupt file is bad input (one clear error), not a device failure
    x, y = splits.x["test"], splits.y["test"]
    # The export the build started from, run by ONNX Runtime here: what the runtime on the device should agree with.
    reference = onnx_logits(ctx.input(stage_name("build", ctx.target.name)) / REFERENCE, x).argmax(1)
    metrics = measure_target(ctx.target, model, x, y, reference)
    if metrics.get("transient"):
        raise TransientError(f"{ctx.target.name}: not validated: {metrics['transient']} (not a verdict on the model: "
                             "nothing registered; the next run measures again)")
    return metrics


STAGE = register_stage(Stage(
    "validate", run, deps=("dataset", "build"), target_params=("runtime", "measure", "device"),
    code=("squeezeflow.runtimes.measure", "squeezeflow.runtimes", "squeezeflow.runtimes.agent",
          "squeezeflow.stats"), per_target=True, measures=True,
    asset="validated", timings=("latency_*", "throughput_per_s", "load_ms", "peak_rss_mb", "cpus"),
    needs_timings=True, kinds=("onnx", "dvc"), description="on-device validation in a constrained process (here "
    "or on the device's agent): accuracy, agreement with the exported model's predictions, bytes, latency "
    "p50/p95/p99, throughput, load time and peak RSS through the target's runtime"))
