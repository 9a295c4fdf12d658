"""Retention from the launchpad or on a schedule: the `gc` job (squeezeflow.retention through the lifecycle)."""

from dagster import Config, OpExecutionContext, in_process_executor, job, op
from pydantic import Field

from assets.resources import SqueezeflowResource


class GcConfig(Config):
    keep_versions: int | None = Field(None, ge=0, description="newest versions kept per model; default: params.yaml "
                                      "retention.keep_versions")
    dry_run: bool = Field(False, description="only say what would be removed")


@op(description="Delete registered versions nobody can deploy again (with their model files) and DVC objects "
    "nothing names; never the champion, the challenger or an earlier champion.")
def collect_garbage(context: OpExecutionContext, config: GcConfig, squeezeflow: SqueezeflowResource) -> None:
    removed = squeezeflow.lifecycle.collect_garbage(config.keep_versions, config.dry_run)
    for line in removed.lines(config.dry_run):
        context.log.info(f"[squeezeflow] gc: {line}")


@job(executor_def=in_process_executor, tags={"dagster/max_retries": 0},
     description="Retention: what `squeezeflow gc` does (params.yaml retention:); holds the workspace like a run.")
def gc():
    collect_garbage()
