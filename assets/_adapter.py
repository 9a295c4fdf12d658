"""What every stage asset does: run (or reuse) its stage, say one line, attach path, hash and metrics."""

from __future__ import annotations

from dagster import AssetExecutionContext, DataVersion, MaterializeResult, MetadataValue

from squeezeflow.lifecycle import StageOutcome


def stage_metadata(outcome: StageOutcome) -> dict:
    meta = {
        "path": MetadataValue.path(str(outcome.path)),
        "dvc_md5": outcome.md5 or "",
        "reused": outcome.reused,
        "seconds": round(outcome.seconds, 3),
        "mlflow_run_id": outcome.mlflow_run_id or "",
    }
    for k, v in outcome.metrics.items():
        if isinstance(v, (list, dict)):
            meta[k] = MetadataValue.json(v)
        else:
            meta[k] = "" if v is None else v
    return meta


def stage_line(outcome: StageOutcome) -> str:
    how = "reused (unchanged in DVC)" if outcome.reused else "built"
    shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in outcome.metrics.items()
                      if isinstance(v, (int, float)) and not isinstance(v, bool))
    return f"[squeezeflow] {outcome.stage:<22} {how:<26} {outcome.seconds:6.1f}s  {shown}"


def run_stage(context: AssetExecutionContext, squeezeflow, stage: str) -> MaterializeResult:
    outcome = squeezeflow.lifecycle.run_stage(stage, context.run_id)
    line = stage_line(outcome)
    context.log.info(line)
    print(line, flush=True)  # the terminal's line per stage; captured into compute logs under the UI
    return MaterializeResult(metadata=stage_metadata(outcome), data_version=DataVersion(outcome.md5 or "none"))
