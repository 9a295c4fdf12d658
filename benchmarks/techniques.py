"""Every technique and every shipped recipe, measured side by side with what a user would otherwise reach for.

    .venv/bin/python benchmarks/techniques.py [--datasets digits mnist1d] [--only NAME ...] [--quick] [--json OUT]

Per dataset: the teacher from params.yaml is trained once; then each technique alone (applied to the teacher, or
building a student from it), each recipe in recipes/, and three baselines: ONNX Runtime's quantize_dynamic and
quantize_static with default settings on the teacher's ONNX file, and torch's global magnitude pruning
(torch.nn.utils.prune.global_unstructured) with fine-tuning. Every model is exported, built for the cpu-fp32 target
(the ORT baselines are used as ORT writes them) and measured in ONNX Runtime on one thread: test accuracy, change
vs the teacher, file and gzip bytes, nonzero parameters, FLOPs, p50 latency at batch 1, throughput at batch 256.

The default recipe's targets: >= 50x smaller (teacher file bytes / deployed gzip bytes), accuracy within 0.3
points of the teacher, batch-1 latency <= 0.2x the teacher's. Latency on a shared machine is noisy: run it alone.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from squeezeflow.compression import CompressContext  # noqa: E402
from squeezeflow.compression.recipe import load_recipe, parse_recipe  # noqa: E402
from squeezeflow.config import TrainParams, load_params  # noqa: E402
from squeezeflow.data.sources import load_dataset  # noqa: E402
from squeezeflow.data.splits import make_splits  # noqa: E402
from squeezeflow.evaluate import deploy_and_measure  # noqa: E402
from squeezeflow.models import ModelSpec, Standardize, build_model, with_input_norm  # noqa: E402
from squeezeflow.models.flops import flops, parameter_counts  # noqa: E402
from squeezeflow.runtimes import measure  # noqa: E402
from squeezeflow.targets import load_targets  # noqa: E402
from squeezeflow.training import fit, seed_everything  # noqa: E402

FT = {"epochs": 30, "patience": 8, "lr": 0.001}
# Each technique alone, with settings a user would start from. Student-building ones get the default recipe's
# student; the rest act on the teacher itself.
STUDENT = {"arch": "cnn", "hidden": [16, 32, 32]}
PROBES: dict[str, list[dict]] = {
    "distill (KL, T=4)": [{"technique": "distill", "student": STUDENT}],
    "distill (MSE + hint)": [{"technique": "distill", "student": STUDENT, "loss": "mse", "hint_weight": 1.0}],
    "distill-online (peer student)": [{"technique": "distill-online", "student": STUDENT}],
    "distill-self (born-again)": [{"technique": "distill-self"}],
    "prune-magnitude 80% iterative": [{"technique": "prune-magnitude", "sparsity": 0.8, "steps": 4, "finetune": FT},
                                      {"technique": "finetune"}],
    "prune-channels 50% L1": [{"technique": "prune-channels", "amount": 0.5}, {"technique": "finetune"}],
    "prune-channels 50% BN, 2 steps": [{"technique": "prune-channels", "amount": 0.5, "importance": "bn", "steps": 2,
                                        "finetune": FT}, {"technique": "finetune"}],
    "factorize-svd energy 0.9": [{"technique": "factorize-svd", "energy": 0.9, "skip_last": False},
                                 {"technique": "finetune"}],
    "factorize-tucker 0.5": [{"technique": "factorize-tucker", "rank_ratio": 0.5}, {"technique": "finetune"}],
    "factorize-cp 0.5": [{"technique": "factorize-cp", "rank_ratio": 0.5}, {"technique": "finetune"}],
    "quantize int8 (PTQ, per-channel)": [{"technique": "quantize", "bits": 8}],
    "quantize int4 (PTQ)": [{"technique": "quantize", "bits": 4}],
    "qat int4": [{"technique": "qat", "bits": 4}],
    "qat binary": [{"technique": "qat", "bits": 1}],
    "mixed-precision (budget 0.5)": [{"technique": "mixed-precision", "max_accuracy_drop": 0.5}],
}
TARGETS = {"ratio": 50.0, "drop": 0.3, "latency": 0.2}


def quick(steps: list[dict]) -> list[dict]:
    """--quick: every training loop cut to 3 epochs (a smoke run of the script, not a measurement)."""
    from squeezeflow.compression import TECHNIQUES

    out = []
    for step in steps:
        step = dict(step)
        fields = TECHNIQUES[step["technique"]].Config.model_fields
        for key in ("train", "finetune"):
            if key in fields and (key in step or key == "train"):
                step[key] = {**(step.get(key) or {}), "epochs": 3, "patience": 2}
        out.append(step)
    return out


class Bench:
    def __init__(self, dataset: str, work: Path, is_quick: bool):
        params = load_params(PROJECT / "params.yaml")
        self.params, self.quick = params.model_copy(
            update={"dataset": params.dataset.model_copy(update={"name": dataset})}), is_quick
        self.splits = make_splits(load_dataset(self.params.dataset), self.params.split, self.params.seed)
        self.target = load_targets(PROJECT / "device_targets")["cpu-fp32"]
        self.work, self.rows = work / dataset, []
        self.train = (self.splits.x["train"], self.splits.y["train"])
        self.val = (self.splits.x["val"], self.splits.y["val"])

    def teacher(self) -> None:
        p = self.params.teacher
        self.tspec = ModelSpec(p.arch, self.splits.x["train"].shape[1:], int(self.splits.y["train"].max()) + 1,
                               p.hidden, p.dropout, dict(p.extra))
        seed_everything(self.params.seed)
        self.tmodel = build_model(self.tspec)
        if p.normalize == "feature":  # as the teacher stage does
            self.tmodel = with_input_norm(self.tmodel, Standardize.fit(self.splits.x["train"]))
        train = p.train.model_copy(update={"epochs": 3}) if self.quick else p.train
        fit(self.tmodel, self.train, self.val, train, self.params.seed, desc="teacher")
        self.tmodel.eval()
        self.add("teacher (fp32)", self.tmodel, self.tspec, "reference", time.perf_counter())
        self.tfile = self.work / "teacher (fp32)" / "exported.onnx"

    def add(self, name: str, model, spec, kind: str, t0: float) -> dict:
        m = deploy_and_measure(model, spec, self.splits, self.work / name, self.target)
        return self._row(name, kind, m, time.perf_counter() - t0)

    def _row(self, name: str, kind: str, m: dict, seconds: float) -> dict:
        row = {"name": name, "kind": kind, "seconds": seconds, **{k: m[k] for k in (
            "accuracy", "model_bytes", "model_gzip_bytes", "latency_p50_ms", "throughput_per_s")},
            "nonzero_parameters": m.get("nonzero_parameters"), "flops": m.get("flops")}
        self.rows.append(row)
        print(f"  {name:<36} {row['accuracy']:6.2f}%  {row['model_gzip_bytes']:>9,} B gz  "
              f"{row['latency_p50_ms'] * 1e3:6.1f} us  ({seconds:.0f}s)", flush=True)
        return row

    def recipe(self, name: str, recipe, kind: str) -> None:
        t0 = time.perf_counter()
        ctx = CompressContext(self.tmodel, self.tspec, self.train, self.val, self.params.seed, log=lambda _: None)
        model, spec, _ = recipe.run(copy.deepcopy(self.tmodel), ctx)
        recipe.recover(model, ctx)
        self.add(name, model, spec, kind, t0)

    # --- what a user would otherwise reach for -------------------------------------------------------------
    def ort_baselines(self) -> None:
        from onnxruntime.quantization import quantize_dynamic, quantize_static

        from squeezeflow.runtimes.ort_int8 import _Calibration

        counts = {**parameter_counts(self.tmodel), "flops": flops(self.tmodel, self.tspec.input_shape)}
        for name, fn in (("ORT quantize_dynamic (defaults)", lambda src, dst: quantize_dynamic(src, dst)),
                         ("ORT quantize_static (defaults)", lambda src, dst: quantize_static(
                             src, dst, _Calibration(self.splits.x["train"][:256])))):
            t0 = time.perf_counter()
            out = self.work / name / "model.onnx"
            out.parent.mkdir(parents=True, exist_ok=True)
            try:
                fn(str(self.tfile), str(out))
                m = measure(out, self.splits.x["test"], self.splits.y["test"], self.target.measure)
            except Exception as exc:  # a baseline that fails is a result too
                print(f"  {name:<36} failed: {exc}")
                continue
            self._row(name, "baseline", {**m, **counts}, time.perf_counter() - t0)

    def torch_pruning_baseline(self, sparsity: float = 0.8) -> None:
        from torch.nn.utils import prune

        t0 = time.perf_counter()
        model = copy.deepcopy(self.tmodel)
        params = [(m, "weight") for m in model.modules()
                  if isinstance(m, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d))]
        prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=sparsity)
        train = TrainParams(**{**FT, "epochs": 3 if self.quick else FT["epochs"]})
        fit(model, self.train, self.val, train, self.params.seed, desc="torch prune ft")  # masks stay in force
        for m, n in params:
            prune.remove(m, n)
        self.add(f"torch global_unstructured {sparsity:.0%} + ft", model.eval(), self.tspec, "baseline", t0)


def verdict(rows: list[dict], name: str) -> list[str]:
    t = next(r for r in rows if r["kind"] == "reference")
    r = next((r for r in rows if r["name"] == name), None)
    if r is None:
        return []
    ratio = t["model_bytes"] / r["model_gzip_bytes"]
    drop = t["accuracy"] - r["accuracy"]
    lat = r["latency_p50_ms"] / t["latency_p50_ms"]
    ok = lambda b: "PASS" if b else "FAIL"  # noqa: E731
    return [f"  {name}: {ratio:.1f}x smaller (target >= {TARGETS['ratio']:g}x) {ok(ratio >= TARGETS['ratio'])}; "
            f"accuracy change {-drop:+.2f} pt (target >= -{TARGETS['drop']}) {ok(drop <= TARGETS['drop'])}; "
            f"latency {lat:.2f}x (target <= {TARGETS['latency']}x) {ok(lat <= TARGETS['latency'])}"]


def table(dataset: str, rows: list[dict]) -> str:
    t = next(r for r in rows if r["kind"] == "reference")
    head = (f"\n### {dataset}\n\n| model | kind | accuracy % | change pt | file bytes | gzip bytes | x smaller "
            "| nonzero params | MFLOPs | p50 us (b=1) | x latency | samples/s (b=256) |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['kind']} | {r['accuracy']:.2f} | {r['accuracy'] - t['accuracy']:+.2f} "
            f"| {r['model_bytes']:,} | {r['model_gzip_bytes']:,} | {t['model_bytes'] / r['model_gzip_bytes']:.1f} "
            f"| {r['nonzero_parameters'] or 0:,} | {(r['flops'] or 0) / 1e6:.3f} | {r['latency_p50_ms'] * 1e3:.1f} "
            f"| {r['latency_p50_ms'] / t['latency_p50_ms']:.2f} | {r['throughput_per_s']:,.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=["digits", "mnist1d"])
    ap.add_argument("--only", nargs="+", help="only these probe/recipe names (the teacher and baselines always run)")
    ap.add_argument("--quick", action="store_true", help="3 epochs everywhere: checks the script, measures nothing")
    ap.add_argument("--json", type=Path, help="also write every row here")
    args = ap.parse_args()
    torch.set_num_threads(2)
    results = {}
    with tempfile.TemporaryDirectory(prefix="sf-techniques-") as tmp:
        for dataset in args.datasets:
            print(f"\n== {dataset} ==", flush=True)
            b = Bench(dataset, Path(tmp), args.quick)
            b.teacher()
            b.ort_baselines()
            b.torch_pruning_baseline()
            for name, steps in PROBES.items():
                if not args.only or name in args.only:
                    b.recipe(name, parse_recipe({"name": name, "steps": quick(steps) if args.quick else steps,
                                                 "finetune": None}, "benchmarks/techniques.py"), "technique")
            for path in sorted((PROJECT / "recipes").glob("*.yaml")):
                if not args.only or path.stem in args.only:
                    recipe = load_recipe(path)
                    if args.quick:
                        recipe = parse_recipe({**recipe.to_dict(), "steps": quick(recipe.to_dict()["steps"]),
                                               "finetune": None}, path)
                    b.recipe(f"recipe: {path.stem}", recipe, "recipe")
            results[dataset] = b.rows
    for dataset, rows in results.items():
        print(table(dataset, rows))
    print("\nDefault recipe vs its targets:")
    for dataset, rows in results.items():
        print(f" {dataset}:")
        print("\n".join(verdict(rows, "recipe: default")) or "  (not run)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
