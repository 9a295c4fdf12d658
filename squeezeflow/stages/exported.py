"""Stage 6: torch -> ONNX, checked by onnx.checker; parity with torch is measured on the val split."""

from __future__ import annotations

from squeezeflow.data import Splits
from squeezeflow.export import export_onnx, parity
from squeezeflow.models import load_checkpoint
from squeezeflow.stages.base import Stage, StageContext


def run(ctx: StageContext) -> dict:
    model, spec = load_checkpoint(ctx.input("finetuned") / "model.pt")
    path = ctx.out / "model.onnx"
    export_onnx(model, spec.input_shape, path, ctx.params.export.opset)
    val = Splits.load(ctx.input("dataset")).x["val"]
    return {"model_bytes": path.stat().st_size, **parity(model, path, val)}


STAGE = Stage("exported", run, deps=("dataset", "finetuned"), params=("export",), code=("squeezeflow.export", "squeezeflow.models.quant_layers"),
              description="ONNX model")
