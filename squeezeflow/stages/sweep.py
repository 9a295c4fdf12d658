"""Off the main line: train big, then compress. Teachers of several sizes, each compressed by each recipe, measured
on one device target; the Pareto front as a table and a plot."""

from __future__ import annotations

import tempfile
from dataclasses import asdict
from pathlib import Path

from squeezeflow.compression.recipe import parse_recipe
from squeezeflow.data import Splits
from squeezeflow.errors import SqueezeflowInputError
from squeezeflow.io import read_json, write_json
from squeezeflow.stages.base import Stage, StageContext
from squeezeflow.stages.teacher import teacher_spec
from squeezeflow.sweep import plot_front, run_sweep
from squeezeflow.workspace import RESOLVED_RECIPES


def run(ctx: StageContext) -> dict:
    p, meta = ctx.params, read_json(ctx.input("dataset") / "metrics.json")
    if p.sweep.target not in ctx.ws.targets:
        raise SqueezeflowInputError("params.yaml", "sweep.target", p.sweep.target,
                                    f"no such device target; known: {sorted(ctx.ws.targets)}")
    recipes = [parse_recipe(r, RESOLVED_RECIPES) for r in ctx.ws.recorded_recipes()["sweep"].values()]
    splits = Splits.load(ctx.input("dataset"))
    spec = teacher_spec(p.teacher, meta, splits.x["train"])
    with tempfile.TemporaryDirectory() as work:
        points = run_sweep(spec, p.teacher.train, p.sweep.teacher_scales, recipes, splits,
                           ctx.ws.targets[p.sweep.target], Path(work), p.seed, opset=p.export.opset,
                           normalize=p.teacher.normalize == "feature")
    write_json(ctx.out / "points.json", [asdict(pt) for pt in points])
    plot_front(points, ctx.out / "pareto.png", f"{p.dataset.name}: teacher size x recipe on {p.sweep.target}")
    front = [pt for pt in points if pt.on_front]
    return {"points": len(points), "front_size": len(front),
            "front": [f"{pt.label}: {pt.accuracy:.2f}% {pt.gzip_bytes} B {pt.latency_p50_ms * 1e3:.1f} us" for pt in front]}


STAGE = Stage("sweep", run, deps=("dataset",), params=("seed", "teacher", "sweep", "export"), recipe_params=("sweep",),
              code=("squeezeflow.sweep", "squeezeflow.evaluate", "squeezeflow.models", "squeezeflow.training",
                    "squeezeflow.compression", "squeezeflow.export", "squeezeflow.runtimes"),
              artifacts=("pareto.png", "points.json"), description="teacher size x recipe Pareto front")
