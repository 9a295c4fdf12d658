"""The end of each hardware target's chain: candidate (gate + registration) -> promoted."""

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    MaterializeResult,
    MetadataValue,
    asset,
)

from assets._adapter import pooled, say
from assets.resources import SqueezeflowResource
from assets.stages import asset_key, target_group
from squeezeflow.lifecycle import read_candidate
from squeezeflow.notify import Event
from squeezeflow.stages import Stage, stage_name
from squeezeflow.targets import TargetProfile

TARGET_STEPS = ("candidate", "promoted")  # after the target's stages: gate + registration, then promotion


# Registration and alias moves, one at a time across runs and workers of a shared instance (its pool limit 1,
# infra/dagster.yaml); on one machine the registry's file lock does the same.
REGISTRY_POOL = "squeezeflow-registry"


def running(context: AssetExecutionContext):
    """Whether a Dagster run (by id) is still going: this one, or one the instance has not seen finish."""
    def alive(run_id: str) -> bool:
        if run_id == context.run_id:
            return True
        run = context.instance.get_run_by_id(run_id) if run_id else None
        return run is not None and not run.is_finished
    return alive


def target_assets(target: TargetProfile, stages: dict[str, Stage]) -> list:
    """The registry's per-target stages (build, validated) come from assets.stages; these two close the chain."""
    name, key = target.name, target.key
    group = target_group(key)
    candidate_key = AssetKey([key, "candidate"])
    validated = asset_key(stages[stage_name("validate", name)])

    @asset(key=candidate_key, group_name=group, deps=[validated, AssetKey("teacher")], kinds={"mlflow"},
           **pooled(REGISTRY_POOL),
           # Not blocking: a candidate held back by its gate is a failed check and an unpromoted target, not a
           # failed run (a Failure in Dagster means something broke). The promoted step reads the verdict.
           check_specs=[AssetCheckSpec("gate", asset=candidate_key, blocking=False,
                                       description=f"{name}: absolute budgets, and no regression against the "
                                       "current champion measured side by side (confidence intervals); a "
                                       "runtime unavailable here is a warning (skipped), not an error")],
           description=f"{name}: gated (budgets, and side by side against the champion) and registered in MLflow "
           "as a model version carrying its verdict and report.")
    def candidate(context: AssetExecutionContext, squeezeflow: SqueezeflowResource) -> MaterializeResult:
        for note in squeezeflow.lifecycle.recover_shared_registry(running(context)):
            say(context, f"[squeezeflow] recovered: {note}")
        cand = squeezeflow.lifecycle.evaluate_candidate(name, context.run_id)
        verdict = "gate passed" if cand.passed else "gate FAILED"
        how = "registered" if cand.new else "already registered"
        if cand.unavailable:
            say(context, f"[squeezeflow] {stage_name('candidate', name):<22} unavailable: {cand.unavailable} "
                         "(skipped: not registered)")
        else:
            say(context, f"[squeezeflow] {stage_name('candidate', name):<22} {verdict}, {how} as "
                         f"{cand.model_name} v{cand.version}")
        for reason in cand.reasons:
            say(context, f"[squeezeflow]   {name}: {reason}")
        meta = {"model_name": cand.model_name, "version": cand.version or "(not registered)",
                "new_version": cand.new, "gate_report": cand.report_uri,
                **({"unavailable": cand.unavailable} if cand.unavailable else {})}
        check_meta = {"version": cand.version or "(not registered)", "report_uri": cand.report_uri,
                      "checks": MetadataValue.json(cand.checks)}
        if cand.report_md:
            check_meta["report"] = MetadataValue.md(cand.report_md)
        severity = AssetCheckSeverity.WARN if cand.unavailable else AssetCheckSeverity.ERROR
        about = f"skipped: unavailable: {cand.unavailable}" if cand.unavailable else "; ".join(cand.reasons) or verdict
        return MaterializeResult(metadata=meta, check_results=[AssetCheckResult(
            check_name="gate", asset_key=candidate_key, passed=cand.passed, severity=severity,
            description=about[:2000], metadata=check_meta)])

    @asset(key=AssetKey([key, "promoted"]), group_name=group, deps=[candidate], kinds={"mlflow"},
           **pooled(REGISTRY_POOL),
           description=f"{name}: promotion: {target.promotion} (auto: a new passing version becomes 'champion'; "
           "manual: it gets the alias 'challenger' for a person to promote with the promote job).")
    def promoted(context: AssetExecutionContext, squeezeflow: SqueezeflowResource) -> MaterializeResult:
        lifecycle = squeezeflow.lifecycle
        for note in lifecycle.recover_shared_registry(running(context)):
            say(context, f"[squeezeflow] recovered: {note}")
        held = lifecycle.held_back(name, context.run_id)
        if held:  # nothing promoted; the champion (if any) stays
            unavailable = held.startswith("unavailable")
            say(context, f"[squeezeflow] {stage_name('promote', name):<22} "
                         f"{'skipped' if unavailable else 'held back'}: {held}")
            cand = read_candidate(lifecycle.ws, context.run_id, name)
            lifecycle.notifier.send(Event("unavailable" if unavailable else "held_back", name, context.run_id,
                                          cand.model_name, cand.version, reason=held), log=context.log.warning)
            card = _card(context, lifecycle, cand.model_name, cand.version) if cand.new else {}
            return MaterializeResult(metadata={"held_back": held[:2000], "alias": "(unchanged)",
                                               "new_version": False, **card})
        result = lifecycle.promote(name, context.run_id)
        if result.new_version and result.alias:
            lifecycle.notifier.send(Event("promoted", name, context.run_id, result.model_name, result.version,
                                          result.alias), log=context.log.warning)
        what = {"champion": "new champion", "challenger": "challenger"}.get(result.alias, "unchanged")
        if not result.new_version:
            what = f"unchanged ({result.alias or 'no alias'})"
        say(context, f"[squeezeflow] {stage_name('promote', name):<22} {what:<33} {result.model_uri}"
                     + (f" ({result.note})" if result.alias == "challenger" and result.note else ""))
        card = _card(context, lifecycle, result.model_name, result.version) if result.new_version else {}
        if result.new_version and result.alias == "champion" and result.previous_champion:
            _card(context, lifecycle, result.model_name, result.previous_champion)  # its history: replaced
        return MaterializeResult(metadata={
            "model_uri": result.model_uri, "model_name": result.model_name, "version": result.version,
            "alias": result.alias or "(unchanged)", "new_version": result.new_version,
            "previous_champion": result.previous_champion or "none", **({"note": result.note} if result.note else {}),
            "promoted_by": "squeezeflow (auto)" if result.alias == "champion" and result.new_version else "", **card})

    return [candidate, promoted]


def _card(context: AssetExecutionContext, lifecycle, model_name: str, version: str) -> dict:
    """The version's model card, written to MLflow, as the asset's metadata; a failure to write it is a warning."""
    try:
        card, uri = lifecycle.publish_card(model_name, version)
    except Exception as exc:  # noqa: BLE001 - the verdict and the alias stand without their card
        context.log.warning(f"model card of {model_name} v{version} not written: {type(exc).__name__}: {exc}")
        return {}
    return {"model_card": MetadataValue.md(card), "model_card_uri": uri}
