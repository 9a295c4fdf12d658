"""Cost that grows with the work and no faster: the main job on growing data, next to the same steps by hand.

    .venv/bin/python benchmarks/scaling.py [--sizes 2000 8000 32000 128000] [--kinds image tabular]
                                           [--epochs 3] [--repeat N [--repeat-sizes 8000 32000]]
                                           [--no-plain] [--out results.json] [--work DIR]

Per kind and size, an offline-generated set (numpy only; images: 1x16x16, 10 classes, a class's smooth template
shifted, rescaled and under noise; tabular: sklearn's make_classification, 10 classes, 48 features) is written to a
`.npz` and the main job runs on it for one target (`squeezeflow run --npz ... --target cpu-int8`) in a fresh
workspace, with a benchmark recipe like recipes/default.yaml (distil into the teacher's architecture at 1/8 width,
KL T=4, int8 weights, distilled fine-tuning) at fixed epochs: the same settings at every size. Each stage's wall
time and peak RSS come from its timings file (.squeezeflow/timings/<stage>.json, written by run_stage_locally);
its step's time (the stage plus DVC's check and commit and MLflow's logging around it) from the run's line for it.

Then, on the split the main job made (read back from its workspace), a plain script with torch and onnxruntime only
does the same steps with the same architecture, optimizer settings, epochs and batch size, each timed: teacher
training (inputs standardized inside the model, a val accuracy per epoch), distillation of the same student on the
teacher's logits (computed once) and its fine-tuning epoch, ONNX export and onnxruntime's quantize_static (QDQ,
per-channel, 256 calibration samples), and evaluation (the int8 model's test accuracy through onnxruntime, and its
batch-1 latency on one thread: 20 warm-up and 200 timed calls, as squeezeflow's validation measures). It runs in a
fresh process, as the main job does, so both pay torch's warm-up.

Prints per kind: each stage's seconds (its step's) and peak RSS per size; each stage's growth exponent (slope of
log seconds on log samples, for both); the overhead (squeezeflow's seconds for the same steps: teacher + compressed
+ finetuned + exported + build + validate, against the plain script's); peak RSS against twice the dataset's
in-memory size (x and y bytes). The whole `run`, the time outside the steps and the other stages (dataset, select)
are shown too. Results go to JSON (`--out`, else a temp file).

Targets (issue 21): every stage's growth exponent <= 1.1; squeezeflow's same-steps time <= 1.2x the plain script's at
8k and 32k samples; peak RSS below 2x the dataset's in-memory size.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

TARGET, RECIPE, CLASSES = "cpu-int8", "bench", 10
# The same steps the plain script does; dataset and select are reported apart (nothing is hidden).
SAME_STEPS = ("teacher", f"compressed-{RECIPE}", f"finetuned-{RECIPE}", f"exported-{RECIPE}", f"build-{TARGET}",
              f"validate-{TARGET}")
STAGES = ("dataset", *SAME_STEPS[:4], f"select-{TARGET}", *SAME_STEPS[4:])
OVERHEAD_SIZES = (8000, 32000)  # where the 1.2x target applies

# recipes/default.yaml at fixed epochs: no early stop, no stop at the teacher's accuracy, no step cap.
BENCH_RECIPE = """\
name: bench
description: benchmarks/scaling.py - recipes/default.yaml at fixed epochs
steps:
  - technique: distill
    student: {{width: 0.125}}
    temperature: 4.0
    alpha: 0.9
    stop_at_teacher: false
    train: {{epochs: {epochs}, patience: {epochs}, lr: 0.003, optimizer: adamw, schedule: onecycle, weight_decay: 0.01,
             select: last}}
  - technique: quantize
    bits: 8
    per_channel: true
    symmetric: true
finetune:
  alpha: 0.9
  train: {{epochs: 1, patience: 1, lr: 0.0005, weight_decay: 0.0}}
"""


def say(text: str) -> None:
    print(text, flush=True)


# --- data --------------------------------------------------------------------------------------------------------


def image_set(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """1x16x16 images: each class a smooth 4x4 template upsampled, then shifted by up to 2 px, rescaled and noisy
    (learnable, not trivial). Templates are fixed by the seed, so every size draws from one distribution."""
    rng = np.random.default_rng(seed)
    templates = np.kron(rng.normal(0, 1, (CLASSES, 4, 4)), np.ones((4, 4))).astype(np.float32)
    y = rng.integers(0, CLASSES, n).astype(np.int64)
    x = np.empty((n, 1, 16, 16), np.float32)
    for start in range(0, n, 8192):  # in chunks: no temporaries of the whole set's size
        idx = np.arange(start, min(n, start + 8192))
        shift = rng.integers(-2, 3, (len(idx), 2))
        scale = rng.uniform(0.5, 1.5, (len(idx), 1, 1)).astype(np.float32)
        imgs = np.stack([np.roll(templates[y[i]], tuple(s), (0, 1)) for i, s in zip(idx, shift, strict=True)])
        x[idx, 0] = imgs * scale + rng.normal(0, 1.2, imgs.shape).astype(np.float32)
    return x, y


def tabular_set(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=n, n_features=48, n_informative=24, n_redundant=8, n_classes=CLASSES,
                               n_clusters_per_class=2, class_sep=1.0, flip_y=0.02, random_state=seed)
    return x.astype(np.float32), y.astype(np.int64)


KINDS = {"image": image_set, "tabular": tabular_set}


# --- squeezeflow ---------------------------------------------------------------------------------------------------


def workspace(root: Path, epochs: int) -> Path:
    """A fresh workspace: the project's params.yaml, the one target, the benchmark recipe."""
    (root / "device_targets").mkdir(parents=True)
    (root / "recipes").mkdir()
    shutil.copy(PROJECT / "params.yaml", root / "params.yaml")
    shutil.copy(PROJECT / "device_targets" / f"{TARGET}.yaml", root / "device_targets")
    (root / "recipes" / f"{RECIPE}.yaml").write_text(BENCH_RECIPE.format(epochs=epochs))
    return root


def run_main_job(root: Path, npz: Path, epochs: int) -> float:
    env = {**os.environ, "DAGSTER_HOME": str(root / ".squeezeflow" / "dagster"), "PYTHONPATH": str(PROJECT)}
    for k in ("MLFLOW_TRACKING_URI", "SQUEEZEFLOW_EXECUTOR", "SQUEEZEFLOW_DVC_REMOTE"):
        env.pop(k, None)
    cmd = [sys.executable, "-m", "pipelines.cli", "--root", str(root), "run", "--npz", str(npz), "--target", TARGET,
           "--recipe", RECIPE, "--set", f"teacher.train.epochs={epochs}", "--set", f"teacher.train.patience={epochs}",
           "--set", f"sweep.target={TARGET}"]  # params.yaml's sweep names cpu-fp32, which this workspace lacks
    log = root.with_suffix(".log")
    t0 = time.perf_counter()
    with log.open("w") as out:  # to a file: a long run's progress bars stay out of memory
        rc = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
    seconds = time.perf_counter() - t0
    if rc not in (0, 3):  # 3: a gate held the model back, the run itself went through
        sys.exit(f"the main job failed ({rc}) on {npz}; its output ({log}):\n{log.read_text()[-4000:]}")
    return seconds


STEP_LINE = re.compile(r"^\[squeezeflow\] (\S+)\s+(built|reused \(unchanged in DVC\))\s+([\d.]+)s", re.M)


def stage_costs(root: Path, started: float) -> dict[str, dict]:
    """stage -> {seconds, peak_mb, start_mb} from its timings file, and step_seconds from the run's line for it
    (the stage plus what the step does around it: DVC's up-to-date check and commit, MLflow's child run); a
    timings file older than the run (reused) or missing is recorded as such, not as a number."""
    steps = {m[1]: float(m[3]) for m in STEP_LINE.finditer(root.with_suffix(".log").read_text())}
    costs = {}
    for stage in STAGES:
        path = root / ".squeezeflow" / "timings" / f"{stage}.json"
        if not path.exists():
            costs[stage] = {"missing": True}
            continue
        v = json.loads(path.read_text())["values"]
        costs[stage] = {"seconds": v.get("stage_seconds"), "step_seconds": steps.get(stage),
                        "peak_mb": v.get("stage_peak_rss_mb"), "start_mb": v.get("stage_start_rss_mb"),
                        "reused": path.stat().st_mtime < started}
    return costs


# --- the plain script ----------------------------------------------------------------------------------------------


def standardized(model, x: np.ndarray):
    """The model behind (x - mean) / std with the train split's statistics, as plain torch."""
    import torch
    from torch import nn

    class Norm(nn.Module):
        def __init__(self):
            super().__init__()
            mean, std = x.mean(0, dtype=np.float64), x.std(0, dtype=np.float64)
            self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
            self.register_buffer("std", torch.as_tensor(np.where(std > 1e-8, std, 1.0), dtype=torch.float32))

        def forward(self, t):
            return (t - self.mean) / self.std

    return nn.Sequential(Norm(), model)


def plain_train(model, x, y, xv, yv, epochs: int, cfg: dict, loss_fn=None):
    """The loop a plain script writes: shuffled batches, the configured optimizer and schedule, a val accuracy per
    epoch, the last weights (returned with the last val accuracy). `loss_fn(logits, idx, yb)`: idx indexes the
    train split (for cached teacher logits)."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    xt, yt, xvt = torch.as_tensor(x), torch.as_tensor(y), torch.as_tensor(xv)
    opt_cls = torch.optim.AdamW if cfg.get("optimizer") == "adamw" else torch.optim.Adam
    opt = opt_cls(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    batch = cfg.get("batch_size", 64)
    steps = epochs * math.ceil(len(xt) / batch)
    sched = (torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg["lr"], total_steps=max(steps, 2),
                                                 pct_start=cfg.get("warmup", 0.2), anneal_strategy="cos")
             if cfg.get("schedule") == "onecycle" else None)
    smoothing = cfg.get("label_smoothing", 0.0)
    loss_fn = loss_fn or (lambda logits, _idx, yb: F.cross_entropy(logits, yb, label_smoothing=smoothing))
    val_accuracy = None
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(xt))
        for i in range(0, len(xt), batch):
            idx = order[i : i + batch]
            opt.zero_grad()
            loss_fn(model(xt[idx]), idx, yt[idx]).backward()
            opt.step()
            if sched is not None:
                sched.step()
        model.eval()
        with torch.no_grad():
            pred = torch.cat([model(b) for b in xvt.split(1024)]).argmax(1).numpy()
        val_accuracy = 100.0 * float((pred == yv).mean())
    return model.eval(), val_accuracy


def kd(teacher_logits, t: float = 4.0, alpha: float = 0.9):
    import torch.nn.functional as F

    def loss(logits, idx, yb):
        soft = F.kl_div(F.log_softmax(logits / t, 1), F.log_softmax(teacher_logits[idx] / t, 1),
                        reduction="batchmean", log_target=True) * t * t
        return alpha * soft + (1 - alpha) * F.cross_entropy(logits, yb)

    return loss


def plain_int8(model, x_train: np.ndarray, shape: tuple, folder: Path) -> Path:
    """torch.onnx.export, onnxruntime's pre-processing and quantize_static (QDQ, per-channel, 256 samples)."""
    import torch
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(x_train[:256])

        def get_next(self):
            row = next(self.it, None)
            return None if row is None else {"input": row[None]}

    fp32, prepped, int8 = folder / "plain.onnx", folder / "plain-prep.onnx", folder / "plain-int8.onnx"
    with warnings.catch_warnings():  # "legacy TorchScript-based exporter": the simple one a script would use
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (torch.zeros((1, *shape)),), str(fp32), input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                          opset_version=17, dynamo=False)
    quant_pre_process(str(fp32), str(prepped), skip_symbolic_shape=True)
    quantize_static(str(prepped), str(int8), Reader(), quant_format=QuantFormat.QDQ, per_channel=True)
    return int8


def ort_accuracy(path: Path, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Test accuracy, and batch-1 p50 latency on one thread (20 warm-up calls, 200 timed: MeasureSpec's defaults):
    what a user checks before deploying, and what squeezeflow's validate stage measures."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    logits = np.concatenate([sess.run(None, {"input": x[i : i + 1024]})[0] for i in range(0, len(x), 1024)])
    one, times = x[:1], []
    for i in range(220):
        t0 = time.perf_counter()
        sess.run(None, {"input": one})
        if i >= 20:
            times.append(time.perf_counter() - t0)
    return 100.0 * float((logits.argmax(1) == y).mean()), 1000 * float(np.median(times))


def plain_steps(root: Path, epochs: int) -> dict[str, float]:
    """The same steps on squeezeflow's split, with the teacher architecture it chose and params.yaml's teacher
    schedule; seconds per step (and the int8 model's test accuracy)."""
    import torch
    import yaml

    from squeezeflow.data import Splits
    from squeezeflow.models import ModelSpec, build_model, load_checkpoint

    params = yaml.safe_load((root / "params.yaml").read_text())
    teacher_cfg = {**params["teacher"]["train"], "epochs": epochs}
    splits = Splits.load(root / "artifacts" / "dataset", params["machine"]["data_memory_mb"])
    x, y = np.asarray(splits.x["train"]), splits.y["train"]
    xv, yv = np.asarray(splits.x["val"]), splits.y["val"]
    _, tspec = load_checkpoint(root / "artifacts" / "teacher" / "model.pt")  # the architecture only
    sspec = ModelSpec(tspec.arch, tspec.input_shape, tspec.num_classes,
                      tuple(max(4, round(h * 0.125)) for h in tspec.hidden), 0.0, dict(tspec.extra))
    out, t = {}, time.perf_counter()

    def lap(step: str) -> None:
        nonlocal t
        out[step], t = time.perf_counter() - t, time.perf_counter()
        say(f"    plain {step}: {out[step]:.1f} s")

    torch.manual_seed(0)
    teacher, teacher_val = plain_train(standardized(build_model(tspec), x), x, y, xv, yv, epochs, teacher_cfg)
    lap("teacher")
    with torch.no_grad():
        logits = torch.cat([teacher(b) for b in torch.as_tensor(x).split(1024)])
    torch.manual_seed(0)
    student = standardized(build_model(sspec), x)
    distill = {"optimizer": "adamw", "lr": 3e-3, "weight_decay": 0.01, "schedule": "onecycle", "warmup": 0.2}
    student, _ = plain_train(student, x, y, xv, yv, epochs, distill, kd(logits))
    student, student_val = plain_train(student, x, y, xv, yv, 1, {"lr": 5e-4, "weight_decay": 0.0}, kd(logits))
    lap("distill + finetune")
    (root / "plain").mkdir()
    int8 = plain_int8(student, x, tuple(tspec.input_shape), root / "plain")
    lap("export + int8")
    accuracy, latency_ms = ort_accuracy(int8, np.asarray(splits.x["test"]), splits.y["test"])
    lap("evaluate")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {**out, "total": sum(out.values()), "peak_rss_mb": peak_mb, "int8_test_accuracy": accuracy,
            "int8_latency_p50_ms": latency_ms,
            "teacher_val_accuracy": teacher_val, "student_val_accuracy": student_val,
            "teacher_arch": f"{tspec.arch} {list(tspec.hidden)}",
            "student_arch": f"{sspec.arch} {list(sspec.hidden)}"}


def run_plain(root: Path, epochs: int) -> dict:
    """The plain script in a fresh process, as squeezeflow's run is: each pays its own warm-up (torch's first
    steps cost ~0.7 s), and its peak RSS is its own."""
    done = subprocess.run([sys.executable, __file__, "--plain", str(root), "--epochs", str(epochs)])
    if done.returncode:
        sys.exit(f"the plain script failed ({done.returncode}) on {root}")
    return json.loads((root / "plain" / "result.json").read_text())


# --- one point, the tables -----------------------------------------------------------------------------------------


def point(kind: str, n: int, work: Path, epochs: int, repeat: int = 1, plain: bool = True) -> dict:
    """One size, run `repeat` times (squeezeflow, then the plain script, each time: the two are measured side by
    side while the machine is as it is); the medians, with every repetition's numbers kept under `runs`."""
    x, y = KINDS[kind](n)
    npz = work / f"{kind}-{n}.npz"
    np.savez(npz, x=x, y=y)
    data_mb = (x.nbytes + y.nbytes) / 2**20
    del x, y
    runs = [one_run(kind, n, npz, data_mb, work / (f"{kind}-{n}" + (f"-r{i}" if repeat > 1 else "")), epochs,
                    plain) for i in range(repeat)]
    return runs[0] if repeat == 1 else {**median_point(runs), "runs": runs}


def median_point(runs: list[dict]) -> dict:
    """Every number the median over the repetitions (a stage reused or missing in any of them stays so)."""
    def med(values):
        values = [v for v in values if v is not None]
        return float(np.median(values)) if values else None

    stages = {}
    for s, first in runs[0]["stages"].items():
        cells = [r["stages"][s] for r in runs]
        stages[s] = first if first.get("missing") else {
            **{k: med(c.get(k) for c in cells) for k in ("seconds", "step_seconds", "peak_mb", "start_mb")},
            "reused": any(c.get("reused") for c in cells)}
    plain = runs[0]["plain"] and {k: (med(r["plain"][k] for r in runs) if isinstance(v, int | float) else v)
                                  for k, v in runs[0]["plain"].items()}
    ratios = [same_steps(r) / r["plain"]["total"] for r in runs if same_steps(r) is not None and r["plain"]]
    return {**runs[0], "stages": stages, "plain": plain, "run_seconds": med(r["run_seconds"] for r in runs),
            "int8_test_accuracy": med(r["int8_test_accuracy"] for r in runs), "repeats": len(runs),
            "ratio_range": [min(ratios), max(ratios)] if ratios else None}


def one_run(kind: str, n: int, npz: Path, data_mb: float, root: Path, epochs: int, with_plain: bool = True) -> dict:
    root = workspace(root, epochs)
    say(f"[{kind} {n}] {data_mb:.1f} MB in memory; squeezeflow run ...")
    started = time.time()
    run_s = run_main_job(root, npz, epochs)
    costs = stage_costs(root, started)
    say(f"[{kind} {n}] squeezeflow run: {run_s:.1f} s" + ("; plain script ..." if with_plain else ""))
    plain = run_plain(root, epochs) if with_plain else None
    if plain:
        say(f"[{kind} {n}] plain script: {plain['total']:.1f} s "
            f"(int8 test accuracy {plain['int8_test_accuracy']:.1f}%)")
    validated = json.loads((root / "artifacts" / f"validate-{TARGET}" / "metrics.json").read_text())
    return {"kind": kind, "samples": n, "data_mb": data_mb, "run_seconds": run_s, "stages": costs, "plain": plain,
            "int8_test_accuracy": validated.get("accuracy"), "workspace": str(root)}


def num(v, fmt: str = "{:.1f}") -> str:
    return "-" if v is None else fmt.format(v)


def exponent(points: list[dict], stage: str, key: str = "seconds") -> float | None:
    """Slope of log seconds on log samples over the sizes where the stage ran (not reused, not missing)."""
    pairs = [(p["samples"], p["stages"][stage][key]) for p in points
             if not p["stages"][stage].get("missing") and not p["stages"][stage].get("reused")
             and (p["stages"][stage].get(key) or 0) > 0]
    if len(pairs) < 2:
        return None
    n, s = np.log(np.array(pairs, dtype=float)).T
    return float(np.polyfit(n, s, 1)[0])


def same_steps(p: dict, key: str = "seconds") -> float | None:
    secs = [p["stages"][s].get(key) for s in SAME_STEPS]
    return None if any(v is None for v in secs) else float(sum(secs))


def stage_table(points: list[dict]) -> list[str]:
    lines = ["| samples | data MB | run s | " + " | ".join(STAGES) + " |", "|---:|---:|---:|" + "---:|" * len(STAGES)]
    for p in points:
        cells = []
        for s in STAGES:
            c = p["stages"][s]
            cells.append("missing" if c.get("missing") else
                         f"{num(c['seconds'])} ({num(c['step_seconds'])}) s / {num(c['peak_mb'], '{:.0f}')} MB"
                         + (" (reused)" if c["reused"] else ""))
        lines.append(f"| {p['samples']} | {p['data_mb']:.1f} | {p['run_seconds']:.1f} | " + " | ".join(cells) + " |")
    return lines


def exponent_table(points: list[dict]) -> tuple[list[str], dict]:
    found = {s: {k: exponent(points, s, k) for k in ("seconds", "step_seconds")} for s in STAGES}
    lines = ["| stage | exponent (stage s) | exponent (step s) | <= 1.1 |", "|---|---:|---:|---|"]
    for s, e in found.items():
        worst = max((v for v in e.values() if v is not None), default=None)
        lines.append(f"| {s} | {num(e['seconds'], '{:.2f}')} | {num(e['step_seconds'], '{:.2f}')} | "
                     f"{'-' if worst is None else 'met' if worst <= 1.1 else 'MISSED'} |")
    run = exponent([{**p, "stages": {"run": {"seconds": p["run_seconds"]}}} for p in points], "run")
    lines.append(f"| (whole run) | {num(run, '{:.2f}')} | | |")
    return lines, found


def overhead_table(points: list[dict]) -> list[str]:
    lines = ["| samples | squeezeflow same steps s (steps) | plain s | ratio (steps) | ratio per repetition | "
             "dataset + select s | outside steps s | whole run s | plain steps (teacher / distill+ft / int8 / eval) | "
             "int8 test acc % (sf / plain) | target <= 1.2 |", "|---:|---:|---:|---:|---|---:|---:|---:|---|---|---|"]
    for p in points:
        ours, plain, steps_s = same_steps(p), p["plain"]["total"], same_steps(p, "step_seconds")
        ratio = None if ours is None else ours / plain
        other = sum(p["stages"][s].get("seconds") or 0 for s in ("dataset", f"select-{TARGET}"))
        outside = p["run_seconds"] - sum(c.get("step_seconds") or 0 for c in p["stages"].values())
        steps = " / ".join(f"{p['plain'][k]:.1f}" for k in ("teacher", "distill + finetune", "export + int8",
                                                             "evaluate"))
        judged = "-" if p["samples"] not in OVERHEAD_SIZES or ratio is None else "met" if ratio <= 1.2 else "MISSED"
        spread = "-" if not p.get("ratio_range") else "{:.2f}-{:.2f} ({} runs)".format(*p["ratio_range"],
                                                                                      p["repeats"])
        lines.append(f"| {p['samples']} | {num(ours)} ({num(steps_s)}) | {plain:.1f} | {num(ratio, '{:.2f}')} "
                     f"({num(None if steps_s is None else steps_s / plain, '{:.2f}')}) | {spread} | {other:.1f} | "
                     f"{outside:.1f} | {p['run_seconds']:.1f} | {steps} | {num(p['int8_test_accuracy'])} / "
                     f"{p['plain']['int8_test_accuracy']:.1f} | {judged} |")
    return lines


def memory_table(points: list[dict]) -> list[str]:
    """The highest stage peak, the most a stage added to what the process held when it began, and the peak over
    the smallest size's (what the extra data cost), against 2x the data; the plain script's peak beside them."""
    lines = ["| samples | data MB | 2x data MB | max stage peak RSS MB (stage) | max growth in a stage MB (stage) | "
             "peak over smallest size MB | plain script peak MB | peak < 2x | growth < 2x |",
             "|---:|---:|---:|---|---|---:|---:|---|---|"]
    first = None
    for p in points:
        ran = {s: c for s, c in p["stages"].items() if not c.get("missing") and c.get("peak_mb") is not None}
        peak = max(ran, key=lambda s: ran[s]["peak_mb"])
        grow = max(ran, key=lambda s: ran[s]["peak_mb"] - ran[s]["start_mb"])
        limit, growth = 2 * p["data_mb"], ran[grow]["peak_mb"] - ran[grow]["start_mb"]
        first = ran[peak]["peak_mb"] if first is None else first
        verdicts = ["met" if v < limit else "MISSED" for v in (ran[peak]["peak_mb"], growth)]
        lines.append(f"| {p['samples']} | {p['data_mb']:.1f} | {limit:.1f} | {ran[peak]['peak_mb']:.0f} ({peak}) | "
                     f"{growth:.0f} ({grow}) | {ran[peak]['peak_mb'] - first:.0f} | "
                     f"{num(p['plain'] and p['plain']['peak_rss_mb'], '{:.0f}')} | "
                     f"{' | '.join(verdicts)} |")
    return lines


def report(kind: str, points: list[dict]) -> dict:
    plain = points[0]["plain"]
    say(f"\n## {kind}: stage seconds (step seconds) / peak RSS MB per stage"
        + (f" (teacher {plain['teacher_arch']}, student {plain['student_arch']})" if plain else "") + "\n")
    say("\n".join(stage_table(points)))
    lines, found = exponent_table(points)
    say(f"\n### {kind}: growth exponent per stage (log-log fit over {[p['samples'] for p in points]})\n")
    say("\n".join(lines))
    if plain:
        say(f"\n### {kind}: overhead, squeezeflow's {' + '.join(SAME_STEPS)} against the plain script\n")
        say("\n".join(overhead_table(points)))
    say(f"\n### {kind}: peak RSS against 2x the dataset's in-memory size\n")
    say("\n".join(memory_table(points)))
    return {"points": points, "exponents": found}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", type=int, default=[2000, 8000, 32000, 128000])
    ap.add_argument("--kinds", nargs="+", choices=sorted(KINDS), default=["image", "tabular"])
    ap.add_argument("--epochs", type=int, default=3, help="teacher and distillation epochs at every size "
                    "(fine-tuning: 1)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per size (squeezeflow then the plain script, "
                    "each time); the tables show medians, and the ratio's range over the runs")
    ap.add_argument("--repeat-sizes", nargs="+", type=int, default=list(OVERHEAD_SIZES),
                    help="the sizes --repeat applies to (default: those the 1.2x target applies at)")
    ap.add_argument("--no-plain", action="store_true", help="squeezeflow's main job only: stage times, exponents "
                    "and memory, no overhead table")
    ap.add_argument("--out", type=Path, help="results as JSON (default: a temp file, printed at the end)")
    ap.add_argument("--work", type=Path, help="keep the workspaces here (default: a temp folder, removed)")
    ap.add_argument("--plain", type=Path, help=argparse.SUPPRESS)  # internal: the plain script on this workspace
    args = ap.parse_args()
    if args.plain:
        result = plain_steps(args.plain, args.epochs)
        (args.plain / "plain" / "result.json").write_text(json.dumps(result))
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="sf-scaling-"))
    work.mkdir(parents=True, exist_ok=True)
    results = {"epochs": args.epochs, "sizes": args.sizes, "kinds": {}}
    try:
        for kind in args.kinds:
            points = [point(kind, n, work, args.epochs, args.repeat if n in args.repeat_sizes else 1,
                            not args.no_plain) for n in sorted(args.sizes)]
            results["kinds"][kind] = report(kind, points)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    out = args.out or Path(tempfile.mkstemp(prefix="sf-scaling-", suffix=".json")[1])
    out.write_text(json.dumps(results, indent=1))
    say(f"\nresults: {out}")


if __name__ == "__main__":
    main()
