"""Time the main job cold (fresh workspace: everything trained and built), warm (same data, code and params) and
after a recipe-only change (`--recipe online` after the default run: only that recipe's chain and the targets
that deploy the run's recipe rerun).

    .venv/bin/python benchmarks/lifecycle_time.py [--dataset digits|mnist1d] [--recipe online] [--repeat 3]

Each run is a separate `squeezeflow run` process, as a user would start it. The three runs are repeated in a fresh
workspace each time and the medians reported: a shared machine's speed drifts by a third within minutes, and the
teacher's early stop varies the cold run. Targets: cold <= 5 min on 2 CPU cores, warm well under half of cold, the
recipe change at most 40 % of cold (the median of each repetition's ratio). Prints a table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


def timed_run(root: Path, dataset: str, env: dict, *extra: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pipelines.cli", "--root", str(root), "run", "--dataset", dataset,
                           *extra], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode not in (0, 3):
        sys.stderr.write(proc.stderr[-3000:])
    return time.perf_counter() - t0, proc.returncode


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--recipe", default="online", help="the recipe of the third run (a recipe-only change)")
    ap.add_argument("--repeat", type=int, default=3, help="fresh workspaces, each timed cold, warm and recipe")
    args = ap.parse_args()
    rows = [one_workspace(args.dataset, args.recipe) for _ in range(args.repeat)]
    targets = sorted(p.stem for p in (PROJECT / "device_targets").glob("*.yaml"))
    print(f"lifecycle on {args.dataset}, {os.cpu_count()} CPU cores, targets: {', '.join(targets)}")
    print(f"{'rep':<4} {'cold s':>7} {'warm s':>7} {'recipe s':>9} {'exits':>6} {'warm/cold':>9} {'recipe/cold':>11}")
    for i, (cold, warm, changed, rcs) in enumerate(rows, 1):
        print(f"{i:<4} {cold:7.1f} {warm:7.1f} {changed:9.1f} {'/'.join(map(str, rcs)):>6} {warm / cold:9.2f} "
              f"{changed / cold:11.2f}")
    cold = statistics.median(r[0] for r in rows)
    warm = statistics.median(r[1] for r in rows)
    changed = statistics.median(r[2] for r in rows)
    warm_ratio = statistics.median(r[1] / r[0] for r in rows)
    ratio = statistics.median(r[2] / r[0] for r in rows)
    print(f"{'med':<4} {cold:7.1f} {warm:7.1f} {changed:9.1f} {'':>6} {warm_ratio:9.2f} {ratio:11.2f}")
    print(f"cold <= 300 s: {'met' if cold <= 300 else 'MISSED'}; warm < half of cold: "
          f"{'met' if warm_ratio < 0.5 else 'MISSED'}; recipe change (--recipe {args.recipe}) <= 40 % of cold: "
          f"{'met' if ratio <= 0.4 else 'MISSED'}")


def one_workspace(dataset: str, recipe: str) -> tuple[float, float, float, tuple[int, int, int]]:
    with tempfile.TemporaryDirectory(prefix="sf-bench-") as tmp:
        root = Path(tmp) / "ws"
        root.mkdir()
        shutil.copytree(PROJECT / "device_targets", root / "device_targets")
        shutil.copy(PROJECT / "params.yaml", root / "params.yaml")
        env = {**os.environ, "DAGSTER_HOME": str(root / ".squeezeflow" / "dagster"), "PYTHONPATH": str(PROJECT)}
        env.pop("MLFLOW_TRACKING_URI", None)
        cold, rc1 = timed_run(root, dataset, env)
        warm, rc2 = timed_run(root, dataset, env)
        changed, rc3 = timed_run(root, dataset, env, "--recipe", recipe)
    return cold, warm, changed, (rc1, rc2, rc3)


if __name__ == "__main__":
    main()
