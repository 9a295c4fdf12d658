"""squeezeflow's deployed models next to what plain scripts get from the same training split, in one process.

    .venv/bin/python benchmarks/frontier.py [--datasets digits mnist1d] [--quick]

Per dataset, the main job runs cold in a fresh workspace (`squeezeflow run`, as a user starts it; its wall time is
printed). Then, on the pipeline's own train/val/test split (read back from the workspace), plain scripts written
here with torch only train:
  (a) a teacher of the same architecture: inputs standardized, AdamW, one-cycle LR, 30 epochs, cross-entropy;
  (b) a plain Hinton KD student (T=4, alpha 0.9, same schedule) of the deployed student's architecture, from (a);
  (c) (a) with 90% global magnitude pruning (torch.nn.utils.prune, 5 epochs of fine-tuning with the masks), then
      ONNX Runtime's quantize_static (QDQ, defaults) calibrated on 256 training samples.
Every model is measured by ONNX Runtime on one thread against the same test samples: accuracy with its Wilson 95%
interval, gzip bytes, how many times smaller than squeezeflow's teacher fp32 ONNX file, batch-1 p50 latency as a
ratio to that teacher's, and batch-256 throughput. The issue-9 targets are checked at the end.
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from squeezeflow.data import Splits  # noqa: E402
from squeezeflow.export import export_onnx  # noqa: E402
from squeezeflow.models import ModelSpec, Standardize, build_model, load_checkpoint, with_input_norm  # noqa: E402
from squeezeflow.runtimes import (
    MeasureSpec,  # noqa: E402
    measure,  # noqa: E402
)
from squeezeflow.stats import wilson_interval  # noqa: E402
from squeezeflow.workspace import Workspace  # noqa: E402

MEASURE = MeasureSpec(threads=1, warmup=50, iterations=2000, throughput_batch=256)


def run_main_job(root: Path, dataset: str) -> float:
    root.mkdir(parents=True)
    shutil.copytree(PROJECT / "device_targets", root / "device_targets")
    shutil.copy(PROJECT / "params.yaml", root / "params.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(root / ".squeezeflow" / "dagster"), "PYTHONPATH": str(PROJECT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pipelines.cli", "--root", str(root), "run", "--dataset", dataset],
                          env=env, capture_output=True, text=True)
    if proc.returncode not in (0, 3):
        sys.exit(f"the main job failed on {dataset}:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def plain_fit(model, x, y, epochs: int, lr: float = 3e-3, wd: float = 0.01, loss_fn=None, masks=None, seed: int = 0):
    """The loop a plain script would write: AdamW, one-cycle, fixed epochs, the last weights."""
    torch.manual_seed(seed)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
    steps = epochs * ((len(xt) + 63) // 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    loss_fn = loss_fn or (lambda logits, xb, yb: F.cross_entropy(logits, yb))
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(xt))
        for i in range(0, len(xt), 64):
            idx = order[i : i + 64]
            opt.zero_grad()
            loss_fn(model(xt[idx]), xt[idx], yt[idx]).backward()
            opt.step()
            sched.step()
            if masks:
                with torch.no_grad():
                    for p, m in masks:
                        p.mul_(m)
    return model.eval()


def kd_loss(teacher, t: float = 4.0, alpha: float = 0.9):
    def loss(logits, xb, yb):
        with torch.no_grad():
            soft = F.softmax(teacher(xb) / t, 1)
        kl = F.kl_div(F.log_softmax(logits / t, 1), soft, reduction="batchmean") * t * t
        return alpha * kl + (1 - alpha) * F.cross_entropy(logits, yb)

    return loss


def prune_and_quantize(teacher, x_train, y_train, shape, out: Path) -> Path:
    from onnxruntime.quantization import quantize_static
    from torch.nn.utils import prune

    from squeezeflow.runtimes.ort_int8 import _Calibration

    model = copy.deepcopy(teacher)
    params = [(m, "weight") for m in model.modules()
              if isinstance(m, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d))]
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=0.9)
    masks = [(m.weight_orig, m.weight_mask) for m, _ in params]
    plain_fit(model, x_train, y_train, 5, lr=1e-3, masks=masks)
    for m, n in params:
        prune.remove(m, n)
    fp32 = out.with_name("pruned.onnx")
    export_onnx(model.eval(), shape, fp32, 17)
    quantize_static(str(fp32), str(out), _Calibration(x_train[:256]))
    return out


def row(name: str, path: Path, splits: Splits) -> dict:
    m = measure(path, splits.x["test"], splits.y["test"], MEASURE)
    n = len(splits.y["test"])
    return {"name": name, "path": path, **m, "ci": wilson_interval(round(m["accuracy"] * n / 100), n)}


def bench(dataset: str, work: Path, quick: bool) -> list[dict]:
    root = work / dataset
    cold = run_main_job(root, dataset)
    ws = Workspace(root)
    params = ws.recorded_params()
    splits = Splits.load(ws.stage_dir("dataset"))
    x_tr, y_tr = splits.x["train"], splits.y["train"]
    teacher, tspec = load_checkpoint(ws.stage_dir("teacher") / "model.pt")
    shape = tuple(tspec.input_shape)
    export_onnx(teacher, shape, root / "sf-teacher.onnx", 17)
    rows = [row("squeezeflow teacher (fp32)", root / "sf-teacher.onnx", splits),
            row("squeezeflow cpu-fp32 (deployed)", ws.stage_dir("build-cpu-fp32") / "model.onnx", splits),
            row("squeezeflow cpu-int8 (deployed)", ws.stage_dir("build-cpu-int8") / "model.onnx", splits)]

    epochs = 3 if quick else 30
    torch.manual_seed(0)
    norm = Standardize.fit(x_tr)
    plain_t = plain_fit(with_input_norm(build_model(tspec), norm), x_tr, y_tr, epochs)
    export_onnx(plain_t, shape, root / "plain-teacher.onnx", 17)
    rows.append(row("(a) plain-script teacher", root / "plain-teacher.onnx", splits))

    # (b) the deployed student's architecture, without squeezeflow's quantized layers: its layer list, as floats.
    sspec = student_spec(ws, tspec, params)
    torch.manual_seed(0)
    kd = plain_fit(with_input_norm(build_model(sspec), norm), x_tr, y_tr, epochs, loss_fn=kd_loss(plain_t))
    export_onnx(kd, shape, root / "plain-kd.onnx", 17)
    rows.append(row(f"(b) plain KD student {sspec.arch} {list(sspec.hidden)}", root / "plain-kd.onnx", splits))

    pq = prune_and_quantize(plain_t, x_tr, y_tr, shape, root / "plain-pruned-int8.onnx")
    rows.append(row("(c) plain teacher, 90% pruned + ORT int8", pq, splits))
    for r in rows:  # a second timing pass, the best of the two: a model measured first pays for the machine's warm-up
        again = measure(r["path"], splits.x["test"], splits.y["test"], MEASURE)
        for k in ("latency_p50_ms", "latency_p95_ms"):
            r[k] = min(r[k], again[k])
        r["throughput_per_s"] = max(r["throughput_per_s"], again["throughput_per_s"])
    for r in rows:
        r["cold_s"] = cold
    return rows


def student_spec(ws: Workspace, tspec: ModelSpec, params) -> ModelSpec:
    """The student of the recipe the main job ran (its first distill step)."""
    step = next(s for s in ws.recipe(params).steps if s.name == "distill")
    return step.config.student.spec(tspec)


def table(dataset: str, rows: list[dict]) -> str:
    t = rows[0]
    lines = [f"\n### {dataset} (cold main job: {t['cold_s']:.0f} s)\n",
             "| model | accuracy % | 95% CI | gzip bytes | x smaller than teacher fp32 | p50 us (b=1) "
             "| x teacher latency | samples/s (b=256) |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['accuracy']:.2f} | [{r['ci'][0]:.1f}, {r['ci'][1]:.1f}] | "
                     f"{r['model_gzip_bytes']:,} | {t['model_bytes'] / r['model_gzip_bytes']:.1f} | "
                     f"{r['latency_p50_ms'] * 1e3:.1f} | {r['latency_p50_ms'] / t['latency_p50_ms']:.2f} | "
                     f"{r['throughput_per_s']:,.0f} |")
    return "\n".join(lines)


def targets(dataset: str, rows: list[dict]) -> list[str]:
    ours, _, int8, plain, kd, _ = rows  # the order bench() builds them in
    ok = lambda b: "met" if b else "MISSED"  # noqa: E731
    ratio = ours["model_bytes"] / int8["model_gzip_bytes"]
    lat = int8["latency_p50_ms"] / ours["latency_p50_ms"]
    limit = 120 if dataset == "digits" else 300
    return [
        f"  teacher vs plain-script teacher: {ours['accuracy'] - plain['accuracy']:+.2f} pt (>= -0.3): "
        f"{ok(ours['accuracy'] >= plain['accuracy'] - 0.3)}",
        f"  cpu-int8 vs our teacher: {int8['accuracy'] - ours['accuracy']:+.2f} pt (>= -0.3): "
        f"{ok(int8['accuracy'] >= ours['accuracy'] - 0.3)}; {ratio:.0f}x smaller (>= 50): {ok(ratio >= 50)}; "
        f"latency x{lat:.2f} (<= 0.2): {ok(lat <= 0.2)}",
        f"  cpu-int8 vs plain KD student: {int8['accuracy'] - kd['accuracy']:+.2f} pt at "
        f"{int8['model_gzip_bytes']:,} vs {kd['model_gzip_bytes']:,} gzip bytes: "
        f"{ok(int8['accuracy'] >= kd['accuracy'] and int8['model_gzip_bytes'] <= kd['model_gzip_bytes'])}",
        f"  cold main job {int8['cold_s']:.0f} s (<= {limit}): {ok(int8['cold_s'] <= limit)}",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=["digits", "mnist1d"])
    ap.add_argument("--quick", action="store_true", help="3-epoch plain scripts: checks the script, measures little")
    args = ap.parse_args()
    torch.set_num_threads(2)
    results = {}
    with tempfile.TemporaryDirectory(prefix="sf-frontier-") as tmp:
        for dataset in args.datasets:
            print(f"== {dataset} ==", flush=True)
            results[dataset] = bench(dataset, Path(tmp), args.quick)
    for dataset, rows in results.items():
        print(table(dataset, rows))
    print("\nTargets (issue 9):")
    for dataset, rows in results.items():
        print(f" {dataset}:")
        print("\n".join(targets(dataset, rows)))


if __name__ == "__main__":
    main()
