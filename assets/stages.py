"""Every stage of the registry (squeezeflow.stages) as a Dagster asset, its blocking check included.

Nothing here is specific to a stage: the asset's key, deps, group, kinds, description and check come from the
stage's declaration, so a new stage module appears in the asset graph without a change here.
"""


from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    MaterializeResult,
    asset,
)

from assets._adapter import metadata_values, pooled, run_stage
from assets.resources import SqueezeflowResource
from squeezeflow.stages import Stage


def asset_key(stage: Stage) -> AssetKey:
    """`teacher`; `cpu_int8/build` for a per-target stage; `compressed` for the run's recipe's chain (whichever
    recipe a run chooses), `recipe_small/compressed` for a candidate's; `sweep_x0_5/teacher`,
    `sweep_x0_5_small/compressed` for a point of the sweep."""
    if stage.run_chain:
        return AssetKey(stage.asset_name)
    if stage.target:
        return AssetKey([stage.target.key, stage.asset_name])
    if stage.scale is not None:  # its own name on the graph: `compressed_default_x0_5`
        return AssetKey(["sweep", stage.name.replace("-", "_")])
    if stage.recipe:
        return AssetKey([recipe_group(stage.recipe), stage.asset_name])
    return AssetKey(stage.asset_name)


def target_group(target_key: str) -> str:
    return f"target_{target_key}"


def recipe_group(recipe: str) -> str:
    return f"recipe_{recipe.replace('-', '_')}"


def group_of(stage: Stage) -> str:
    if stage.target:
        return target_group(stage.target.key)
    return recipe_group(stage.recipe) if stage.recipe and not stage.run_chain and stage.scale is None else stage.group


def stage_asset(stage: Stage, stages: dict[str, Stage], run_key: str):
    """`run_key`: the run's recipe when the graph was loaded. A run that chooses another (the launchpad's `recipe`)
    runs that recipe's chain in the plain `compressed`/`finetuned`/`exported` assets, and a stage then runs what it
    reads that this graph has no asset for (the chain of the recipe it was loaded with, when a target lists it)."""
    key = asset_key(stage)
    # A candidate recipe's failed check is that candidate's reason in its targets' selection, not a stop for them.
    blocking = not (stage.recipe and not stage.run_chain)
    specs = [AssetCheckSpec(stage.check.name, asset=key, blocking=blocking, description=stage.check.description)] \
        if stage.check else []

    @asset(key=key, group_name=group_of(stage),
           deps=[asset_key(stages[d]) for d in stage.deps], kinds=set(stage.kinds), check_specs=specs,
           description=stage.description,
           **pooled(stage.target.device_pool if stage.measures and stage.target else None))
    def _stage(context: AssetExecutionContext, squeezeflow: SqueezeflowResource) -> MaterializeResult:
        lifecycle = squeezeflow.lifecycle
        name = lifecycle.ws.recipe_stage(stage.base) if stage.run_chain else stage.name
        result = run_stage(context, squeezeflow, name, ensure_deps=lifecycle.ws.run_key != run_key)
        if not stage.check:
            return result
        verdict = lifecycle.run_check(name, context.run_id)
        if not verdict.passed:  # the run's log says what broke in the CLI's words, before Dagster's own error
            context.log.error(f"check '{stage.check.name}' on {key.to_user_string()} failed: {verdict.message}")
        return MaterializeResult(metadata=result.metadata, data_version=result.data_version, check_results=[
            AssetCheckResult(check_name=stage.check.name, asset_key=key, passed=verdict.passed,
                             severity=AssetCheckSeverity.ERROR if blocking else AssetCheckSeverity.WARN,
                             description=verdict.message[:2000],
                             metadata=metadata_values(verdict.metadata))])

    return _stage


def stage_assets(stages: dict[str, Stage], run_key: str) -> list:
    return [stage_asset(s, stages, run_key) for s in stages.values()]


