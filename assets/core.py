"""dataset -> teacher -> compressed -> finetuned -> exported, with the data check and the ONNX parity check."""

from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetCheckSeverity, AssetExecutionContext, MetadataValue, asset, asset_check

from assets._adapter import run_stage
from pipelines.resources import SqueezeflowResource

GROUP = "lifecycle"

@asset(group_name=GROUP, kinds={"numpy", "dvc"}, description="Dataset loaded and split train/val/test by seed (DVC-tracked).")
def dataset(context: AssetExecutionContext, squeezeflow: SqueezeflowResource):
    return run_stage(context, squeezeflow, "dataset")

@asset_check(asset=dataset, blocking=True, description="Great Expectations: finite values in range, |x| <= 1e6, "
             "val/test within train's range, train not constant, labels 0..C-1, every class in every split with >= 2 "
             "in train, <= 10% of val/test rows duplicating train rows, consistent shapes, split sizes as configured.")
def data_expectations(context: AssetCheckExecutionContext, squeezeflow: SqueezeflowResource) -> AssetCheckResult:
    report = squeezeflow.lifecycle.check_data(context.run.run_id)
    return AssetCheckResult(
        passed=report.passed,
        severity=AssetCheckSeverity.ERROR,
        description=report.message()[:2000],
        metadata={"expectations_evaluated": report.evaluated, "failures": MetadataValue.json(report.failures)},
    )

@asset(group_name=GROUP, deps=[dataset], kinds={"pytorch", "dvc"}, description="Train big: the teacher, early-stopped on val.")
def teacher(context: AssetExecutionContext, squeezeflow: SqueezeflowResource):
    return run_stage(context, squeezeflow, "teacher")

@asset(group_name=GROUP, deps=[dataset, teacher], kinds={"pytorch", "dvc"}, description="Distilled into a smaller student, then magnitude-pruned.")
def compressed(context: AssetExecutionContext, squeezeflow: SqueezeflowResource):
    return run_stage(context, squeezeflow, "compressed")

@asset(group_name=GROUP, deps=[dataset, compressed], kinds={"pytorch", "dvc"}, description="Recovery fine-tuning; pruned weights stay zero.")
def finetuned(context: AssetExecutionContext, squeezeflow: SqueezeflowResource):
    return run_stage(context, squeezeflow, "finetuned")

@asset(group_name=GROUP, deps=[dataset, finetuned], kinds={"onnx", "dvc"}, description="torch -> ONNX, onnx.checker passed.")
def exported(context: AssetExecutionContext, squeezeflow: SqueezeflowResource):
    return run_stage(context, squeezeflow, "exported")

@asset_check(asset=exported, blocking=True, description="ONNX Runtime outputs match torch's on the val split.")
def onnx_matches_torch(squeezeflow: SqueezeflowResource) -> AssetCheckResult:
    result, atol = squeezeflow.lifecycle.check_parity()
    return AssetCheckResult(
        passed=result["max_abs_diff"] <= atol and result["argmax_agreement"] == 1.0,
        severity=AssetCheckSeverity.ERROR,
        metadata={**result, "atol": atol},
    )

core_assets = [dataset, teacher, compressed, finetuned, exported]
core_checks = [data_expectations, onnx_matches_torch]
