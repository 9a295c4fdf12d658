"""Train big, then compress: the Pareto sweep, with its plot shown in the Dagster UI (and logged to MLflow)."""

import base64

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from assets._adapter import run_stage
from assets.core import dataset
from pipelines.resources import SqueezeflowResource
from squeezeflow.io import read_json


def front_table(points: list[dict]) -> str:
    rows = ["| teacher | recipe | accuracy % | gzip bytes | p50 us | front |", "|---|---|---|---|---|---|"]
    for p in sorted(points, key=lambda p: (-p["on_front"], -p["accuracy"])):
        rows.append(f"| x{p['teacher_scale']:g} | {p['recipe']} | {p['accuracy']:.2f} | {p['gzip_bytes']} | "
                    f"{p['latency_p50_ms'] * 1e3:.1f} | {'yes' if p['on_front'] else ''} |")
    return "\n".join(rows)


@asset(group_name="sweep", deps=[dataset], kinds={"pytorch", "onnx", "dvc"},
       description="Teacher size x compression recipe, each deployed and measured on one target; the Pareto front "
       "of accuracy, bytes and latency as a table and a plot (params.yaml: sweep).")
def pareto_sweep(context: AssetExecutionContext, squeezeflow: SqueezeflowResource) -> MaterializeResult:
    result = run_stage(context, squeezeflow, "sweep")
    out = squeezeflow.lifecycle.ws.stage_dir("sweep")
    png = base64.b64encode((out / "pareto.png").read_bytes()).decode()
    meta = {**result.metadata, "plot": MetadataValue.md(f"![Pareto front](data:image/png;base64,{png})"),
            "points_table": MetadataValue.md(front_table(read_json(out / "points.json")))}
    return MaterializeResult(metadata=meta, data_version=result.data_version)
