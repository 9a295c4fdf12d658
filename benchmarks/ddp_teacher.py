"""The teacher trained in 1 and in N processes (teacher.train.processes, torch DDP through torchrun): test accuracy
and wall time of each, on the same split with the project's params.yaml teacher.

    .venv/bin/python benchmarks/ddp_teacher.py [--dataset digits|mnist1d] [--processes 1 2] [--seeds 0 1 2]

Target (issue 20): 2 processes on CPU within noise of 1 process on the same test split. Wall time includes
torchrun's start of N interpreters. Prints a table.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from squeezeflow.config import apply_overrides  # noqa: E402
from squeezeflow.lifecycle import Lifecycle  # noqa: E402
from squeezeflow.stages import teacher  # noqa: E402
from squeezeflow.workspace import Workspace  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sf-ddp-bench-") as tmp:
        root = Path(tmp) / "ws"
        root.mkdir()
        shutil.copytree(PROJECT / "device_targets", root / "device_targets")
        shutil.copy(PROJECT / "params.yaml", root / "params.yaml")
        flags = {"dataset.name": args.dataset}
        Lifecycle(Workspace(root, overrides=flags), flags, push=False).run_stage("dataset", "ddp-bench")
        ws = Workspace(root, overrides=flags)
        rows = []
        for n in args.processes:
            for seed in args.seeds:
                params = apply_overrides(ws.params(), {**flags, "teacher.train.processes": n, "seed": seed})
                out = Path(tmp) / f"p{n}-s{seed}"
                (out / "measured").mkdir(parents=True)
                (out / "teacher").mkdir()
                t0 = time.perf_counter()
                m = teacher.run(replace(ws.context("teacher", params, out / "teacher"), measured=out / "measured"))
                rows.append((n, seed, m["test_accuracy"], m["epochs"], time.perf_counter() - t0))
    print(f"teacher on {args.dataset}: {params.teacher.arch} {list(params.teacher.hidden or [])}, "
          f"{params.teacher.train.epochs} epochs at most")
    print(f"{'processes':>9} {'seed':>4} {'test acc %':>10} {'epochs':>6} {'wall s':>7}")
    for n, seed, acc, epochs, wall in rows:
        print(f"{n:>9} {seed:>4} {acc:10.2f} {epochs:>6} {wall:7.1f}")
    for n in args.processes:
        accs = [r[2] for r in rows if r[0] == n]
        walls = [r[4] for r in rows if r[0] == n]
        sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
        print(f"{n} process(es): test accuracy {statistics.mean(accs):.2f} +- {sd:.2f} (sd over seeds), "
              f"wall {statistics.median(walls):.1f} s (median)")


if __name__ == "__main__":
    main()
