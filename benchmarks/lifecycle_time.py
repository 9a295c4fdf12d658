"""Time the main job cold (fresh workspace: everything trained and built), warm (same data, code and params) and
after a recipe-only change (`--recipe online` after the default run: only that recipe's chain and the targets
that deploy the run's recipe rerun).

    .venv/bin/python benchmarks/lifecycle_time.py [--dataset digits|mnist1d] [--recipe online]

Each run is a separate `squeezeflow run` process, as a user would start it. Targets: cold <= 5 min on 2 CPU cores,
warm well under half of cold, the recipe change at most 40 % of cold. Prints a table.
"""

from __future__ import annotations

import argparse
import os
import shutil
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
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sf-bench-") as tmp:
        root = Path(tmp) / "ws"
        root.mkdir()
        shutil.copytree(PROJECT / "device_targets", root / "device_targets")
        shutil.copy(PROJECT / "params.yaml", root / "params.yaml")
        env = {**os.environ, "DAGSTER_HOME": str(root / ".squeezeflow" / "dagster"), "PYTHONPATH": str(PROJECT)}
        env.pop("MLFLOW_TRACKING_URI", None)
        cold, rc1 = timed_run(root, args.dataset, env)
        warm, rc2 = timed_run(root, args.dataset, env)
        changed, rc3 = timed_run(root, args.dataset, env, "--recipe", args.recipe)
    targets = sorted(p.stem for p in (PROJECT / "device_targets").glob("*.yaml"))
    print(f"lifecycle on {args.dataset}, {os.cpu_count()} CPU cores, targets: {', '.join(targets)}")
    print(f"{'run':<6} {'seconds':>8} {'exit':>5}  target")
    print(f"{'cold':<6} {cold:8.1f} {rc1:>5}  <= 300 s")
    print(f"{'warm':<6} {warm:8.1f} {rc2:>5}  < {cold / 2:.1f} s (half of cold): "
          f"{'met' if warm < cold / 2 else 'MISSED'}")
    print(f"{'recipe':<6} {changed:8.1f} {rc3:>5}  <= {0.4 * cold:.1f} s (40% of cold, --recipe {args.recipe}): "
          f"{'met' if changed <= 0.4 * cold else 'MISSED'}")
    print(f"warm/cold = {warm / cold:.2f}, recipe/cold = {changed / cold:.2f}")


if __name__ == "__main__":
    main()
