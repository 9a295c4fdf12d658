"""Stage 6b (per target): the recipe this target deploys. A target that lists candidate recipes gets each one's
export built with its builder and measured on it (here or on its agent) on the validation split; the smallest
(or fastest) that meets its budgets there wins (squeezeflow/selection.py). A target that lists none takes the
run's recipe. The chosen export is this stage's `model.onnx`, the file the target's build starts from."""

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
from squeezeflow.stages.alternatives import folder
from squeezeflow.stages.base import Stage, StageContext, register_stage
from squeezeflow.stages.validate import measure_target


def _source(ctx: StageContext, name: str, main: str) -> Path:
    return ctx.input("exported") / "model.onnx" if name == main else \
        ctx.input("alternatives") / folder(name) / "model.onnx"


def _try(ctx: StageContext, name: str, src: Path, work: Path, splits: Splits) -> dict:
    """Build and measure one candidate on the validation split; a build the builder cannot make is a reason."""
    report = read_json(ctx.input("alternatives") / "alternatives.json").get(name, {})
    if report and not report.get("export_matches", True):
        return {"error": f"its ONNX export does not match torch (max |diff| {report['max_abs_diff']:.3g})"}
    check_onnx_file(src)
    built = work / folder(name) / "model.onnx"
    try:
        build_artifact(ctx.target.build, src, built, splits.x["train"], (splits.x["val"], splits.y["val"]))
    except SqueezeflowInputError:
        raise
    except Exception as exc:  # noqa: BLE001 - one candidate the builder cannot build does not stop the others
        return {"error": f"the {ctx.target.build.builder} build failed: {' '.join(str(exc).split())[:300]}"}
    metrics = measure_target(ctx.target, built, splits.x["val"], splits.y["val"], None)
    if metrics.get("transient"):  # an agent down says nothing about the candidate: no selection is recorded
        raise TransientError(f"{ctx.target.name}: candidate {name} not measured: {metrics['transient']} (not a "
                             "verdict: nothing recorded; the next run measures again)")
    return metrics


def run(ctx: StageContext) -> dict:
    target, main = ctx.target, ctx.recipes["main"]["name"]
    if not target.recipes:
        check_onnx_file(_source(ctx, main, main))  # a corrupt export is bad input, named where it is
        shutil.copyfile(_source(ctx, main, main), ctx.out / "model.onnx")
        why = "the run's recipe (the target lists no candidate recipes)"
        write_json(ctx.out / "selection.json", {"recipe": main, "objective": target.objective, "reason": why,
                                                "candidates": []})
        return {"recipe": main, "candidates": 0}
    splits = ctx.splits()
    teacher_val = read_json(ctx.input("teacher") / "metrics.json")["val_accuracy"]
    baseline = majority_baseline(splits.y["train"], splits.y["val"])
    measured: list[Measured] = []
    with tempfile.TemporaryDirectory() as work:
        for name in target.recipes:
            metrics = _try(ctx, name, _source(ctx, name, main), Path(work), splits)
            measured.append(judge(name, metrics, teacher_val, target.budgets, baseline))
    best, why = choose(measured, target.objective)
    shutil.copyfile(_source(ctx, best.recipe, main), ctx.out / "model.onnx")
    # The decision is the tracked output; what was measured to make it (latencies, the reason quoting them, the
    # plot) varies run to run and stays out of it, as other stages' timings do.
    write_json(ctx.out / "selection.json", {"recipe": best.recipe, "objective": target.objective,
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
    "select", run, deps=("dataset", "teacher", "exported", "alternatives"),
    target_params=("recipes", "objective", "runtime", "build", "measure", "budgets", "device"),
    recipe_params=("main.name",), code=("squeezeflow.selection", "squeezeflow.runtimes", "squeezeflow.gates.gate"),
    timings=("latency_*", "measured"), per_target=True, artifacts=("selection.json", "pareto.png"), report=report,
    kinds=("onnx", "dvc"), asset="selected", description="recipe selection: each candidate recipe "
    "built and measured on the target on the validation split; the smallest (or fastest) that meets the budgets"))
