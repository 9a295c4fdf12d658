"""The shared stack against one machine, side by side in one invocation, on the same data:

1. one run of the main job in one process (`squeezeflow run`, the single-machine mode), cold;
2. the same run with the multiprocess executor on this machine (each step a process in a slot folder), cold;
3. the same run launched through the shared stack's queue and fanned out over its Celery workers, cold;
4. load: `--runs` runs on as many different datasets queued at once on the stack; all must succeed, with one
   registered version per distinct file per target (no duplicates), no database errors in any service's log, and
   the queue's limit (`concurrency.runs.max_concurrent_runs`) never exceeded.

Prints a table: the wall time of one run each way, runs per hour (single machine: back to back; stack: the load's
wall time), and the load's checks.

    .venv/bin/python benchmarks/scale.py [--runs 10] [--workers 2] [--targets cpu-fp32 cpu-int8]

The datasets are offline variants of digits (a different 1,500-sample subset and pixel noise each, written as .npz
files), so every run trains, compresses and registers its own models. The project's params.yaml and recipes.
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

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))


def datasets(folder: Path, n: int) -> list[Path]:
    import numpy as np
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y = (d.images / 16.0).astype(np.float32), d.target.astype(np.int64)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        rng = np.random.default_rng(i)
        pick = rng.choice(len(y), 1500, replace=False)
        noisy = np.clip(x[pick] + rng.normal(0, 0.05, x[pick].shape).astype(np.float32), 0, 1)
        paths.append(folder / f"digits{i}.npz")
        np.savez(paths[-1], x=noisy, y=y[pick])
    return paths


def workspace(root: Path, targets: list[str]) -> Path:
    root.mkdir(parents=True)
    shutil.copy(PROJECT / "params.yaml", root / "params.yaml")
    (root / "device_targets").mkdir()
    for t in targets:
        shutil.copy(PROJECT / "device_targets" / f"{t}.yaml", root / "device_targets")
    return root


def single_machine(root: Path, data: Path) -> float:
    env = {**os.environ, "DAGSTER_HOME": str(root / ".squeezeflow" / "dagster"), "PYTHONPATH": str(PROJECT)}
    for k in ("MLFLOW_TRACKING_URI", "SQUEEZEFLOW_EXECUTOR", "SQUEEZEFLOW_DVC_REMOTE"):
        env.pop(k, None)
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", "--root", str(root), "run", "--npz", str(data)],
                          env=env, capture_output=True, text=True)
    if done.returncode not in (0, 3):
        raise SystemExit(f"single-machine run failed ({done.returncode}): {done.stderr[-3000:]}")
    return time.perf_counter() - t0


def multiprocess(root: Path, data: Path) -> float:
    """`dagster job execute` with SQUEEZEFLOW_EXECUTOR=multiprocess: no server, steps fanned out on this machine."""
    env = {**os.environ, "DAGSTER_HOME": str(root / ".squeezeflow" / "dagster"), "PYTHONPATH": str(PROJECT),
           "SQUEEZEFLOW_ROOT": str(root), "SQUEEZEFLOW_EXECUTOR": "multiprocess"}
    for k in ("MLFLOW_TRACKING_URI", "SQUEEZEFLOW_DVC_REMOTE"):
        env.pop(k, None)
    (root / ".squeezeflow" / "dagster").mkdir(parents=True)
    config = root / "run.yaml"
    config.write_text(json.dumps({"resources": {"squeezeflow": {"config": {
        "root": str(root), "overrides": ["dataset.name=npz", f"dataset.path={data}"]}}}}))
    t0 = time.perf_counter()
    done = subprocess.run([str(Path(sys.executable).parent / "dagster"), "job", "execute", "-m",
                           "pipelines.definitions", "-j", "lifecycle", "--config", str(config)],
                          env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"multiprocess run failed ({done.returncode}): {done.stderr[-3000:]}")
    return time.perf_counter() - t0


def launch(env: dict, data: Path) -> str:
    from dagster import DagsterInstance

    with DagsterInstance.get() as instance:
        before = {r.run_id for r in instance.get_runs()}
    config = {"resources": {"squeezeflow": {"config": {"overrides": ["dataset.name=npz", f"dataset.path={data}"]}}}}
    done = subprocess.run([str(Path(sys.executable).parent / "dagster"), "job", "launch", "-m",
                           "pipelines.definitions", "-j", "lifecycle", "--config-json", json.dumps(config)],
                          env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"launch failed: {done.stderr[-3000:]}")
    with DagsterInstance.get() as instance:
        return ({r.run_id for r in instance.get_runs()} - before).pop()


def wait(run_ids: list[str]) -> dict:
    from dagster import DagsterInstance

    with DagsterInstance.get() as instance:
        while True:
            runs = {i: instance.get_run_record_by_id(i) for i in run_ids}
            if all(r.dagster_run.is_finished for r in runs.values()):
                return runs
            time.sleep(2)


def overlap(records) -> int:
    """The most runs STARTED at one moment (from each run's start and end time)."""
    edges = sorted([(r.start_time, 1) for r in records] + [(r.end_time, -1) for r in records])
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


def registry_checks(uri: str, names: list[str]) -> tuple[int, int]:
    """(model versions, duplicates: versions of one model sharing a file's sha256)."""
    from mlflow import MlflowClient

    from squeezeflow.tracking.schema import SHA_TAG

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    versions = dupes = 0
    for name in names:
        found = client.search_model_versions(f"name = '{name}'")
        shas = [v.tags.get(SHA_TAG) for v in found]
        versions += len(found)
        dupes += len(shas) - len(set(shas))
    return versions, dupes


def db_errors(logs: Path) -> list[str]:
    bad = ("deadlock", "duplicate key", "could not serialize", "OperationalError", "IntegrityError")
    return [f"{p.name}: {line.strip()[:200]}" for p in logs.glob("*.log")
            for line in p.read_text(errors="replace").splitlines() if any(b in line for b in bad)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--targets", nargs="+", default=["cpu-fp32", "cpu-int8"])
    args = ap.parse_args()
    import yaml

    from squeezeflow.stack import INFRA_DAGSTER_YAML, Stack

    limit = yaml.safe_load(INFRA_DAGSTER_YAML.read_text())["concurrency"]["runs"]["max_concurrent_runs"]
    with tempfile.TemporaryDirectory(prefix="sf-scale-") as tmp:
        tmp = Path(tmp)
        data = datasets(tmp / "data", args.runs + 1)
        one = single_machine(workspace(tmp / "single", args.targets), data[0])
        print(f"single machine, one run: {one:.1f} s", flush=True)
        multi = multiprocess(workspace(tmp / "multi", args.targets), data[0])
        print(f"multiprocess executor, one run: {multi:.1f} s", flush=True)

        root = workspace(tmp / "shared", args.targets)
        stack = Stack(root, workers=args.workers)
        try:
            stack.up(("postgres", "redis", "mlflow", "celery-workers", "dagster-daemon"))
            os.environ.update(stack.env())
            env = {**os.environ, "PYTHONPATH": str(PROJECT), "SQUEEZEFLOW_ROOT": str(root)}
            t0 = time.perf_counter()
            first = wait([launch(env, data[0])])
            fanned = time.perf_counter() - t0
            print(f"stack ({args.workers} Celery workers), one run: {fanned:.1f} s", flush=True)

            t0 = time.perf_counter()
            ids = [launch(env, d) for d in data[1:]]
            records = wait(ids)
            load = time.perf_counter() - t0
            statuses = [r.dagster_run.status.value for r in [*first.values(), *records.values()]]
            names = [f"squeezeflow-digits{i}-{t}" for i in range(len(data)) for t in args.targets]
            versions, dupes = registry_checks(env["MLFLOW_TRACKING_URI"], names)
            errors = db_errors(stack.dir / "logs")
            most = overlap(records.values())
        finally:
            stack.down(purge=True)
    print()
    print(f"{'mode':<34} {'one run s':>10} {'runs/hour':>10}")
    print(f"{'single machine (one process)':<34} {one:10.1f} {3600 / one:10.1f}")
    print(f"{'multiprocess executor, one machine':<34} {multi:10.1f} {3600 / multi:10.1f}")
    print(f"{f'stack, {args.workers} Celery workers':<34} {fanned:10.1f} {3600 * args.runs / load:10.1f}")
    print()
    ok = statuses.count("SUCCESS")
    print(f"load: {args.runs} runs on {args.runs} datasets queued at once, done in {load:.0f} s")
    print(f"  runs succeeded: {ok} of {len(statuses)}")
    print(f"  registered versions: {versions} for {len(names)} (dataset, target) pairs; duplicate files: {dupes}")
    print(f"  most runs at once: {most} (queue limit {limit})")
    print(f"  database errors in the services' logs: {len(errors)}" + "".join(f"\n    {e}" for e in errors[:5]))


if __name__ == "__main__":
    main()
