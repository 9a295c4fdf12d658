"""The asset graph is generated from the stage registry: its deps are the stages' deps, for every stage."""

from dagster import AssetKey

from assets import TARGET_STEPS, asset_key
from pipelines.definitions import build_definitions
from squeezeflow.workspace import Workspace


def test_asset_deps_equal_stage_deps(project_root):
    ws = Workspace(project_root)
    graph = build_definitions(project_root).resolve_asset_graph()
    for stage in ws.stages.values():
        node = graph.get(asset_key(stage))
        assert node.parent_keys == {asset_key(ws.stages[d]) for d in stage.deps}, stage.name
        assert node.group_name == (f"target_{stage.target.key}" if stage.target else stage.group)
        assert (node.description or "") == stage.description
    stage_keys = {asset_key(s) for s in ws.stages.values()}
    chain_keys = {AssetKey([t.key, step]) for t in ws.targets.values() for step in TARGET_STEPS}
    assert set(graph.get_all_asset_keys()) == stage_keys | chain_keys


def test_each_declared_check_is_a_blocking_check_on_its_stage(project_root):
    ws = Workspace(project_root)
    graph = build_definitions(project_root).resolve_asset_graph()
    declared = {(asset_key(s), s.check.name) for s in ws.stages.values() if s.check}
    assert {(AssetKey("dataset"), "data_expectations"), (AssetKey("exported"), "onnx_matches_torch")} <= declared
    found = {(k.asset_key, k.name) for k in graph.asset_check_keys}
    gates = {(AssetKey([t.key, "candidate"]), "gate") for t in ws.targets.values()}
    assert found == declared | gates


def test_per_target_stages_are_named_by_one_helper(project_root):
    from squeezeflow.stages import stage_name

    ws = Workspace(project_root)
    for t in ws.targets:
        assert {stage_name("build", t), stage_name("validate", t)} <= set(ws.stages)
        assert ws.stages[stage_name("validate", t)].deps == ("dataset", stage_name("build", t))
