"""Promotion by a person, from the launchpad: promote a version (or force one with a reason), or roll back.

Each alias move is also recorded as a materialization of the target's `promoted` asset, so the history shows in
the Dagster UI next to the automatic promotions."""


from dagster import (
    AssetKey,
    AssetMaterialization,
    Config,
    Failure,
    MetadataValue,
    OpExecutionContext,
    in_process_executor,
    job,
    op,
)
from pydantic import Field

from assets.resources import SqueezeflowResource
from squeezeflow.errors import SqueezeflowInputError
from squeezeflow.tracking.promotion import PromotionRecord, PromotionRefused


class _Who(Config):
    target: str = Field("", description="a target in device_targets/ (its model for the current dataset), or ...")
    model_name: str = Field("", description="... the registered model's full name")
    reason: str = Field(description="why: recorded on the version and in the promotion history")
    promoted_by: str = Field(description="who is promoting")


class PromoteConfig(_Who):
    version: str = Field(description="the model version to make champion")
    force: bool = Field(False, description="promote even though the version's gate failed or is missing")


class RollbackConfig(_Who):
    pass


def _materialize(context: OpExecutionContext, squeezeflow: SqueezeflowResource, config: "_Who",
                 record: PromotionRecord) -> None:
    target = config.target or squeezeflow.registry.target_of(record.model_name, record.version)
    before = f"v{record.previous}" if record.previous else "none"
    line = (f"[squeezeflow] {record.action} {record.model_name}: champion {before} -> "
            f"v{record.version} by {record.promoted_by} ({record.reason})")
    context.log.info(line)
    if target and target in squeezeflow.lifecycle.ws.targets:
        from squeezeflow.tracking.model_card import load

        card = load(squeezeflow.lifecycle.tracker, record.model_name, record.version)
        context.log_event(AssetMaterialization(
            asset_key=AssetKey([squeezeflow.lifecycle.ws.targets[target].key, "promoted"]),
            description=line, metadata={
                "model_uri": f"models:/{record.model_name}/{record.version}", "model_name": record.model_name,
                "version": record.version, "alias": "champion", "previous_champion": record.previous or "none",
                "action": record.action, "promoted_by": record.promoted_by, "reason": record.reason,
                "forced": record.forced, "promoted_at": record.at, "history_run_id": record.record_run_id,
                **({"model_card": MetadataValue.md(card[0]), "model_card_uri": card[1]} if card else {})}))


def _refused(exc: Exception) -> Failure:
    return Failure(description=f"not promoted: {exc}")


@op(description="Point the champion alias at a version (refused if its gate failed or is missing, or if it is worse "
    "than today's champion on today's test split, unless forced).")
def promote_version(context: OpExecutionContext, config: PromoteConfig, squeezeflow: SqueezeflowResource) -> None:
    try:
        record = squeezeflow.registry.promote(config.target or None, config.model_name or None, config.version,
                                              config.promoted_by, config.reason, config.force, context.run_id)
    except (PromotionRefused, SqueezeflowInputError) as exc:
        raise _refused(exc) from None
    from squeezeflow.tracking import get_version
    from squeezeflow.tracking.schema import COMPARISON_TAG

    shown = get_version(squeezeflow.lifecycle.tracker, record.model_name, record.version).tags.get(COMPARISON_TAG)
    if shown:
        context.log.info(f"[squeezeflow] compared: {shown}")
    _materialize(context, squeezeflow, config, record)


@op(description="Make the previous champion the champion again.")
def rollback_champion(context: OpExecutionContext, config: RollbackConfig, squeezeflow: SqueezeflowResource) -> None:
    try:
        record = squeezeflow.registry.rollback(config.target or None, config.model_name or None, config.promoted_by,
                                               config.reason, context.run_id)
    except (PromotionRefused, SqueezeflowInputError) as exc:
        raise _refused(exc) from None
    _materialize(context, squeezeflow, config, record)


@job(description="Promote a model version to champion: target (or model_name), version, reason, promoted_by; "
     "force: true with a reason for a version whose gate failed.", tags={"dagster/max_retries": 0},
     executor_def=in_process_executor)  # one small step: a step subprocess would triple the wait
def promote():
    promote_version()


@job(description="Roll back: the previous champion becomes the champion again (target or model_name, reason, "
     "promoted_by).", tags={"dagster/max_retries": 0}, executor_def=in_process_executor)
def rollback():
    rollback_champion()
