"""End to end, on real Dagster, MLflow (SQLite), DVC (local remote) and Great Expectations. Few and small."""

import json

import numpy as np
import onnx
import pytest
import yaml
from dagster import DagsterInstance
from mlflow import MlflowClient

from pipelines.runner import run_lifecycle
from squeezeflow.io import sha256_tree
from squeezeflow.lifecycle import Lifecycle, run_stage_locally
from squeezeflow.runtimes.trt import unavailable
from squeezeflow.tracking import champion
from squeezeflow.workspace import Workspace
from tests.conftest import lifecycle_env, make_workspace, write_target
from tests.receiver import Receiver, unused_port_url

pytestmark = pytest.mark.slow
TARGETS = ["cpu-fp32", "cpu-int8", "edge-fp32-2t"]


def last_summary(ws: Workspace) -> dict:
    runs = sorted((ws.state_dir / "runs").glob("*/summary.json"), key=lambda p: p.stat().st_mtime)
    return json.loads(runs[-1].read_text())


def dagster_view(ws: Workspace, target_key: str) -> tuple[str, dict, dict]:
    """What the Dagster UI shows for the last run: its status, the target's gate check (status, severity,
    description) and its promoted asset's metadata."""
    from dagster import AssetCheckKey, AssetKey

    run_id = last_summary(ws)["dagster_run_id"]
    with DagsterInstance.get() as instance:
        status = instance.get_run_by_id(run_id).status.value
        key = AssetCheckKey(AssetKey([target_key, "candidate"]), "gate")
        record = instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]
        evaluation = record.event.dagster_event.event_specific_data
        assert record.run_id == run_id
        mats = instance.fetch_materializations(AssetKey([target_key, "promoted"]), limit=1).records
        promoted = {k: getattr(v, "value", v) for k, v in mats[0].asset_materialization.metadata.items()}
        assert mats[0].run_id == run_id
    return status, {"status": record.status.value, "severity": evaluation.severity.value,
                    "description": evaluation.description}, promoted


def client(ws: Workspace) -> MlflowClient:
    uri = f"sqlite:///{ws.state_dir / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@pytest.fixture(scope="module")
def webhook():
    """A webhook receiver on loopback that every run of this module notifies (params.yaml notify, by env)."""
    import os

    with Receiver() as rx:
        os.environ["SQUEEZEFLOW_WEBHOOK_URL"] = rx.url
        try:
            yield rx
        finally:
            os.environ.pop("SQUEEZEFLOW_WEBHOOK_URL", None)


def messages(rx: Receiver, ws: Workspace) -> list[tuple[str, str]]:
    """(event, target) of each message the last run sent."""
    run_id = last_summary(ws)["dagster_run_id"]
    return sorted((b["event"], b["target"]) for b in rx.bodies if b["run_id"] == run_id)


@pytest.fixture(scope="module")
def env(tmp_path_factory, webhook):
    base = tmp_path_factory.mktemp("lifecycle")
    with lifecycle_env(base):
        yield base


@pytest.fixture(scope="module")
def first_run(env):
    root = make_workspace(env / "ws")
    # A target added by a YAML file only: it must get its own chain.
    p = write_target(root / "device_targets", "edge-fp32-2t")
    spec = yaml.safe_load(p.read_text())
    spec["measure"]["threads"] = 2
    p.write_text(yaml.safe_dump(spec))
    ws = Workspace(root)
    rc = run_lifecycle(ws, [], TARGETS)
    return ws, rc, last_summary(ws)


def test_every_target_is_validated_gated_and_promoted(first_run, webhook):
    ws, rc, summary = first_run
    assert rc == 0 and summary["success"]
    rows = {r["target"]: r for r in summary["targets"]}
    assert set(rows) == set(TARGETS)
    for row in rows.values():
        assert row["gate"] == "pass" and row["promoted"] == "champion"
        assert 0 < row["accuracy"] <= 100 and row["bytes"] > 0 and row["p50 ms"] <= row["p95 ms"]
    assert rows["cpu-int8"]["bytes"] < rows["cpu-fp32"]["bytes"]
    assert rows["edge-fp32-2t"]["model URI"] == "models:/squeezeflow-digits-edge-fp32-2t/1"
    # one webhook message per target: promoted, naming the version and its alias
    assert messages(webhook, ws) == [("promoted", t) for t in sorted(TARGETS)]
    assert {b["target"]: (b["version"], b["alias"]) for b in webhook.bodies}["cpu-int8"] == ("1", "champion")


def test_checks_ran_and_passed_in_dagster(first_run):
    ws, _, summary = first_run
    with DagsterInstance.get() as instance:
        run = instance.get_run_by_id(summary["dagster_run_id"])
        assert run is not None and run.job_name == "lifecycle"
        from dagster import AssetCheckKey, AssetKey

        for key in [AssetCheckKey(AssetKey("dataset"), "data_expectations"),
                    AssetCheckKey(AssetKey("exported"), "onnx_matches_torch"),
                    AssetCheckKey(AssetKey(["edge_fp32_2t", "candidate"]), "gate")]:
            record = instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]
            assert record.run_id == summary["dagster_run_id"] and record.status.value == "SUCCEEDED"


def test_checkpoints_are_dvc_tracked_and_pushed(first_run):
    ws, _, _ = first_run
    lock = yaml.safe_load((ws.root / "dvc.lock").read_text())["stages"]
    assert {s for s, st in ws.stages.items() if st.group != "sweep"} == set(lock)  # the sweep is its own job
    remote = ws.state_dir / "dvc-remote"
    pushed = {p.name for p in remote.rglob("*") if p.is_file()}
    for stage in ("teacher", "exported-tiny", "build-cpu-int8"):
        md5 = lock[stage]["outs"][0]["md5"]
        assert md5.removesuffix(".dir")[2:] + ".dir" in pushed


def test_promoted_model_carries_its_lineage_in_mlflow(first_run):
    ws, _, summary = first_run
    c = client(ws)
    mv = champion(type("T", (), {"client": c})(), "squeezeflow-digits-cpu-int8")
    lock = yaml.safe_load((ws.root / "dvc.lock").read_text())["stages"]
    assert mv.tags["squeezeflow.dagster_run_id"] == summary["dagster_run_id"]
    assert "mlflow.source.git.commit" in mv.tags
    for stage in ("dataset", "teacher", "compressed-tiny", "finetuned-tiny", "exported-tiny", "build-cpu-int8"):
        assert mv.tags[f"squeezeflow.dvc.{stage}"] == lock[stage]["outs"][0]["md5"]
    assert "squeezeflow.dvc.build-cpu-fp32" not in mv.tags  # another target's chain is not this model's lineage
    exp = c.get_experiment_by_name("squeezeflow")
    runs = c.search_runs([exp.experiment_id], f"tags.`squeezeflow.run_key` = '{summary['dagster_run_id']}'")
    parent = [r for r in runs if r.data.tags["squeezeflow.stage"] == "pipeline"]
    assert len(parent) == 1 and parent[0].data.params["teacher.hidden"] == "[64]"
    children = {r.data.tags["squeezeflow.stage"] for r in runs
                if r.data.tags.get("mlflow.parentRunId") == parent[0].info.run_id}
    assert {"dataset", "teacher", "compressed-tiny", "finetuned-tiny", "exported-tiny", "build-cpu-int8",
            "validate-cpu-int8", "gate-cpu-int8", "promote-cpu-int8"} <= children
    assert parent[0].data.tags["squeezeflow.data_check"].startswith("passed (")
    assert mv.tags["squeezeflow.gate"] == "passed" and mv.tags["squeezeflow.gate_champion"] == "none"
    gate_run = c.get_run(mv.tags["squeezeflow.gate_run_id"])
    assert mv.run_id == gate_run.info.run_id and gate_run.data.tags["squeezeflow.run_key"] == summary["dagster_run_id"]
    report = json.loads(open(c.download_artifacts(gate_run.info.run_id, "gate_report.json", str(ws.state_dir))).read())
    assert report["verdict"] == "passed" and report["champion"] is None
    assert report["notes"] == ["no champion yet: only the absolute budgets apply"]
    assert "Gate PASSED" in mv.description and "no champion yet" in mv.description
    assert {d.dataset.name for d in parent[0].inputs.dataset_inputs} == {"digits-train", "digits-val", "digits-test"}


def test_the_recipe_is_a_dvc_param_and_logged_whole_to_mlflow(first_run):
    ws, _, summary = first_run
    lock = yaml.safe_load((ws.root / "dvc.lock").read_text())["stages"]
    recorded = lock["compressed-tiny"]["params"][".squeezeflow/recipes.yaml"]
    assert recorded["recipes.tiny.name"] == "tiny"
    assert recorded["recipes.tiny.steps"][1]["technique"] == "prune-magnitude"
    assert "recipes.tiny.finetune" in lock["finetuned-tiny"]["params"][".squeezeflow/recipes.yaml"]
    c = client(ws)
    (run,) = c.search_runs([c.get_experiment_by_name("squeezeflow").experiment_id],
                           f"tags.`squeezeflow.stage` = 'compressed-tiny' and "
                           f"tags.`squeezeflow.run_key` = '{summary['dagster_run_id']}'")
    assert run.data.params["recipe.recipes.tiny.name"] == "tiny"
    local = c.download_artifacts(run.info.run_id, "recipe.yaml", str(ws.root / ".squeezeflow"))
    assert yaml.safe_load(open(local))["steps"][0]["student"]["hidden"] == [16]


def test_warm_rerun_reuses_everything_and_keeps_the_champion(first_run):
    ws, _, _ = first_run
    before = champion(type("T", (), {"client": client(ws)})(), "squeezeflow-digits-cpu-fp32").version
    teacher_mtime = (ws.stage_dir("teacher") / "model.pt").stat().st_mtime
    assert run_lifecycle(ws, [], TARGETS) == 0
    summary = last_summary(ws)
    c = client(ws)
    runs = c.search_runs([c.get_experiment_by_name("squeezeflow").experiment_id],
                         f"tags.`squeezeflow.run_key` = '{summary['dagster_run_id']}'")
    reused = {r.data.tags["squeezeflow.stage"]: r.data.tags.get("squeezeflow.reused") for r in runs}
    assert all(reused[s] == "true" for s, st in ws.stages.items() if st.group != "sweep"), reused
    assert (ws.stage_dir("teacher") / "model.pt").stat().st_mtime == teacher_mtime
    assert champion(type("T", (), {"client": c})(), "squeezeflow-digits-cpu-fp32").version == before


def set_target(ws: Workspace, name: str, **sections) -> None:
    path = ws.targets_dir / f"{name}.yaml"
    spec = yaml.safe_load(path.read_text())
    for section, values in sections.items():
        spec[section] = {**spec.get(section, {}), **values}
    path.write_text(yaml.safe_dump(spec))


def add_recipe(ws: Workspace, name: str, student_hidden: list[int], epochs: int) -> None:
    recipe = {"name": name, "steps": [{"technique": "distill", "student": {"arch": "mlp", "hidden": student_hidden},
                                       "train": {"epochs": epochs, "patience": 3}}],
              "finetune": {"train": {"epochs": 1, "patience": 1}}}
    (ws.root / "recipes" / f"{name}.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))


def blocked_run(ws: Workspace, overrides: list[str]) -> tuple[dict, list[dict]]:
    """Run cpu-fp32 with overrides; it must be held back. Returns the summary row and the failed gate checks."""
    c = client(ws)
    before = champion(type("T", (), {"client": c})(), "squeezeflow-digits-cpu-fp32").version
    count = len(c.search_model_versions("name = 'squeezeflow-digits-cpu-fp32'"))
    assert run_lifecycle(Workspace(ws.root), overrides, ["cpu-fp32"]) == 3
    row = last_summary(ws)["targets"][0]
    assert row["gate"] == "FAIL" and row["promoted"] == "no"
    # In Dagster: the run is a success (nothing broke), the gate a failed check, the target held back.
    status, gate, promoted = dagster_view(ws, "cpu_fp32")
    assert status == "SUCCESS" and gate["status"] == "FAILED" and gate["severity"] == "ERROR"
    assert promoted["held_back"].startswith("gate failed: ") and promoted["alias"] == "(unchanged)"
    assert champion(type("T", (), {"client": c})(), "squeezeflow-digits-cpu-fp32").version == before
    # The candidate is registered with its failed verdict (a person may still force it), without an alias.
    versions = c.search_model_versions("name = 'squeezeflow-digits-cpu-fp32'")
    assert len(versions) == count + 1
    new = max(versions, key=lambda v: int(v.version))
    assert new.tags["squeezeflow.gate"] == "failed" and not new.aliases
    assert new.tags["squeezeflow.gate_champion"] == f"v{before}"
    report = json.loads(open(c.download_artifacts(new.tags["squeezeflow.gate_run_id"], "gate_report.json",
                                                   str(ws.state_dir))).read())
    assert report["champion"]["version"] == str(before) and report["verdict"] == "failed"
    return row, [chk for chk in report["checks"] if not chk["passed"]]


def test_a_failing_absolute_budget_leaves_the_previous_champion(first_run, webhook):
    ws, _, _ = first_run
    set_target(ws, "cpu-fp32", budgets={"max_latency_p95_ms": 1e-6})
    _, failed = blocked_run(ws, ["seed=1"])  # a new model (another seed) that would otherwise be considered
    assert "latency_p95_ms" in [chk["name"] for chk in failed]
    assert messages(webhook, ws) == [("held_back", "cpu-fp32")]
    [body] = [b for b in webhook.bodies if b["run_id"] == last_summary(ws)["dagster_run_id"]]
    assert "latency_p95_ms" in body["reason"] and "held back on cpu-fp32" in body["text"]
    set_target(ws, "cpu-fp32", budgets={"max_latency_p95_ms": 50.0})


def test_a_target_whose_memory_cap_is_too_small_fails_its_gate_and_nothing_else(first_run, monkeypatch):
    ws, _, _ = first_run
    set_target(ws, "cpu-fp32", measure={"memory_limit_mb": 64})  # validation runs in a process capped at 64 MB
    # ... and the webhook is unreachable this time: retried, logged, and the run's outcome is unchanged
    monkeypatch.setenv("SQUEEZEFLOW_WEBHOOK_URL", unused_port_url())
    assert run_lifecycle(Workspace(ws.root), ["seed=3"], ["cpu-fp32", "cpu-int8"]) == 3  # a gate, not an error
    status, _, _ = dagster_view(ws, "cpu_fp32")
    with DagsterInstance.get() as instance:
        warned = [e.user_message for e in instance.all_logs(last_summary(ws)["dagster_run_id"])
                  if "not delivered after 3 attempt(s)" in e.user_message]
    assert status == "SUCCESS" and len(warned) == 2, warned  # cpu-fp32 held back, cpu-int8 promoted
    rows = {r["target"]: r for r in last_summary(ws)["targets"]}
    assert rows["cpu-fp32"]["gate"] == "FAIL" and rows["cpu-fp32"]["promoted"] == "no"
    assert rows["cpu-fp32"]["gate_reasons"][0].startswith("validation failed: the runtime failed in its measuring "
                                                          "process under measure.memory_limit_mb=64")
    # a model that could not be run is not loaded again to be compared with the champion
    report = json.loads((ws.state_dir / "runs" / last_summary(ws)["dagster_run_id"] / "cpu-fp32" /
                         "gate_report.json").read_text())
    assert report["comparison"] is None and "not compared with the champion: validation failed" in report["notes"]
    # the other target was validated in its own (uncapped) process, with its memory and load time measured
    assert rows["cpu-int8"]["accuracy"] is not None and rows["cpu-int8"]["RSS MB"] > 10
    assert not any(r.startswith("validation failed") for r in rows["cpu-int8"]["gate_reasons"])
    set_target(ws, "cpu-fp32", measure={"memory_limit_mb": None})


def test_a_device_agent_that_is_down_is_not_a_verdict(first_run, monkeypatch):
    """Transport, refusal or timeout say nothing about the model: nothing registered, and the next run measures
    and gates the same build again (a failed verdict would be reused by its sha256 forever)."""
    ws, _, _ = first_run
    name = "squeezeflow-digits-cpu-fp32"
    count = len(client(ws).search_model_versions(f"name = '{name}'"))
    monkeypatch.setenv("SF_BOARD_TOKEN", "0123456789abcdef-token")
    set_target(ws, "cpu-fp32", device={"agent": unused_port_url(), "token_env": "SF_BOARD_TOKEN", "timeout_s": 5})
    try:
        assert run_lifecycle(Workspace(ws.root), ["seed=5"], ["cpu-fp32"]) == 1  # broken, not held back
        summary = last_summary(ws)
        with DagsterInstance.get() as instance:
            assert instance.get_run_by_id(summary["dagster_run_id"]).status.value == "FAILURE"
        errors = (ws.state_dir / "runs" / summary["dagster_run_id"] / "errors.log").read_text()
        assert "TransientError" in errors and "is unreachable or did not answer" in errors, errors[:500]
        assert len(client(ws).search_model_versions(f"name = '{name}'")) == count
        # nothing recorded for validation: the next run measures this build again (and registers it then)
        assert not Lifecycle(Workspace(ws.root), {"seed": 5}).dvc.up_to_date("validate-cpu-fp32")
        assert (ws.stage_dir("build-cpu-fp32") / "model.onnx").exists()
    finally:
        spec = yaml.safe_load((ws.targets_dir / "cpu-fp32.yaml").read_text())
        spec.pop("device")
        (ws.targets_dir / "cpu-fp32.yaml").write_text(yaml.safe_dump(spec))


@pytest.mark.skipif(unavailable() is None, reason="TensorRT is available here: the engine is built instead")
def test_an_unavailable_tensorrt_target_is_reported_and_only_counts_when_named(first_run, webhook):
    ws, _, _ = first_run
    spec = {"name": "gpu-trt", "runtime": "tensorrt", "build": {"builder": "tensorrt", "precision": "fp16"},
            "measure": {"iterations": 20}, "budgets": {"max_accuracy_drop": 40.0, "max_latency_p95_ms": 50.0,
                                                      "max_model_bytes": 2_000_000}}
    (ws.targets_dir / "gpu-trt.yaml").write_text(yaml.safe_dump(spec))
    try:
        assert run_lifecycle(Workspace(ws.root), [], ["cpu-fp32", "gpu-trt"]) == 0  # the default set
        rows = {r["target"]: r for r in last_summary(ws)["targets"]}
        assert rows["gpu-trt"]["gate"] == "unavailable" and rows["gpu-trt"]["promoted"] == "no"
        assert rows["gpu-trt"]["gate_reasons"] == [f"validation failed: unavailable: {unavailable()}"]
        # In Dagster: a success; the target skipped with its reason, as a warning, not an error.
        status, gate, promoted = dagster_view(ws, "gpu_trt")
        assert status == "SUCCESS" and gate["severity"] == "WARN"
        assert gate["description"] == f"skipped: unavailable: {unavailable()}"
        assert promoted["held_back"] == f"unavailable: {unavailable()}"
        assert ("unavailable", "gpu-trt") in messages(webhook, ws)
        assert rows["cpu-fp32"]["gate"] == "pass" and rows["cpu-fp32"]["promoted"] in ("champion", "unchanged")
        # the typed fp16 graph was built (and is kept by DVC); nothing was registered for the target
        built = ws.stage_dir("build-gpu-trt") / "model.onnx"
        types = {t.data_type for t in onnx.load(str(built)).graph.initializer}
        assert onnx.TensorProto.FLOAT16 in types and onnx.TensorProto.FLOAT not in types
        assert not client(ws).search_model_versions("name = 'squeezeflow-digits-gpu-trt'")
        # named by the user (--target), it would hold the run back: tests/pipelines/test_runner.py
    finally:
        (ws.targets_dir / "gpu-trt.yaml").unlink()


def test_a_target_deploys_the_candidate_recipe_that_meets_its_latency_budget(first_run):
    """Two candidate recipes; only the narrow one meets the target's latency budget on the validation split (the
    wide MLP needs ~4M multiply-adds per sample, 0.4-0.7 ms here; the narrow one ~1k, ~0.01 ms). The narrow one
    is built, gated, promoted, and the registered version says which recipe won and why."""
    ws, _, _ = first_run
    add_recipe(ws, "wide", student_hidden=[2048, 2048], epochs=2)
    add_recipe(ws, "narrow", student_hidden=[16], epochs=6)
    path = write_target(ws.targets_dir, "edge-pick", max_latency_p95_ms=0.15, max_model_bytes=50_000_000)
    spec = yaml.safe_load(path.read_text())
    spec["measure"]["iterations"] = 200  # a p95 over 200 calls: a few preempted calls on a busy machine do not move it
    path.write_text(yaml.safe_dump({**spec, "recipes": ["wide", "narrow"], "objective": "smallest"}))
    try:
        assert run_lifecycle(Workspace(ws.root), [], ["edge-pick"]) == 0
        lc = Lifecycle(Workspace(ws.root))
        selection = lc.selection("edge-pick")  # the decision, with what was measured to make it
        assert selection["recipe"] == "narrow"
        # the tracked output holds the decision, not the latencies: selecting again gives the same DVC output
        out = ws.stage_dir("select-edge-pick")
        tracked, first = (out / "selection.json").read_text(), sha256_tree(out)
        assert "latency_p95_ms\":" not in tracked and not (out / "pareto.png").exists()
        run_stage_locally(lc.ws, "select-edge-pick", lc.params)
        assert sha256_tree(out) == first
        wide = next(c for c in selection["candidates"] if c["recipe"] == "wide")
        assert not wide["meets_budgets"] and wide["latency_p95_ms"] > 0.15
        assert "wide (latency_p95_ms" in selection["reason"]
        row = last_summary(ws)["targets"][0]
        assert row["gate"] == "pass" and row["promoted"] == "champion"
        c = client(ws)
        mv = champion(type("T", (), {"client": c})(), "squeezeflow-digits-edge-pick")
        assert mv.tags["squeezeflow.recipe"] == "narrow"
        assert mv.tags["squeezeflow.recipe_selection"] == selection["reason"]
        assert json.loads(mv.tags["squeezeflow.runtime_config"])["threads"] == 1
        assert "Recipe narrow:" in mv.description
        # the target's Pareto plot and the record are artifacts of its select stage's MLflow run
        runs = c.search_runs([r.experiment_id for r in c.search_experiments()],
                             "tags.squeezeflow.stage = 'select-edge-pick'")
        assert runs and {"pareto.png", "selection.json"} <= {a.path for a in c.list_artifacts(runs[0].info.run_id)}
    finally:
        path.unlink()


def test_a_chance_level_model_is_never_promoted(first_run):
    ws, _, _ = first_run
    # Every other gate is wide open: only the majority-class baseline stands between this model and promotion.
    set_target(ws, "cpu-fp32", regression={"max_accuracy_drop": 100.0, "max_latency_increase": 100.0},
               budgets={"max_accuracy_drop": 100.0})
    add_recipe(ws, "chance", student_hidden=[1], epochs=1)
    row, failed = blocked_run(ws, ["compress.recipe=chance"])
    assert [chk["name"] for chk in failed] == ["accuracy_over_baseline"]
    assert failed[0]["value"] < failed[0]["budget"]
    assert any("baseline" in r for r in row["gate_reasons"])


def test_a_less_accurate_challenger_is_blocked_against_the_champion(first_run):
    ws, _, _ = first_run
    # Only accuracy against the champion is under test here: the latency threshold is wide, and neither the
    # drop from the teacher nor the majority-class baseline applies.
    set_target(ws, "cpu-fp32", regression={"max_accuracy_drop": 0.5, "max_latency_increase": 5.0},
               budgets={"max_accuracy_drop": 100.0, "min_gain_over_baseline": 0.0})
    add_recipe(ws, "worse", student_hidden=[4], epochs=1)
    row, failed = blocked_run(ws, ["compress.recipe=worse"])
    assert [chk["name"] for chk in failed] == ["accuracy_vs_champion"]
    assert failed[0]["value"] < -0.5 and failed[0]["threshold"] == -0.5
    assert failed[0]["high"] < 0  # really worse, not just inconclusive
    assert any("accuracy vs champion" in r for r in row["gate_reasons"])


def test_a_slower_challenger_is_blocked_against_the_champion(first_run):
    ws, _, _ = first_run
    # Only latency against the champion is under test here: the accuracy margin is wide.
    set_target(ws, "cpu-fp32", regression={"max_accuracy_drop": 100.0, "max_latency_increase": 0.10})
    add_recipe(ws, "slower", student_hidden=[512, 512], epochs=2)
    _, failed = blocked_run(ws, ["compress.recipe=slower"])
    assert [chk["name"] for chk in failed] == ["latency_vs_champion"]
    assert failed[0]["low"] > 1.10  # measured side by side: clearly slower than the champion


def test_promotion_jobs_refuse_force_and_roll_back(first_run):
    """The launchpad's promote and rollback jobs, on the registry the runs above filled."""
    from dagster import AssetKey

    from pipelines.definitions import build_definitions

    ws, _, _ = first_run
    c = client(ws)
    name = "squeezeflow-digits-cpu-fp32"
    failed = max(c.search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version))
    assert failed.tags["squeezeflow.gate"] == "failed"
    before = champion(type("T", (), {"client": c})(), name).version
    defs = build_definitions(ws.root)
    resources = {"squeezeflow": {"config": {"root": str(ws.root)}}}

    def launch(job: str, op: str, **config):
        with DagsterInstance.get() as instance:
            return defs.resolve_job_def(job).execute_in_process(
                run_config={"ops": {op: {"config": config}}, "resources": resources}, instance=instance,
                raise_on_error=False)

    refused = launch("promote", "promote_version", target="cpu-fp32", version=str(failed.version),
                     reason="try", promoted_by="alice")
    assert not refused.success
    (failure,) = refused.get_step_failure_events()
    assert "failed its gate; set force: true" in failure.event_specific_data.error.message
    assert champion(type("T", (), {"client": c})(), name).version == before

    forced = launch("promote", "promote_version", target="cpu-fp32", version=str(failed.version), force=True,
                    reason="slower but needed for the demo", promoted_by="alice")
    assert forced.success
    mv = champion(type("T", (), {"client": c})(), name)
    assert mv.version == failed.version and mv.tags["squeezeflow.forced"] == "true"
    assert mv.tags["squeezeflow.previous_champion"] == str(before)
    with DagsterInstance.get() as instance:
        mat = instance.get_latest_materialization_event(AssetKey(["cpu_fp32", "promoted"])).asset_materialization
    assert mat.metadata["promoted_by"].value == "alice" and mat.metadata["forced"].value is True

    back = launch("rollback", "rollback_champion", target="cpu-fp32", reason="demo over", promoted_by="bob")
    assert back.success
    assert champion(type("T", (), {"client": c})(), name).version == before


def test_gc_from_its_job_keeps_what_can_be_deployed_and_what_the_workspace_needs(first_run):
    """The `gc` job on the registry the runs above filled: failed and superseded versions go with their model files
    and their DVC objects; the champion, every earlier champion, dvc.lock's outputs and a warm rerun stay."""
    from pipelines.definitions import build_definitions
    from squeezeflow.tracking.promotion import history

    ws, _, _ = first_run
    c = client(ws)
    name = "squeezeflow-digits-cpu-fp32"
    tracker = type("T", (), {"client": c})()
    before = {str(v.version): v for v in c.search_model_versions(f"name = '{name}'")}
    chain = {r.version for r in history(tracker, name)} | {r.previous for r in history(tracker, name) if r.previous}
    champ = str(champion(tracker, name).version)
    doomed = {v for v, mv in before.items() if v not in chain and v != champ} - {max(before, key=int)}
    assert doomed and any(before[v].tags["squeezeflow.gate"] == "failed" for v in doomed)
    cache = ws.root / ".dvc" / "cache" / "files" / "md5"
    objects = sum(1 for p in cache.rglob("*") if p.is_file())
    lc = Lifecycle(Workspace(ws.root))
    current = [stage for stage in lc.dvc.lock() if stage in lc.ws.stages and lc.dvc.up_to_date(stage)]
    with DagsterInstance.get() as instance:
        result = build_definitions(ws.root).resolve_job_def("gc").execute_in_process(
            run_config={"ops": {"collect_garbage": {"config": {"keep_versions": 1}}},
                        "resources": {"squeezeflow": {"config": {"root": str(ws.root)}}}}, instance=instance)
        logged = [e.user_message for e in instance.all_logs(result.run_id) if "gc: removed" in e.user_message]
    assert result.success and f"removed {len(doomed)} model version(s)" in logged[0], logged
    after = {str(v.version) for v in c.search_model_versions(f"name = '{name}'")}
    assert after == set(before) - doomed and str(champion(tracker, name).version) == champ
    assert sum(1 for p in cache.rglob("*") if p.is_file()) < objects
    # nothing the workspace names went: a run now reuses every stage it reused before
    assert [stage for stage in current if not lc.dvc.up_to_date(stage)] == []


def test_a_bad_dataset_is_blocked_before_training(env, webhook):
    root = make_workspace(env / "bad")
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)
    x[10, 3, 3] = np.nan
    npz = env / "bad.npz"
    np.savez(npz, x=x, y=d.target)
    ws = Workspace(root)
    rc = run_lifecycle(ws, ["dataset.name=npz", f"dataset.path={npz}"], ["cpu-fp32"])
    assert rc == 1
    summary = last_summary(ws)
    failure = summary["failed_checks"][0]
    assert failure["check"] == "data_expectations"
    assert any("bad.npz" in f["message"] and "field 'x' = nan" in f["message"] for f in failure["failures"])
    assert not ws.stage_dir("teacher").exists()
    # In Dagster: a Failure, whose first error in the run's log names the file, the field and the value.
    with DagsterInstance.get() as instance:
        assert instance.get_run_by_id(summary["dagster_run_id"]).status.value == "FAILURE"
        errors = [e.user_message for e in instance.all_logs(summary["dagster_run_id"]) if e.level >= 40]
    assert "bad.npz" in errors[0] and "field 'x' = nan" in errors[0], errors[:2]
    assert messages(webhook, ws) == [("failed", "cpu-fp32")]  # the target the run was for
    [body] = [b for b in webhook.bodies if b["run_id"] == summary["dagster_run_id"]]
    assert "bad.npz" in body["reason"] and "field 'x' = nan" in body["reason"] and body["step"] == "dataset"
    assert client(ws).search_registered_models() == []


def test_pareto_sweep_logs_its_plot_to_mlflow_and_dagster(env):
    from dagster import AssetKey

    from pipelines.runner import run_sweep

    root = make_workspace(env / "sweep", targets=("cpu-fp32",))
    ws = Workspace(root)
    rc = run_sweep(ws, ["sweep.teacher_scales=[0.25,1.0]", "sweep.recipes=[tiny]"])
    assert rc == 0
    points = json.loads((ws.stage_dir("sweep") / "points.json").read_text())
    assert [(p["teacher_scale"], p["recipe"]) for p in points] == [(0.25, "teacher"), (0.25, "tiny"), (1.0, "teacher"),
                                                                   (1.0, "tiny")]
    assert any(p["on_front"] for p in points)
    # its points are the registry's stages (DVC-tracked, each its own MLflow run); at x1 the main line's own
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    assert {"teacher", "teacher-x0_25", "compressed-tiny", "compressed-tiny-x0_25", "exported-tiny-x0_25",
            "sweep"} <= set(lock) and "teacher-x1" not in lock
    c = client(ws)
    (run,) = c.search_runs([c.get_experiment_by_name("squeezeflow").experiment_id],
                           "tags.`squeezeflow.stage` = 'sweep'")
    assert {"pareto.png", "points.json"} <= {a.path for a in c.list_artifacts(run.info.run_id)}
    with DagsterInstance.get() as instance:
        mat = instance.get_latest_materialization_event(AssetKey("pareto_sweep")).asset_materialization
    assert mat.metadata["plot"].value.startswith("![pareto.png](data:image/png;base64,")
    assert mat.metadata["points_table"].value.startswith("| teacher | recipe |")
