"""What every stage asset does: run (or reuse) its stage, say one line, attach path, hash, metrics and pictures."""

from __future__ import annotations

import base64

from dagster import AssetExecutionContext, DataVersion, MaterializeResult, MetadataValue

from squeezeflow.lifecycle import StageOutcome
from squeezeflow.lifecycle.stages import STAGE_PEAK_RSS

# Dagster pools limit a pool's steps across runs on an instance whose `concurrency.pools` sets limits (the shared
# stack's infra/dagster.yaml); the same name as an op tag lets the multiprocess executor hold them to one at a time
# within a run on an instance that has none (pipelines.executors).
POOL_TAG = "squeezeflow/pool"


def pooled(pool: str | None) -> dict:
    """`@asset` arguments that put a step in `pool` (none: no pool)."""
    return {"pool": pool, "op_tags": {POOL_TAG: pool} if pool else None}


def metadata_values(values: dict) -> dict:
    """Plain values as Dagster metadata: lists and dicts as JSON, None as an empty string."""
    return {k: MetadataValue.json(v) if isinstance(v, (list, dict)) else ("" if v is None else v)
            for k, v in values.items()}


def stage_metadata(outcome: StageOutcome, stage=None) -> dict:
    meta = {
        "path": MetadataValue.path(str(outcome.path)),
        "dvc_md5": outcome.md5 or "",
        "reused": outcome.reused,
        "seconds": round(outcome.seconds, 3),
        "mlflow_run_id": outcome.mlflow_run_id or "",
        **metadata_values(outcome.metrics),
    }
    pngs = [a for a in (stage.artifacts if stage else ()) if a.endswith(".png")]
    for artifact in pngs:  # plots shown in the UI, as in MLflow
        if (outcome.path / artifact).exists():
            png = base64.b64encode((outcome.path / artifact).read_bytes()).decode()
            key = "plot" if len(pngs) == 1 else f"plot_{artifact.removesuffix('.png')}"
            meta[key] = MetadataValue.md(f"![{artifact}](data:image/png;base64,{png})")
    if stage is not None and stage.report:
        meta.update({k: MetadataValue.md(v) for k, v in stage.report(outcome.path, outcome.metrics).items()})
    return meta


def stage_line(outcome: StageOutcome) -> str:
    how = "reused (unchanged in DVC)" if outcome.reused else "built"
    shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in outcome.metrics.items()
                      if isinstance(v, (int, float)) and not isinstance(v, bool) and not k.startswith("stage_"))
    peak = outcome.metrics.get(STAGE_PEAK_RSS) if not outcome.reused else None
    memory = f" peak {peak:5.0f} MB" if peak else ""
    return f"[squeezeflow] {outcome.stage:<22} {how:<26} {outcome.seconds:6.1f}s{memory}  {shown}"


def say(context: AssetExecutionContext, line: str) -> None:
    context.log.info(line)
    print(line, flush=True)  # the terminal's line per stage; captured into compute logs under the UI


def run_stage(context: AssetExecutionContext, squeezeflow, stage: str, ensure_deps: bool = False) -> MaterializeResult:
    from assets.pipes import pipes_starter
    from squeezeflow.training import distributed

    lifecycle = squeezeflow.lifecycle
    with distributed.started_by(pipes_starter(context)):  # a stage that trains in N processes: through Pipes
        outcome = lifecycle.run_stage(stage, context.run_id, ensure_deps=ensure_deps,
                                      say=lambda line: say(context, line))
    say(context, stage_line(outcome))
    return MaterializeResult(metadata=stage_metadata(outcome, lifecycle.ws.stages[stage]),
                             data_version=DataVersion(outcome.md5 or "none"))
