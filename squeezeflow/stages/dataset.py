"""Stage 1: load the dataset and split it (train/val/test), deterministically by seed."""

from __future__ import annotations

from squeezeflow.data import load_dataset, make_splits
from squeezeflow.stages.base import Stage, StageContext


def run(ctx: StageContext) -> dict:
    data = load_dataset(ctx.params.dataset, source=str(ctx.ws.params_path))
    splits = make_splits(data, ctx.params.split, ctx.params.seed)
    splits.save(ctx.out)
    return {
        "name": data.name,
        "source": data.source,
        "num_classes": data.num_classes,
        "input_shape": list(data.x.shape[1:]),
        "value_range": list(data.value_range) if data.value_range else None,
        "samples": int(len(data.y)),
        **{f"{k}_size": v for k, v in splits.sizes().items()},
    }


STAGE = Stage("dataset", run, params=("seed", "dataset", "split"), input_params=("dataset",), code=("squeezeflow.data",),
              description="dataset splits (train/val/test .npz)")
