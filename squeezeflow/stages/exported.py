"""Stage 6 (per recipe): torch -> ONNX, checked by onnx.checker; parity with torch is measured on the val split."""

from __future__ import annotations

from squeezeflow.data import Splits
from squeezeflow.export import export_onnx, parity
from squeezeflow.models import load_checkpoint
from squeezeflow.stages.base import Check, Stage, StageContext, Verdict, register_stage


def run(ctx: StageContext) -> dict:
    model, spec = load_checkpoint(ctx.input("finetuned") / "model.pt")
    path = ctx.out / "model.onnx"
    how = export_onnx(model, spec.input_shape, path, ctx.params.export.opset, spec.input_dtype,
                      ctx.params.export.exporter)
    val = ctx.splits().x["val"]
    return {"model_bytes": path.stat().st_size, **how, **parity(model, path, val)}


def onnx_matches_torch(inputs, params) -> Verdict:
    """ONNX Runtime vs torch on the val split, recomputed from the files on disk."""
    model, _ = load_checkpoint(inputs["finetuned"] / "model.pt")
    val = Splits.load(inputs["dataset"], params.machine.data_memory_mb).x["val"]
    result, atol = parity(model, inputs["exported"] / "model.onnx", val), params.export.parity_atol
    passed = result["max_abs_diff"] <= atol and result["argmax_agreement"] == 1.0
    message = (f"max |onnx - torch| {result['max_abs_diff']:.3g} (atol {atol:g}), argmax agreement "
               f"{result['argmax_agreement']:.4f}")
    return Verdict(passed, message, {**result, "atol": atol})


STAGE = register_stage(Stage(
    "exported", run, deps=("dataset", "finetuned"), params=("export",), per_recipe=True,
    code=("squeezeflow.export", "squeezeflow.models.quant_layers"), kinds=("onnx", "dvc"),
    description="torch -> ONNX, onnx.checker passed.",
    check=Check("onnx_matches_torch", onnx_matches_torch, description="ONNX Runtime outputs match torch's on the "
                "val split.")))
