"""The `failed` notification: a failure hook on the lifecycle job, so it fires wherever the run executes (the CLI,
the daemon, the launchpad). Promoted / held back / unavailable are sent by each target's `promoted` asset."""

from __future__ import annotations

from dagster import DagsterEventType, HookContext, failure_hook

from squeezeflow.notify import Event


def _targets(context: HookContext, ws) -> list[str]:
    """The failed step's own target, or (a shared step: data, teacher, ...) every target the run selected."""
    own = [t.name for t in ws.targets.values() if context.step_key.startswith(f"{t.key}__")]
    if own:
        return own
    run = context.instance.get_run_by_id(context.run_id) if context.instance else None
    selected = getattr(run, "asset_selection", None)
    if not selected:
        return sorted(ws.targets)
    keys = {k.path[0] for k in selected if len(k.path) > 1}
    return sorted(t.name for t in ws.targets.values() if t.key in keys)


def _reason(context: HookContext) -> str:
    """The CLI's words: a failed blocking check's first failure, else the error's message."""
    exc = context.op_exception
    if exc is not None and type(exc).__name__ == "DagsterAssetCheckFailedError" and context.instance:
        for record in context.instance.get_records_for_run(
                context.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION).records:
            ev = record.event_log_entry.dagster_event.event_specific_data
            if not ev.passed:
                return f"check '{ev.check_name}' on {ev.asset_key.to_user_string()} failed: {ev.description or ''}"
    return f"{type(exc).__name__}: {exc}" if exc is not None else "failed"


@failure_hook(required_resource_keys={"squeezeflow"})
def notify_failure(context: HookContext) -> None:
    try:
        lifecycle = context.resources.squeezeflow.lifecycle
        reason = " ".join(_reason(context).split())[:1500]
        for target in _targets(context, lifecycle.ws):
            lifecycle.notifier.send(Event("failed", target, context.run_id, reason=reason, step=context.step_key),
                                    log=context.log.warning)
    except Exception as exc:  # noqa: BLE001 - a notification never fails the run
        context.log.warning(f"failure notification not sent: {type(exc).__name__}: {exc}")
