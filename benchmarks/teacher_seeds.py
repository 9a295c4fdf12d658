"""Is a gap between squeezeflow's teacher and a plain script's teacher real, or one seed's luck?

    .venv/bin/python benchmarks/teacher_seeds.py WORKSPACE [--seeds 0 1 2 3 4]

WORKSPACE is a folder the main job has run in (its dataset split and teacher spec are read back). For each seed, on
that same split, it trains the teacher the way the teacher stage does (train_from_scratch with params.yaml's
teacher.train) and the way benchmarks/frontier.py's plain script does (AdamW, one-cycle, 30 epochs, cross-entropy),
and prints each one's test accuracy, then the mean and standard deviation over the seeds and the mean paired gap.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from frontier import plain_fit  # noqa: E402

from squeezeflow.config import TeacherTrainParams  # noqa: E402
from squeezeflow.data import Splits  # noqa: E402
from squeezeflow.models import Standardize, build_model, load_checkpoint, with_input_norm  # noqa: E402
from squeezeflow.training import accuracy, train_from_scratch  # noqa: E402
from squeezeflow.workspace import Workspace  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workspace", type=Path)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    args = ap.parse_args()
    torch.set_num_threads(2)
    ws = Workspace(args.workspace)
    params = ws.recorded_params()
    splits = Splits.load(ws.stage_dir("dataset"))
    train, val = (splits.x["train"], splits.y["train"]), (splits.x["val"], splits.y["val"])
    test = (splits.x["test"], splits.y["test"])
    _, spec = load_checkpoint(ws.stage_dir("teacher") / "model.pt")
    ours_params = TeacherTrainParams(**params.teacher.train.model_dump())
    rows = []
    for seed in args.seeds:
        ours, _ = train_from_scratch(spec, train, val, ours_params, seed)
        torch.manual_seed(seed)
        plain = plain_fit(with_input_norm(build_model(spec), Standardize.fit(train[0])), *train, 30, seed=seed)
        rows.append((seed, accuracy(ours, *test), accuracy(plain.eval(), *test)))
        print(f"seed {seed}: squeezeflow {rows[-1][1]:.2f}  plain {rows[-1][2]:.2f}", flush=True)
    ours_acc, plain_acc = [r[1] for r in rows], [r[2] for r in rows]
    gaps = [o - p for o, p in zip(ours_acc, plain_acc, strict=True)]
    print(f"\n| {spec.arch} teacher, {len(rows)} seeds, {len(test[1])} test samples | mean % | sd | min | max |")
    print("|---|---:|---:|---:|---:|")
    for name, acc in (("squeezeflow (teacher stage)", ours_acc), ("plain script (frontier.py)", plain_acc),
                      ("paired gap, squeezeflow - plain (points)", gaps)):
        sd = statistics.stdev(acc) if len(acc) > 1 else 0.0
        print(f"| {name} | {statistics.mean(acc):.2f} | {sd:.2f} | {min(acc):.2f} | {max(acc):.2f} |")


if __name__ == "__main__":
    main()
