"""Soak: consecutive scheduled-style runs with changing seeds on one workspace, then `gc`. Prints the sizes of the
MLflow database, MLflow artifacts, DVC cache and DVC remote after each run and after gc, and the growth per run.

    .venv/bin/python benchmarks/soak.py [--runs 30] [--keep 3]

Small on purpose (digits, a 64-unit teacher, the tiny recipe, one target), so 30 runs take minutes: what grows per
run is the same records and files whatever the model's size; the bytes per checkpoint scale with the model.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def sizes(root: Path) -> dict[str, int]:
    state = root / ".squeezeflow"
    return {"mlflow db": size(state / "mlflow.db"), "mlflow artifacts": size(state / "mlartifacts"),
            "dvc cache": size(root / ".dvc" / "cache"), "dvc remote": size(state / "dvc-remote"),
            "run records": size(state / "runs")}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--keep", type=int, default=3, help="retention.keep_versions for the gc at the end")
    args = p.parse_args()

    from pipelines.runner import run_lifecycle
    from squeezeflow.lifecycle import Lifecycle
    from squeezeflow.workspace import Workspace
    from tests.conftest import make_workspace

    base = Path(tempfile.mkdtemp(prefix="sf-soak-"))
    os.environ.update(DAGSTER_HOME=str(base / "dagster_home"), DVC_SITE_CACHE_DIR=str(base / "dvc_site"))
    (base / "dagster_home").mkdir()
    (base / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    root = make_workspace(base / "ws", targets=("cpu-fp32",))
    rows, codes = [], []
    t0 = time.perf_counter()
    for i in range(args.runs):
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            codes.append(run_lifecycle(Workspace(root), [f"seed={i}"], ["cpu-fp32"]))
        rows.append(sizes(root))
        print(f"run {i + 1:>2}/{args.runs}: exit {codes[-1]}, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    lc = Lifecycle(Workspace(root))
    versions_before = sum(len(lc.tracker.client.search_model_versions(f"name = '{m.name}'"))
                          for m in lc.tracker.client.search_registered_models())
    removed = lc.collect_garbage(args.keep)
    after = sizes(root)
    versions_after = sum(len(lc.tracker.client.search_model_versions(f"name = '{m.name}'"))
                         for m in lc.tracker.client.search_registered_models())

    def mb(n: float) -> str:
        return f"{n / 1e6:.2f}"

    print(f"\n{args.runs} runs (exit codes: {dict((c, codes.count(c)) for c in sorted(set(codes)))}), "
          f"{versions_before} registered versions; gc --keep {args.keep}: {versions_after} left")
    print(f"| store | after run 1 MB | after run {args.runs} MB | growth per run MB | after gc MB |")
    print("|---|---|---|---|---|")
    for key in rows[0]:
        growth = (rows[-1][key] - rows[0][key]) / max(1, args.runs - 1)
        print(f"| {key} | {mb(rows[0][key])} | {mb(rows[-1][key])} | {mb(growth)} | {mb(after[key])} |")
    for line in removed.lines(False):
        print(f"gc: {line}")
    print(f"workspace: {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
