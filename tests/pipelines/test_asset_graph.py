"""The asset graph is generated from the stage registry: its deps are the stages' deps, for every stage."""

from dagster import AssetKey

from assets import TARGET_STEPS, asset_key
from assets.stages import group_of
from pipelines.definitions import build_definitions
from squeezeflow.workspace import Workspace


def test_asset_deps_equal_stage_deps(project_root):
    ws = Workspace(project_root)
    graph = build_definitions(project_root).resolve_asset_graph()
    for stage in ws.stages.values():
        node = graph.get(asset_key(stage))
        assert node.parent_keys == {asset_key(ws.stages[d]) for d in stage.deps}, stage.name
        assert node.group_name == group_of(stage)
        assert (node.description or "") == stage.description
    stage_keys = {asset_key(s) for s in ws.stages.values()}
    chain_keys = {AssetKey([t.key, step]) for t in ws.targets.values() for step in TARGET_STEPS}
    assert set(graph.get_all_asset_keys()) == stage_keys | chain_keys


def test_each_declared_check_is_a_blocking_check_on_its_stage(project_root):
    ws = Workspace(project_root)
    graph = build_definitions(project_root).resolve_asset_graph()
    declared = {(asset_key(s), s.check.name) for s in ws.stages.values() if s.check}
    assert {(AssetKey("dataset"), "data_expectations"),
            (AssetKey("exported"), "onnx_matches_torch"),  # the run's recipe's chain: plain names
            (AssetKey(["recipe_small", "exported"]), "onnx_matches_torch")} <= declared
    found = {(k.asset_key, k.name) for k in graph.asset_check_keys}
    gates = {(AssetKey([t.key, "candidate"]), "gate") for t in ws.targets.values()}
    assert found == declared | gates


def test_per_target_stages_are_named_by_one_helper(project_root):
    from squeezeflow.stages import stage_name

    ws = Workspace(project_root)
    for t in ws.targets:
        assert {stage_name("select", t), stage_name("build", t), stage_name("validate", t)} <= set(ws.stages)
        assert ws.stages[stage_name("build", t)].deps == ("dataset", stage_name("select", t))
        assert ws.stages[stage_name("validate", t)].deps == ("dataset", stage_name("build", t))


def test_a_new_stage_is_one_registration(project_root, monkeypatch):
    """Registering a stage is all it takes: it appears in dvc.yaml, the asset graph (with its check), the main
    job's selection and the chain lineage walks, per target or per recipe when it says so."""
    from pipelines.runner import _selection
    from squeezeflow.lifecycle import Lifecycle
    from squeezeflow.stages import STAGES, Check, Stage, Verdict, register_stage
    from squeezeflow.versioning.resolved import render_dvc_yaml

    monkeypatch.setattr("squeezeflow.stages.base.STAGES", dict(STAGES))
    register_stage(Stage("report", lambda ctx: {}, deps=("exported",), description="a model card",
                         check=Check("card_complete", lambda inputs, params: Verdict(True, "ok"))))
    register_stage(Stage("profile", lambda ctx: {}, deps=("dataset", "build"), per_target=True,
                         description="an op-level profile"))
    register_stage(Stage("sparsity", lambda ctx: {}, deps=("finetuned",), per_recipe=True,
                         description="a sparsity map"))
    ws = Workspace(project_root)
    assert ws.stages["report"].deps == ("exported-default",)  # the run's recipe's
    assert ws.stages["sparsity-small"].deps == ("finetuned-small",)  # a candidate edge-cpu-int8 lists
    assert ws.stages["profile-cpu-int8"].deps == ("dataset", "build-cpu-int8")
    dvc = render_dvc_yaml(ws.stages)
    assert "  report:\n" in dvc and "  profile-cpu-int8:\n" in dvc and "artifacts/build-cpu-int8" in dvc
    graph = build_definitions(project_root).resolve_asset_graph()
    assert graph.get(AssetKey("report")).parent_keys == {AssetKey("exported")}
    assert graph.get(AssetKey(["recipe_small", "sparsity"])).parent_keys == {AssetKey(["recipe_small", "finetuned"])}
    assert graph.get(AssetKey(["cpu_int8", "profile"])).parent_keys == {AssetKey("dataset"),
                                                                         AssetKey(["cpu_int8", "build"])}
    assert any(k.name == "card_complete" for k in graph.asset_check_keys)
    selected = _selection(ws, ["cpu-int8"])
    assert AssetKey("report") in selected and AssetKey(["cpu_int8", "profile"]) in selected
    assert AssetKey(["cpu_fp32", "profile"]) not in selected
    assert AssetKey("sparsity") in selected
    assert AssetKey(["recipe_small", "sparsity"]) not in selected
    assert AssetKey(["recipe_small", "sparsity"]) in _selection(ws, ["edge-cpu-int8"])
    chain = Lifecycle(ws).chain("cpu-int8")  # what a registered version's lineage walks
    assert {"report", "profile-cpu-int8", "sparsity-default"} <= set(chain) and "sparsity-small" not in chain


def test_registry_moves_share_one_pool_and_measurements_one_pool_per_device(workspace):
    """On a shared instance (infra/dagster.yaml: every pool limit 1) two runs or workers never move an alias at
    once, nor time two models on one device at once; a target measured on an agent's device has that device's."""
    from assets.targets import REGISTRY_POOL
    from tests.conftest import write_target

    agent = write_target(workspace / "device_targets", "board")
    agent.write_text(agent.read_text() + "device: {agent: 'http://127.0.0.1:8765'}\n")
    graph = build_definitions(workspace).resolve_asset_graph()

    def pool(*key: str) -> str | None:
        return graph.get(AssetKey(list(key))).assets_def.op.pool

    for t in ("cpu_fp32", "cpu_int8", "board"):
        assert pool(t, "candidate") == pool(t, "promoted") == REGISTRY_POOL
        assert pool(t, "build") is None
    for step in ("selected", "validated"):
        assert pool("cpu_fp32", step) == pool("cpu_int8", step) == "squeezeflow-device-local"
        assert pool("board", step) == "squeezeflow-device-127_0_0_1_8765"
    assert pool("teacher") is None and pool("compressed") is None
