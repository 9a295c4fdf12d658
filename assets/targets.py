"""One chain per hardware target, built from its YAML profile: build -> validated (+ gate) -> promoted."""

from dagster import (AssetCheckResult, AssetCheckSeverity, AssetExecutionContext, AssetKey, MaterializeResult,
                     MetadataValue, asset, asset_check)

from assets._adapter import run_stage
from assets.core import dataset, exported, teacher
from pipelines.resources import SqueezeflowResource
from squeezeflow.targets import TargetProfile

def target_assets(target: TargetProfile) -> tuple[list, list]:
    name, key = target.name, target.key
    group = f"target_{key}"

    @asset(key=AssetKey([key, "build"]), group_name=group, deps=[dataset, exported], kinds={"onnx", "dvc"},
           description=f"{name}: {target.build.builder} build of the exported model. {target.description}")
    def build(context: AssetExecutionContext, squeezeflow: SqueezeflowResource):
        return run_stage(context, squeezeflow, f"build-{name}")

    @asset(key=AssetKey([key, "validated"]), group_name=group, deps=[build, dataset], kinds={"onnxruntime", "dvc"},
           description=f"{name}: accuracy, bytes, latency p50/p95 and throughput through the target's runtime.")
    def validated(context: AssetExecutionContext, squeezeflow: SqueezeflowResource):
        return run_stage(context, squeezeflow, f"validate-{name}")

    @asset_check(asset=validated, name="gate", blocking=True, additional_deps=[teacher],
                 description=f"{name}: accuracy drop vs the teacher, latency p95 and size within the target's budgets.")
    def gate(squeezeflow: SqueezeflowResource) -> AssetCheckResult:
        verdict = squeezeflow.lifecycle.gate(name)
        return AssetCheckResult(
            passed=verdict.passed,
            severity=AssetCheckSeverity.ERROR,
            description="; ".join(c["message"] for c in verdict.checks),
            metadata={"checks": MetadataValue.json(verdict.checks)},
        )

    @asset(key=AssetKey([key, "promoted"]), group_name=group, deps=[validated], kinds={"mlflow"},
           description=f"{name}: registered in MLflow with alias 'champion', only behind a passed gate.")
    def promoted(context: AssetExecutionContext, squeezeflow: SqueezeflowResource) -> MaterializeResult:
        result = squeezeflow.lifecycle.promote(name, context.run_id)
        line = (f"[squeezeflow] promote-{name:<14} {'champion unchanged' if result.reused else 'new champion':<26}"
                f"        {result.model_uri}")
        context.log.info(line)
        print(line, flush=True)
        return MaterializeResult(metadata={"model_uri": result.model_uri, "model_name": result.model_name,
                                           "version": result.version, "new_version": not result.reused})

    return [build, validated, promoted], [gate]
