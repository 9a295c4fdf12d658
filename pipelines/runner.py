"""Run the lifecycle job in this process against the persistent Dagster instance, then report."""

from __future__ import annotations

import sys

from dagster import AssetCheckSeverity, AssetKey, DagsterInstance

from squeezeflow.config import parse_override
from squeezeflow.io import write_text
from squeezeflow.stats import resolution_warning
from squeezeflow.summary import format_table, target_rows, write_summary
from squeezeflow.workspace import Workspace


def _selection(ws: Workspace, targets: list[str]) -> list[AssetKey]:
    """The main line of the stage registry: the chosen targets' chains, the recipe chains they read and the
    run's own recipe's."""
    from assets import TARGET_STEPS, asset_key
    from squeezeflow.naming import recipe_key

    recipes = {None, ws.run_key} | {recipe_key(r) for t in targets for r in ws.targets[t].recipes}
    wanted = [n for n, s in ws.stages.items() if s.group == "lifecycle"
              and (s.target.name in targets if s.target else s.recipe in recipes)]
    needed, todo = set(), list(wanted)
    while todo:
        name = todo.pop()
        if name not in needed:
            needed.add(name)
            todo += ws.stages[name].deps
    keys = [asset_key(s) for n, s in ws.stages.items() if n in needed]
    return keys + [AssetKey([ws.targets[t].key, step]) for t in targets for step in TARGET_STEPS]


def _failed_checks(ws: Workspace, result) -> list[dict]:
    """Failures of the stages' declared checks (data, parity); the gates are read from the candidate records."""
    declared = {s.check.name for s in ws.stages.values() if s.check}
    out = []
    for ev in result.get_asset_check_evaluations():  # a warning (a candidate recipe's export) stops nothing
        if ev.check_name in declared and not ev.passed and ev.severity != AssetCheckSeverity.WARN:
            meta = {k: getattr(v, "value", v) for k, v in ev.metadata.items()}
            out.append({"check": ev.check_name, "asset": ev.asset_key.to_user_string(),
                        "failures": meta.get("failures") or meta, "description": ev.description})
    return out


def _gates(ws: Workspace, run_id: str, targets: list[str]) -> dict[str, dict]:
    """Each gated target's verdict, as the lifecycle recorded it for this run."""
    from squeezeflow.lifecycle import read_candidate

    records = {t: read_candidate(ws, run_id, t) for t in targets}
    return {t: {"passed": c.passed, "checks": c.checks, "reasons": c.reasons, "unavailable": c.unavailable}
            for t, c in records.items() if c}


def _promotions(result) -> dict[str, dict]:
    out = {}
    for ev in result.get_asset_materialization_events():
        mat = ev.step_materialization_data.materialization
        if mat.asset_key.path[-1] == "promoted" and "held_back" not in mat.metadata:
            out[mat.asset_key.path[0]] = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
    return out


def resource_config(ws: Workspace, overrides: list[str], tracking_uri: str | None) -> dict:
    """The squeezeflow resource's run config. A tracking URI with credentials never goes into it (Dagster stores
    run config and shows it in the UI): it reaches the run through this process's environment instead."""
    import os

    from squeezeflow.redact import has_credentials

    resource = {"root": str(ws.root), "overrides": overrides}
    if tracking_uri and has_credentials(tracking_uri):
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    elif tracking_uri:
        resource["tracking_uri"] = tracking_uri
    return resource


def hold_workspace(ws: Workspace, command: str):
    from squeezeflow.runlock import workspace_lock

    return workspace_lock(ws.state_dir / "locks", command, say=lambda line: print(line, file=sys.stderr, flush=True))


def _root_cause(error) -> str:
    """The message of the innermost error; a bad-input error's message already names file, field and value."""
    while error.cause is not None:
        error = error.cause
    line = error.message.strip().splitlines()[-1]
    return line.split(": ", 1)[1] if error.cls_name == "SqueezeflowInputError" and ": " in line else line


def _full_errors(result) -> str:
    parts = []
    for e in result.get_step_failure_events():
        err = e.event_specific_data.error if e.event_specific_data else None
        while err is not None:
            parts.append(f"--- {e.step_key}: {err.cls_name}\n{err.to_string()}")
            err = err.cause
    return "\n".join(parts)


def _run_config(resource: dict, verbose: bool) -> dict:
    # Dagster's console log carries every stack trace: shown with --verbose; otherwise one line per failure here,
    # and the details in the run's log (Dagster UI) and in errors.log beside the summary.
    level = "INFO" if verbose else "CRITICAL"
    return {"resources": {"squeezeflow": {"config": resource}},
            "loggers": {"console": {"config": {"log_level": level}}}}


def exit_code(gates: dict[str, dict], promoted: set[str], targets: list[str], named: bool, failed: bool) -> int:
    """0: every target that can run here was promoted; 3: a gate held one back; 1: the run failed (data check,
    error). A target whose runtime is unavailable here (TensorRT without a GPU) holds the run back only when the
    user named it (`--target`): in the default set it is reported and skipped."""
    if failed:
        return 1
    counted = [t for t in targets if named or not gates.get(t, {}).get("unavailable")]
    if any(not gates[t]["passed"] for t in counted if t in gates) or any(t not in promoted for t in counted):
        return 3
    return 0


def run_lifecycle(ws: Workspace, overrides: list[str], targets: list[str], tracking_uri: str | None = None,
                  verbose: bool = False, named: bool = False) -> int:
    """Exit code: see `exit_code`; `named`: the user chose these targets by name."""
    from pipelines.definitions import build_definitions

    resource = resource_config(ws, overrides, tracking_uri)
    flags = dict(parse_override(o) for o in overrides)
    ws = Workspace(ws.root, overrides=flags)  # the asset graph holds the chain of this run's recipe
    job = build_definitions(ws.root, flags).resolve_job_def("lifecycle")
    run_config = _run_config(resource, verbose)
    print(f"squeezeflow: lifecycle on {ws.root} (targets: {', '.join(targets)})", flush=True)
    # Held before the Dagster instance is opened: two first runs must not create its storage at once either.
    with hold_workspace(ws, "squeezeflow run"), DagsterInstance.get() as instance:
        result = job.execute_in_process(run_config=run_config, instance=instance, raise_on_error=False,
                                        asset_selection=_selection(ws, targets))
    gates, failed_checks = _gates(ws, result.run_id, targets), _failed_checks(ws, result)
    promotions = _promotions(result)
    by_name = {t: ws.targets[t].key for t in targets}
    rows = target_rows(ws, targets, gates, {t: promotions[k] for t, k in by_name.items() if k in promotions})
    # A failed blocking (data, parity) check also fails its step (DagsterAssetCheckFailedError): reported once,
    # as the check. The gates are not blocking: a held-back target leaves the run a success.
    errors = [f"{e.step_key}: {_root_cause(e.event_specific_data.error)}"
              for e in result.get_step_failure_events() if e.event_specific_data and e.event_specific_data.error
              and e.event_specific_data.error.cls_name != "DagsterAssetCheckFailedError"]
    summary = {"dagster_run_id": result.run_id, "success": result.success, "workspace": str(ws.root),
               "targets": rows, "failed_checks": failed_checks, "errors": errors}
    path = write_summary(ws.state_dir / "runs" / result.run_id / "summary.json", summary)
    if errors:
        write_text(path.with_name("errors.log"), _full_errors(result))
    if any(r["accuracy"] is not None for r in rows):
        print("\n" + format_table(rows))
    for r in rows:
        budget = ws.targets[r["target"]].budgets.max_accuracy_drop
        small = r["accuracy"] is not None and resolution_warning(r["test_samples"] or 0, r["accuracy"], budget,
                                                                   r["target"])
        if small:
            print(f"warning: {small}", file=sys.stderr)
    for chk in failed_checks:
        found = chk["failures"] if isinstance(chk["failures"], list) else [chk["failures"]]
        first = (found[0].get("message", found[0]) if found and isinstance(found[0], dict)
                 else (found[0] if found else ""))
        more = f" (and {len(found) - 1} more in {path})" if len(found) > 1 else ""
        print(f"error: check '{chk['check']}' on {chk['asset']} failed: {first}{more}", file=sys.stderr)
    for err in errors:
        print(f"error: {err}", file=sys.stderr)
    if errors:
        print(f"details: {path.with_name('errors.log')} and the run's log in the Dagster UI", file=sys.stderr)
    print(f"\nsummary: {path}")
    print(f"Dagster UI (asset graph, runs, checks): ./sf ui dagster   -> http://127.0.0.1:3000/runs/{result.run_id}")
    print("MLflow UI (runs, lineage, registry):    ./sf ui mlflow    -> http://127.0.0.1:5000")
    for t, g in gates.items():
        if g.get("unavailable"):
            print(f"{t}: unavailable: {g['unavailable']} (not promoted"
                  f"{'' if named else '; not counted in the exit code: name it with --target to require it'})",
                  file=sys.stderr)
    failed = bool(failed_checks or errors) or not result.success
    return exit_code(gates, {t for t, k in by_name.items() if k in promotions}, targets, named, failed)


def run_sweep(ws: Workspace, overrides: list[str], tracking_uri: str | None = None, verbose: bool = False) -> int:
    """The Pareto sweep job (dataset -> pareto_sweep), in this process; prints the points. Exit 0 or 1."""
    from pipelines.definitions import build_definitions
    from squeezeflow.io import read_json

    resource = resource_config(ws, overrides, tracking_uri)
    job = build_definitions(ws.root, dict(parse_override(o) for o in overrides)).resolve_job_def("sweep")
    run_config = _run_config(resource, verbose)
    print(f"squeezeflow: Pareto sweep on {ws.root}", flush=True)
    with hold_workspace(ws, "squeezeflow sweep"), DagsterInstance.get() as instance:
        result = job.execute_in_process(run_config=run_config, instance=instance, raise_on_error=False)
    for e in result.get_step_failure_events():
        if e.event_specific_data and e.event_specific_data.error:
            print(f"error: {e.step_key}: {_root_cause(e.event_specific_data.error)}", file=sys.stderr)
    if not result.success:
        return 1
    from squeezeflow.sweep import front_table

    out = ws.stage_dir("sweep")
    print("\n" + front_table(read_json(out / "points.json")))
    print(f"\nplot: {out / 'pareto.png'} (also in MLflow, run 'sweep', "
          "and in the Dagster UI on the pareto_sweep asset)")
    return 0
