"""The user's protocol: train only on the user's file, score on a held-out test set, next to plain scripts.

    .venv/bin/python benchmarks/external.py [--datasets cancer wine tabular signals] [--set KEY=VALUE ...]

Per dataset, 25% of the samples are held out (stratified, seed 0) and never shown to squeezeflow. The rest is
written to a `.npz` and the main job runs on it in a fresh workspace (`squeezeflow run --npz`, as a user starts
it). Each target's built ONNX file is then scored by ONNX Runtime on the held-out samples, next to scikit-learn
models fitted by plain scripts on the same file: standardized logistic regression, a standardized MLP and
histogram gradient boosting. Data kinds the built-in sets do not have: raw unscaled tabular features (breast cancer,
wine), a synthetic tabular task with features on scales from 1e-2 to 1e3, and synthetic 1-D signals (class =
shape of a noisy, shifted waveform). Everything is generated or bundled offline.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from sklearn.datasets import load_breast_cancer, load_wine, make_classification
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from squeezeflow.models import load_checkpoint  # noqa: E402
from squeezeflow.training import accuracy  # noqa: E402


def tabular(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    x, y = make_classification(n_samples=3000, n_features=20, n_informative=8, n_redundant=4, n_classes=4,
                               n_clusters_per_class=2, class_sep=1.0, random_state=seed)
    scales = np.logspace(-2, 3, x.shape[1], base=10.0)
    return (x * scales + 10 * scales).astype(np.float32), y


def signals(seed: int = 0, n: int = 2000, length: int = 64) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, length)
    y = rng.integers(0, 5, n)
    shift = rng.uniform(0, 1, n)[:, None]
    freq = rng.uniform(2, 4, n)[:, None]
    phase = 2 * np.pi * (freq * t[None] + shift)
    shapes = [np.sin(phase), np.sign(np.sin(phase)), 2 * np.abs(2 * ((phase / (2 * np.pi)) % 1) - 1) - 1,
              np.sin(phase) ** 3, np.sin(phase) + 0.5 * np.sin(2 * phase)]
    x = np.stack([shapes[c][i] for i, c in enumerate(y)]) + rng.normal(0, 0.4, (n, length))
    return x.astype(np.float32), y


DATASETS = {
    "cancer": lambda: load_breast_cancer(return_X_y=True),
    "wine": lambda: load_wine(return_X_y=True),
    "tabular": tabular,
    "signals": signals,
}


def plain_scripts(x_tr, y_tr, x_te, y_te) -> dict[str, float]:
    flat_tr, flat_te = x_tr.reshape(len(x_tr), -1), x_te.reshape(len(x_te), -1)
    models = {
        "logreg (standardized)": make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)),
        "MLP 100 (standardized)": make_pipeline(StandardScaler(), MLPClassifier((100,), max_iter=2000, random_state=0)),
        "hist gradient boosting": HistGradientBoostingClassifier(random_state=0),
    }
    return {name: 100.0 * m.fit(flat_tr, y_tr).score(flat_te, y_te) for name, m in models.items()}


def onnx_accuracy(path: Path, x: np.ndarray, y: np.ndarray) -> float:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = sess.run(None, {sess.get_inputs()[0].name: x.astype(np.float32)})[0]
    return 100.0 * float(np.mean(logits.argmax(1) == y))


def run_squeezeflow(root: Path, npz: Path, overrides: list[str]) -> tuple[float, dict]:
    root.mkdir(parents=True)
    shutil.copytree(PROJECT / "device_targets", root / "device_targets")
    shutil.copy(PROJECT / "params.yaml", root / "params.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(root / ".squeezeflow" / "dagster"), "PYTHONPATH": str(PROJECT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, "-m", "pipelines.cli", "--root", str(root), "run", "--npz", str(npz)]
    for item in overrides:
        cmd += ["--set", item]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode not in (0, 3):
        sys.exit(f"the main job failed on {npz}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    summary = json.loads(sorted((root / ".squeezeflow" / "runs").glob("*/summary.json"),
                                key=lambda p: p.stat().st_mtime)[-1].read_text())
    return seconds, summary


def bench(name: str, work: Path, overrides: list[str]) -> list[tuple[str, float, str]]:
    x, y = DATASETS[name]()
    x, y = np.asarray(x, np.float32), np.asarray(y, np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, stratify=y, random_state=0)
    npz = work / f"{name}.npz"
    np.savez(npz, x=x_tr, y=y_tr)
    seconds, summary = run_squeezeflow(work / name, npz, overrides)
    rows = [(k, v, "") for k, v in plain_scripts(x_tr, y_tr, x_te, y_te).items()]
    teacher, spec = load_checkpoint(work / name / "artifacts" / "teacher" / "model.pt")
    rows.append(("squeezeflow teacher (torch)", accuracy(teacher.eval(), x_te, y_te),
                 f"{spec.arch} {list(spec.hidden)}"))
    for t in summary["targets"]:
        path = work / name / "artifacts" / f"build-{t['target']}" / "model.onnx"
        note = f"gate {t['gate']}, {t['promoted']}, {t['bytes']} B" + (
            f" ({'; '.join(t['gate_reasons'])})" if t["gate_reasons"] else "")
        rows.append((f"squeezeflow {t['target']}", onnx_accuracy(path, x_te, y_te), note))
    print(f"\n## {name}: {len(y_tr)} train / {len(y_te)} held-out samples, x {x.shape[1:]}, "
          f"{len(np.unique(y))} classes; main job {seconds:.0f} s")
    print("| model | held-out accuracy % | notes |\n|---|---:|---|")
    for model, acc, note in rows:
        print(f"| {model} | {acc:.2f} | {note} |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="passed to squeezeflow run")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sf-external-") as tmp:
        for name in args.datasets:
            bench(name, Path(tmp), args.set)


if __name__ == "__main__":
    main()
