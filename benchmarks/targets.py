"""One model through every runtime available here, side by side, each measured as the pipeline validates it.

    .venv/bin/python benchmarks/targets.py [--workspace .] [--rounds 3]

Reads the workspace's exported model and dataset split (run `./sf run` first), builds it for each runtime and
precision available on this machine (ONNX Runtime fp32 and static int8 QDQ, OpenVINO fp32 and int8 from the same
QDQ graph), then measures every build in its own constrained process (`measure_isolated`, one thread, the test
split): accuracy, file bytes, batch-1 latency p50/p95/p99, throughput at batch 256, session load time and the
measuring process's peak RSS. The builds are measured in rotation, `--rounds` times, and the median of each number
is printed, so machine drift hits every runtime alike.
TensorRT is built (the typed graph) and listed as unavailable with the reason where it has no GPU or libraries.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from squeezeflow.data import Splits
from squeezeflow.naming import recipe_key
from squeezeflow.runtimes import MeasureSpec, builder_for  # noqa: E402
from squeezeflow.runtimes.measure import measure_on_device  # noqa: E402
from squeezeflow.runtimes.ort_fp32 import OrtFp32Config  # noqa: E402
from squeezeflow.runtimes.ort_int8 import OrtInt8QdqConfig  # noqa: E402
from squeezeflow.runtimes.ov_cpu import OpenVinoConfig  # noqa: E402
from squeezeflow.runtimes.trt import TensorRtConfig  # noqa: E402
from squeezeflow.workspace import Workspace  # noqa: E402

BUILDS = [  # (label, runtime, builder config)
    ("onnxruntime fp32", "onnxruntime", OrtFp32Config()),
    ("onnxruntime int8 (QDQ)", "onnxruntime", OrtInt8QdqConfig()),
    ("openvino fp32", "openvino", OpenVinoConfig(precision="fp32")),
    ("openvino int8 (QDQ)", "openvino", OpenVinoConfig(precision="int8")),
    ("tensorrt fp16", "tensorrt", TensorRtConfig(precision="fp16")),
    ("tensorrt int8 (symmetric QDQ)", "tensorrt", TensorRtConfig(precision="int8")),
]
KEYS = ["accuracy", "model_bytes", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "throughput_per_s",
        "load_ms", "peak_rss_mb"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", default=str(PROJECT))
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    ws = Path(args.workspace)
    last = recipe_key(Workspace(ws).recorded_params().compress.recipe)  # the last run's recipe
    exported = ws / "artifacts" / f"exported-{last}" / "model.onnx"
    if not exported.exists():
        sys.exit(f"no {exported}: run ./sf run first")
    splits = Splits.load(ws / "artifacts" / "dataset")
    spec = MeasureSpec(threads=1, warmup=50, iterations=1000, throughput_batch=256)
    results: dict[str, list[dict]] = {label: [] for label, _, _ in BUILDS}
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for label, _, cfg in BUILDS:
            files[label] = Path(tmp) / f"build{len(files)}.onnx"
            builder_for(cfg).build(exported, files[label], splits.x["train"], (splits.x["val"], splits.y["val"]))
        for _ in range(args.rounds):
            for label, runtime, _ in BUILDS:
                x, y = splits.x["test"], splits.y["test"]
                results[label].append(measure_on_device(files[label], x, y, spec, runtime))
    print(f"\n{exported} on {len(splits.y['test'])} test samples, 1 thread, median of {args.rounds} rounds\n")
    print("| runtime | accuracy % | bytes | p50 us | p95 us | p99 us | samples/s (b=256) | load ms | peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, _, _ in BUILDS:
        runs = results[label]
        errors = [r["error"] for r in runs if "error" in r]
        if errors:
            what = errors[0] if errors[0].startswith("unavailable") else f"failed: {errors[0]}"
            print(f"| {label} | {what[:140]} | | | | | | | |")
            continue
        m = {k: statistics.median(r[k] for r in runs) for k in KEYS}
        print(f"| {label} | {m['accuracy']:.2f} | {m['model_bytes']:,.0f} | {m['latency_p50_ms'] * 1e3:.1f} | "
              f"{m['latency_p95_ms'] * 1e3:.1f} | {m['latency_p99_ms'] * 1e3:.1f} | {m['throughput_per_s']:,.0f} | "
              f"{m['load_ms']:.1f} | {m['peak_rss_mb']:.0f} |")


if __name__ == "__main__":
    main()
