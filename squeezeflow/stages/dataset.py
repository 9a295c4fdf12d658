"""Stage 1: load the dataset and split it (train/val/test), deterministically by seed."""

from __future__ import annotations

from squeezeflow.data import load_dataset, make_splits
from squeezeflow.io import input_array
from squeezeflow.stages.base import Check, Stage, StageContext, Verdict, register_stage
from squeezeflow.tracking.schema import DATA_CHECK_TAG


def run(ctx: StageContext) -> dict:
    data = load_dataset(ctx.params.dataset, source=ctx.params_source)
    splits = make_splits(data, ctx.params.split, ctx.params.seed)
    splits.save(ctx.out)
    return {
        "name": data.name,
        "source": data.source,
        "num_classes": data.num_classes,
        "input_shape": list(data.x.shape[1:]),
        "input_dtype": str(input_array(data.x[:1]).dtype),
        "value_range": list(data.value_range) if data.value_range else None,
        "samples": int(len(data.y)),
        "presplit": data.presplit is not None,
        **{f"{k}_size": v for k, v in splits.sizes().items()},
    }


def data_expectations(inputs, params) -> Verdict:
    """Great Expectations on the splits (squeezeflow.data.checks)."""
    from squeezeflow.data import Splits
    from squeezeflow.data.checks import DataCheckSpec, check_splits
    from squeezeflow.data.splits import expected_sizes
    from squeezeflow.io import read_json

    meta = read_json(inputs["dataset"] / "metrics.json")
    spec = DataCheckSpec(source=meta["source"], num_classes=meta["num_classes"], input_shape=tuple(meta["input_shape"]),
                         value_range=tuple(meta["value_range"]) if meta.get("value_range") else None,
                         split_sizes={s: meta[f"{s}_size"] for s in ("train", "val", "test")} if meta.get("presplit")
                         else expected_sizes(meta["samples"], params.split))
    report = check_splits(Splits.load(inputs["dataset"], params.machine.data_memory_mb), spec)
    verdict = f"passed ({report.evaluated} expectations)" if report.passed else f"failed: {report.message()}"
    return Verdict(report.passed, report.message(), {"expectations_evaluated": report.evaluated,
                                                     "failures": report.failures, "engine": "great_expectations",
                                                     "tag_value": verdict})


STAGE = register_stage(Stage(
    "dataset", run, params=("seed", "dataset", "split"), input_params=("dataset",), code=("squeezeflow.data",),
    description="Dataset loaded and split train/val/test by seed (DVC-tracked).", kinds=("numpy", "dvc"),
    logs_data=True,
    check=Check("data_expectations", data_expectations, tag=DATA_CHECK_TAG, description=(
        "Great Expectations: finite values in range, |x| <= 1e6, val/test within train's range, train not constant, "
        "labels 0..C-1, every class in every split with >= 2 in train, <= 10% of val/test rows duplicating train "
        "rows, consistent shapes, split sizes as configured."))))
