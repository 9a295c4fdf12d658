import os
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import AssetKey

from pipelines.definitions import build_definitions
from squeezeflow.errors import SqueezeflowInputError
from squeezeflow.versioning.resolved import render_dvc_yaml
from squeezeflow.workspace import Workspace
from tests.conftest import make_workspace, write_target


def test_code_location_has_graph_job_schedule_and_checks(workspace):
    defs = build_definitions(workspace)
    job = defs.resolve_job_def("lifecycle")
    keys = {k.to_user_string() for k in defs.resolve_all_asset_keys()}
    assert {"dataset", "teacher", "compressed", "finetuned", "exported", "cpu_int8/build", "cpu_int8/validated",
            "cpu_int8/promoted", "cpu_fp32/promoted"} <= keys
    checks = {k.name for k in defs.resolve_asset_graph().asset_check_keys}
    assert {"data_expectations", "onnx_matches_torch", "gate"} <= checks
    assert defs.resolve_schedule_def("weekly_retrain_and_compress").cron_schedule == "0 3 * * 1"
    assert job.name == "lifecycle"


def test_a_yaml_file_adds_a_target_chain_without_code(workspace):
    write_target(workspace / "device_targets", "edge-arm", builder="ort-int8-qdq")
    defs = build_definitions(workspace)
    keys = defs.resolve_all_asset_keys()
    assert {AssetKey(["edge_arm", n]) for n in ("build", "validated", "promoted")} <= set(keys)
    assert "build-edge-arm" in Workspace(workspace).stages


def test_a_bad_profile_fails_the_code_location_with_a_clear_message(workspace):
    (workspace / "device_targets" / "cpu-fp32.yaml").write_text("name: cpu-fp32\nbuild: {builder: ort-fp32}\n"
                                                                "budgetz: {}\n")
    with pytest.raises(SqueezeflowInputError, match=r"cpu-fp32.yaml: field 'budgetz'"):
        build_definitions(workspace)


def test_committed_dvc_yaml_is_generated_from_the_stage_registry(project_root):
    # dvc.yaml has one source of truth: regenerate it with `./sf dvc-yaml` after changing stages or targets.
    assert (project_root / "dvc.yaml").read_text() == render_dvc_yaml(Workspace(project_root).stages)


def test_committed_params_are_valid(project_root):
    Workspace(project_root).params()


def test_code_location_loads_as_dagster_dev_loads_it(isolated_env):
    # execute_in_process and build_definitions do not validate the whole code location; `dagster dev` does (e.g. an
    # asset and a job with one name load here and break the UI). `dagster definitions validate` checks the same.
    root = make_workspace(isolated_env / "ws_validate", targets=("cpu-fp32",))
    env = {**os.environ, "SQUEEZEFLOW_ROOT": str(root), "DAGSTER_DISABLE_TELEMETRY": "true"}
    dagster = Path(sys.executable).parent / "dagster"
    proc = subprocess.run([str(dagster), "definitions", "validate", "-m", "pipelines.definitions"], env=env,
                          cwd=root, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
