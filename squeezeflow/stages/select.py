"""Stage 6b (per target): the recipe this target deploys. A target that lists candidate recipes depends on each
one's `exported-<recipe>` stage; each export is built with the target's builder and measured on it (here or on its
agent) on the validation split; the smallest (or fastest) that meets its budgets there wins
(squeezeflow/selection.py), and its build is handed to the build stage in `built/` (built once). A target that
lists none takes the run's recipe. The chosen export is this stage's `model.onnx`: what the build started from."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from squeezeflow.data import Splits
from squeezeflow.errors import SqueezeflowInputError, TransientError
from squeezeflow.export.onnx import check_onnx_file
from squeezeflow.gates.gate import majority_baseline
from squeezeflow.io import read_json, write_json
from squeezeflow.runtimes import build_artifact
from squeezeflow.selection import Measured, as_records, choose, decision_record, judge, plot_candidates
from squeezeflow.stages.base import Stage, StageContext, register_stage, stage_name
from squeezeflow.stages.validate import measure_target

BUILT = "built"  # the chosen candidate's build (model.onnx, companions, build.json): the build stage takes it


def _source(ctx: StageContext, key: str) -> Path:
    return ctx.input(stage_name("exported", key)) / "model.onnx"


def _try(ctx: StageContext, name: str, src: Path, work: Path, splits: Splits) -> dict:
    """Build one candidate into `work` and measure it on the validation split; an export that does not match its
    torch model, or a build the builder cannot make, is a reason (the other candidates go on)."""
    parity = read_json(src.parent / "metrics.json") if (src.parent / "metrics.json").exists() else {}
    if parity.get("max_abs_diff", 0.0) > ctx.params.export.parity_atol or parity.get("argmax_agreement", 1.0) < 1.0:
        return {"error": f"its ONNX export does not match torch (max |diff| {parity['max_abs_diff']:.3g}, argmax "
                         f"agreement {parity.get('argmax_agreement', 1.0):.4f})"}
    check_onnx_file(src)
    built = work / "model.onnx"
    try:
        how = build_artifact(ctx.target.build, src, built, splits.x["train"], (splits.x["val"], splits.y["val"]))
    except SqueezeflowInputError:
        raise
    except Exception as exc:  # noqa: BLE001 - one candidate the builder cannot build does not stop the others
        return {"error": f"the {ctx.target.build.builder} build failed: {' '.join(str(exc).split())[:300]}"}
    write_json(work / "build.json", {**how, "built_by": stage_name("select", ctx.target.name)})
    metrics = measure_target(ctx.target, built, splits.x["val"], splits.y["val"], None)
    if metrics.get("transient"):  # an agent down says nothing about the candidate: no selection is recorded
        raise TransientError(f"{ctx.target.name}: candidate {name} not measured: {metrics['transient']} (not a "
                             "verdict: nothing recorded; the next run measures again)")
    return metrics


def run(ctx: StageContext) -> dict:
    target, recipes = ctx.target, ctx.target_recipes()
    if not target.recipes:
        (key, name), = recipes.items()
        check_onnx_file(_source(ctx, key))  # a corrupt export is bad input, named where it is
        shutil.copyfile(_source(ctx, key), ctx.out / "model.onnx")
        why = "the run's recipe (the target lists no candidate recipes)"
        write_json(ctx.out / "selection.json", {"recipe": name, "recipe_key": key, "objective": target.objective,
                                                "reason": why, "candidates": []})
        return {"recipe": name, "candidates": 0}
    splits = ctx.splits()
    teacher_val = read_json(ctx.input("teacher") / "metrics.json")["val_accuracy"]
    baseline = majority_baseline(splits.y["train"], splits.y["val"])
    measured: list[Measured] = []
    with tempfile.TemporaryDirectory() as work:
        for key, name in recipes.items():
            (Path(work) / key).mkdir()
            metrics = _try(ctx, name, _source(ctx, key), Path(work) / key, splits)
            measured.append(judge(name, metrics, teacher_val, target.budgets, baseline))
        best, why = choose(measured, target.objective)
        key = list(recipes)[measured.index(best)]
        if (Path(work) / key / "build.json").exists():
            shutil.copytree(Path(work) / key, ctx.out / BUILT)
    shutil.copyfile(_source(ctx, key), ctx.out / "model.onnx")
    # The decision is the tracked output; what was measured to make it (latencies, the reason quoting them, the
    # plot) varies run to run and stays out of it, as other stages' timings do.
    write_json(ctx.out / "selection.json", {"recipe": best.recipe, "recipe_key": key, "objective": target.objective,
                                            "teacher_val_accuracy": teacher_val,
                                            "candidates": decision_record(measured, best.recipe)})
    if ctx.measured is not None:
        plot_candidates(measured, best.recipe, target.budgets, teacher_val, ctx.measured / "pareto.png",
                        f"{target.name}: candidate recipes")
    return {"recipe": best.recipe, "candidates": len(measured),
            "measured": {"reason": why, "candidates": as_records(measured)},
            **{f"latency_p95_ms.{c.recipe}": c.latency_p95_ms for c in measured if c.latency_p95_ms is not None}}


def report(out: Path, metrics: dict | None = None) -> dict[str, str]:
    sel = read_json(out / "selection.json")
    measured = (metrics or {}).get("measured", {})
    p95 = {c["recipe"]: c.get("latency_p95_ms") for c in measured.get("candidates", [])}
    rows = ["| recipe | val accuracy % | bytes | p95 ms | meets budgets | chosen |", "|---|---|---|---|---|---|"]
    for c in sel["candidates"]:
        def num(v, fmt):
            return "-" if v is None else fmt.format(v)
        rows.append(f"| {c['recipe']} | {num(c['accuracy'], '{:.2f}')} | {num(c['model_bytes'], '{:,}')} | "
                    f"{num(p95.get(c['recipe']), '{:.3f}')} | {'yes' if c['meets_budgets'] else 'no'} | "
                    f"{'**yes**' if c['recipe'] == sel['recipe'] else ''} |")
    why = measured.get("reason") or sel.get("reason", "")
    return {"selection": f"**{sel['recipe']}** ({sel['objective']}): {why}\n\n" + "\n".join(rows)}


STAGE = register_stage(Stage(
    "select", run, deps=("dataset", "teacher", "exported"),
    target_params=("recipes", "objective", "runtime", "build", "measure", "budgets", "device"),
    code=("squeezeflow.selection", "squeezeflow.runtimes", "squeezeflow.gates.gate"),
    timings=("latency_*", "measured"), per_target=True, measures=True, artifacts=("selection.json", "pareto.png"),
    report=report,
    kinds=("onnx", "dvc"), asset="selected", description="recipe selection: each candidate recipe "
    "built and measured on the target on the validation split; the smallest (or fastest) that meets the budgets"))
