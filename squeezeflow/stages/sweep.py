"""Off the main line: train big, then compress. Its points are stages of the registry like any other: the teacher
at each size (`teacher-x0_5`) and each sweep recipe's chain on it (`compressed-default-x0_5`, `finetuned-...`,
`exported-...`; at x1 the main line's own). This stage deploys each point on one device target (its builder, its
runtime), measures it on the test split and draws the Pareto front as a table and a plot."""

from __future__ import annotations

import tempfile
from dataclasses import asdict
from pathlib import Path

from squeezeflow.errors import SqueezeflowInputError
from squeezeflow.evaluate import build_and_measure, deploy_and_measure
from squeezeflow.io import read_json, write_json
from squeezeflow.models import load_checkpoint
from squeezeflow.models.flops import flops, parameter_counts
from squeezeflow.naming import recipe_key
from squeezeflow.stages.base import Stage, StageContext, register_stage, scale_tag
from squeezeflow.sweep import Point, front_table, pareto_front, plot_front


def _input(ctx: StageContext, template: str, recipe: str | None, scale: float) -> Path:
    """A sweep point's output folder (the main line's own stage at x1 when it is the same work)."""
    name = template if recipe is None else f"{template}-{recipe}"
    point = f"{name}-{scale_tag(scale)}"
    return ctx.input(point if point in ctx.inputs else name)


def run(ctx: StageContext) -> dict:
    p = ctx.params
    if p.sweep.target not in ctx.targets:
        raise SqueezeflowInputError(ctx.params_source, "sweep.target", p.sweep.target,
                                    f"no such device target; known: {sorted(ctx.targets)}")
    target, splits, points = ctx.targets[p.sweep.target], ctx.splits(), []
    with tempfile.TemporaryDirectory() as work:
        for scale in p.sweep.teacher_scales:
            teacher, tspec = load_checkpoint(_input(ctx, "teacher", None, scale) / "model.pt")
            m = deploy_and_measure(teacher, tspec, splits, Path(work) / f"{scale_tag(scale)}-teacher", target,
                                   p.export.opset, p.export.exporter)
            points.append(Point(scale, "teacher", m["accuracy"], m["model_gzip_bytes"], m["latency_p50_ms"],
                                m["parameters"], m["flops"]))
            for ref in p.sweep.recipes:
                key = recipe_key(ref)
                model, spec = load_checkpoint(_input(ctx, "finetuned", key, scale) / "model.pt")
                m = build_and_measure(_input(ctx, "exported", key, scale) / "model.onnx", splits,
                                      Path(work) / f"{scale_tag(scale)}-{key}", target)
                points.append(Point(scale, ctx.recipe_name(key), m["accuracy"], m["model_gzip_bytes"],
                                    m["latency_p50_ms"], parameter_counts(model)["parameters"],
                                    flops(model, spec.input_shape)))
    points = pareto_front(points)
    write_json(ctx.out / "points.json", [asdict(pt) for pt in points])
    plot_front(points, ctx.out / "pareto.png", f"{p.dataset.name}: teacher size x recipe on {p.sweep.target}")
    front = [pt for pt in points if pt.on_front]
    return {"points": len(points), "front_size": len(front),
            "front": [f"{pt.label}: {pt.accuracy:.2f}% {pt.gzip_bytes} B {pt.latency_p50_ms * 1e3:.1f} us"
                      for pt in front]}


def report(out: Path, metrics: dict | None = None) -> dict[str, str]:
    return {"points_table": front_table(read_json(out / "points.json"))}


STAGE = register_stage(Stage(
    "sweep", run, deps=("dataset",), sweep_points=("teacher", "finetuned", "exported"),
    params=("seed", "sweep", "export"), code=("squeezeflow.sweep", "squeezeflow.evaluate", "squeezeflow.runtimes"),
    artifacts=("pareto.png", "points.json"), group="sweep", asset="pareto_sweep", kinds=("onnx", "dvc"),
    report=report,
    description="Teacher size x compression recipe, each deployed and measured on one target; the Pareto front of "
    "accuracy, bytes and latency as a table and a plot (params.yaml: sweep)."))
