"""Off the main line: train big, then compress. Teachers of several sizes, each compressed by each recipe, measured
on one device target; the Pareto front as a table and a plot."""

from __future__ import annotations

import tempfile
from dataclasses import asdict
from pathlib import Path

from squeezeflow.compression.recipe import parse_recipe
from squeezeflow.errors import SqueezeflowInputError
from squeezeflow.io import read_json, write_json
from squeezeflow.stages.base import Stage, StageContext, register_stage
from squeezeflow.stages.teacher import teacher_spec
from squeezeflow.sweep import front_table, plot_front, run_sweep


def run(ctx: StageContext) -> dict:
    p, meta = ctx.params, read_json(ctx.input("dataset") / "metrics.json")
    if p.sweep.target not in ctx.targets:
        raise SqueezeflowInputError(ctx.params_source, "sweep.target", p.sweep.target,
                                    f"no such device target; known: {sorted(ctx.targets)}")
    recipes = [parse_recipe(r, ctx.recipes_source) for r in ctx.recipes["sweep"].values()]
    splits = ctx.splits()
    spec = teacher_spec(p.teacher, meta, splits.x["train"])
    with tempfile.TemporaryDirectory() as work:
        points = run_sweep(spec, p.teacher.train, p.sweep.teacher_scales, recipes, splits,
                           ctx.targets[p.sweep.target], Path(work), p.seed, opset=p.export.opset,
                           normalize=p.teacher.normalize == "feature", exporter=p.export.exporter)
    write_json(ctx.out / "points.json", [asdict(pt) for pt in points])
    plot_front(points, ctx.out / "pareto.png", f"{p.dataset.name}: teacher size x recipe on {p.sweep.target}")
    front = [pt for pt in points if pt.on_front]
    return {"points": len(points), "front_size": len(front),
            "front": [f"{pt.label}: {pt.accuracy:.2f}% {pt.gzip_bytes} B {pt.latency_p50_ms * 1e3:.1f} us"
                      for pt in front]}


def report(out: Path, metrics: dict | None = None) -> dict[str, str]:
    return {"points_table": front_table(read_json(out / "points.json"))}


STAGE = register_stage(Stage(
    "sweep", run, deps=("dataset",), params=("seed", "teacher", "sweep", "export"), recipe_params=("sweep",),
    code=("squeezeflow.sweep", "squeezeflow.evaluate", "squeezeflow.models", "squeezeflow.training",
          "squeezeflow.compression", "squeezeflow.export", "squeezeflow.runtimes"),
    artifacts=("pareto.png", "points.json"), group="sweep", asset="pareto_sweep", kinds=("pytorch", "onnx", "dvc"),
    report=report,
    description="Teacher size x compression recipe, each deployed and measured on one target; the Pareto front of "
    "accuracy, bytes and latency as a table and a plot (params.yaml: sweep)."))
