"""The run's exit code: which held-back targets count."""

from pipelines.runner import exit_code

OK = {"passed": True, "unavailable": ""}
HELD = {"passed": False, "unavailable": ""}
GONE = {"passed": False, "unavailable": "no CUDA GPU"}


def test_an_unavailable_target_in_the_default_set_does_not_fail_the_run():
    gates = {"cpu": OK, "gpu": GONE}
    assert exit_code(gates, {"cpu"}, ["cpu", "gpu"], named=False, failed=False) == 0


def test_an_unavailable_target_named_by_the_user_holds_the_run_back():
    assert exit_code({"cpu": OK, "gpu": GONE}, {"cpu"}, ["cpu", "gpu"], named=True, failed=False) == 3


def test_a_failed_gate_or_missing_promotion_is_3_and_an_error_is_1():
    assert exit_code({"cpu": HELD, "gpu": GONE}, set(), ["cpu", "gpu"], named=False, failed=False) == 3
    assert exit_code({"cpu": OK}, set(), ["cpu"], named=False, failed=False) == 3  # gated but never promoted
    assert exit_code({}, set(), ["cpu"], named=False, failed=False) == 3  # never gated
    assert exit_code({"cpu": OK}, {"cpu"}, ["cpu"], named=False, failed=True) == 1


def test_a_tracking_uri_with_credentials_stays_out_of_the_run_config(tmp_path, monkeypatch):
    """Dagster stores a run's config and shows it in the UI: the password goes through the environment."""
    import json

    from pipelines.runner import resource_config
    from squeezeflow.workspace import Workspace

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "restored-after-this-test")  # resource_config writes it
    ws = Workspace(tmp_path)
    secret = "postgresql://mlflow:s3cr3t@db:5432/mlflow"
    config = resource_config(ws, ["seed=1"], secret)
    assert "s3cr3t" not in json.dumps(config) and "tracking_uri" not in config
    import os

    assert os.environ["MLFLOW_TRACKING_URI"] == secret  # the run's resource reads it from there
    plain = "http://127.0.0.1:5000"
    assert resource_config(ws, [], plain)["tracking_uri"] == plain


def test_a_run_for_one_target_builds_only_the_recipes_that_target_lists(project_root):
    """The shipped targets: `--target cpu-int8` never distils `small`, which only edge-cpu-int8 lists."""
    from assets import asset_key
    from pipelines.runner import _selection
    from squeezeflow.naming import recipe_key
    from squeezeflow.workspace import Workspace

    ws = Workspace(project_root)
    assert any(ws.targets[t].recipes != ws.targets["cpu-int8"].recipes for t in ws.targets)  # else nothing to see
    for name, target in ws.targets.items():
        selected = set(_selection(ws, [name]))
        listed = {None, ws.run_key} | {recipe_key(r) for r in target.recipes}
        built = {s.name: s for s in ws.stages.values() if asset_key(s) in selected}
        assert {s.recipe for s in built.values()} == listed, name
        assert {s.target.name for s in built.values() if s.target} == {name}
    assert not {"compressed-small", "finetuned-small", "exported-small"} & {
        s.name for s in ws.stages.values() if asset_key(s) in set(_selection(ws, ["cpu-int8"]))}
