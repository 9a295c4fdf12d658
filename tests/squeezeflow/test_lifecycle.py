"""Run-or-reuse with recipes: DVC sees the resolved recipe, so exactly the stages that read a changed part rerun."""

import yaml

from squeezeflow.lifecycle import Lifecycle
from squeezeflow.workspace import Workspace

STAGES = ("dataset", "teacher", "compressed-tiny", "finetuned-tiny")


def run_all(root, key: str) -> dict[str, bool]:
    lc = Lifecycle(Workspace(root), push=False)
    return {s: lc.run_stage(s, key).reused for s in STAGES}


def edit_recipe(root, change) -> None:
    path = root / "recipes" / "tiny.yaml"
    recipe = yaml.safe_load(path.read_text())
    change(recipe)
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))


def test_changing_the_recipe_reruns_only_the_stages_that_read_that_part(workspace):
    assert run_all(workspace, "r1") == dict.fromkeys(STAGES, False)
    assert run_all(workspace, "r2") == dict.fromkeys(STAGES, True)

    edit_recipe(workspace, lambda r: r["finetune"]["train"].update(epochs=3))
    assert run_all(workspace, "r3") == {"dataset": True, "teacher": True, "compressed-tiny": True,
                                        "finetuned-tiny": False}

    edit_recipe(workspace, lambda r: r["steps"][1].update(sparsity=0.7))
    assert run_all(workspace, "r4") == {"dataset": True, "teacher": True, "compressed-tiny": False,
                                        "finetuned-tiny": False}
    recorded = yaml.safe_load((workspace / "artifacts" / "compressed-tiny" / "recipe.yaml").read_text())
    assert recorded["steps"][1]["sparsity"] == 0.7 and "finetune" not in recorded


def test_a_target_choosing_between_two_recipes_reruns_only_the_edited_one(workspace):
    """Each candidate recipe is a chain of its own (compressed/finetuned/exported-<recipe>): editing one reruns
    that chain and the selection, not the other's; the winner is built once (select hands its build to build);
    the registered version's lineage links the runs that made its file."""
    from squeezeflow.io import read_json
    from squeezeflow.tracking.lineage import build_lineage
    from tests.conftest import two_recipe_target

    wide = two_recipe_target(workspace)

    def run(key: str) -> tuple[Lifecycle, dict[str, bool]]:
        lc = Lifecycle(Workspace(workspace), push=False)
        lc.params  # noqa: B018 - prepare: the graph of this run's recipes
        return lc, {s: lc.run_stage(s, key).reused for s, st in lc.ws.stages.items() if st.group == "lifecycle"}

    lc, first = run("r1")
    chains = {f"{b}-{r}" for b in ("compressed", "finetuned", "exported") for r in ("tiny", "tiny-wide")}
    assert chains <= set(first) and not any(first.values())
    assert lc.ws.stages["select-edge"].deps == ("dataset", "teacher", "exported-tiny", "exported-tiny-wide")
    chosen = read_json(workspace / "artifacts" / "select-edge" / "selection.json")
    assert chosen["recipe"] == "tiny" and len(chosen["candidates"]) == 2  # both fit; the smaller student wins
    # built once: the build stage took select's build of the winner
    assert read_json(workspace / "artifacts" / "build-edge" / "metrics.json")["built_by"] == "select-edge"
    assert (workspace / "artifacts" / "build-edge" / "model.onnx").read_bytes() == \
        (workspace / "artifacts" / "select-edge" / "built" / "model.onnx").read_bytes()

    cand = lc.evaluate_candidate("edge", "r1")
    lineage = build_lineage(lc.tracker, f"models:/{cand.model_name}/{cand.version}")
    key = chosen["recipe_key"]
    for step in ("compressed", "finetuned", "exported"):
        link = lineage.link(step)
        assert link.details["stage"] == f"{step}-{key}" and not link.problems
        assert lc.tracker.client.get_run(link.run_id).data.tags["squeezeflow.stage"] == f"{step}-{key}"
        assert link.details["dvc_md5"] == lc.dvc.hashes()[f"{step}-{key}"]
    assert lineage.link("recipe").details["name"] == chosen["recipe"]

    wide["steps"][1] = {**wide["steps"][1], "sparsity": 0.6}
    (workspace / "recipes" / "tiny-wide.yaml").write_text(yaml.safe_dump(wide, sort_keys=False))
    built = lc.dvc.hashes()["build-edge"]
    lc, second = run("r2")
    rerun = {s for s, reused in second.items() if not reused}
    assert {"compressed-tiny-wide", "finetuned-tiny-wide", "exported-tiny-wide", "select-edge"} <= rerun
    assert not rerun & {"dataset", "teacher", "compressed-tiny", "finetuned-tiny", "exported-tiny"}
    assert read_json(workspace / "artifacts" / "select-edge" / "selection.json")["recipe"] == "tiny"
    # the same winner: its build is the same file, and its validation is not run again
    assert lc.dvc.hashes()["build-edge"] == built and "validate-edge" not in rerun


def test_registry_names_identify_the_data(workspace, tmp_path):
    def name(overrides: dict) -> str:
        return Lifecycle(Workspace(workspace), overrides, push=False).model_name("cpu-fp32")

    assert name({}) == "squeezeflow-digits-cpu-fp32"
    assert name({"dataset.name": "mnist1d"}) == "squeezeflow-mnist1d-cpu-fp32"
    path = tmp_path / "sensor readings (v2).npz"
    path.write_bytes(b"")  # only its name matters here; the run's dataset stage reads it
    npz = {"dataset.name": "npz", "dataset.path": str(path)}
    assert name(npz) == "squeezeflow-sensor-readings-v2-cpu-fp32"  # the file's stem, made registry-safe
    assert name({**npz, "registry.model_name": "vibration"}) == "squeezeflow-vibration-cpu-fp32"


def test_a_data_file_changed_in_place_is_loaded_again(workspace, digits_npz):
    import numpy as np

    overrides = {"dataset.name": "npz", "dataset.path": str(digits_npz)}

    def dataset_reused(key: str) -> bool:
        return Lifecycle(Workspace(workspace), overrides, push=False).run_stage("dataset", key).reused

    assert dataset_reused("r1") is False
    assert dataset_reused("r2") is True
    d = np.load(digits_npz)
    np.savez(digits_npz, x=d["x"][100:], y=d["y"][100:])  # same name, same params, other content
    assert dataset_reused("r3") is False
    assert (workspace / "artifacts" / "dataset" / "metrics.json").read_text().count('"samples": 1697') == 1


def test_a_person_promoting_an_older_version_sees_it_compared_with_todays_champion(workspace):
    """A version gated against an earlier champion (or none) is compared with today's champion when a person
    promotes it: worse needs force, and the comparison is recorded on the version either way."""
    import numpy as np
    import pytest
    import torch

    from squeezeflow.data import Splits
    from squeezeflow.export import export_onnx
    from squeezeflow.lifecycle import Registry
    from squeezeflow.models import ModelSpec, build_model
    from squeezeflow.tracking import get_version
    from squeezeflow.tracking.promotion import PromotionRefused, promote_version
    from squeezeflow.tracking.registry import register
    from squeezeflow.tracking.schema import COMPARISON_TAG

    lc = Lifecycle(Workspace(workspace), push=False)
    lc.run_stage("dataset", "r1")
    splits = Splits.load(lc.ws.stage_dir("dataset"))
    x, y = torch.as_tensor(np.asarray(splits.x["train"])), torch.as_tensor(np.asarray(splits.y["train"]))
    name = lc.model_name("cpu-fp32")

    def version(steps: int) -> str:
        torch.manual_seed(0)
        model = build_model(ModelSpec("mlp", tuple(x.shape[1:]), 10, (32,)))
        opt = torch.optim.Adam(model.parameters(), 1e-2)
        for _ in range(steps):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        path = workspace / f"m{steps}.onnx"
        export_onnx(model.eval(), tuple(x.shape[1:]), path, 17, exporter="torchscript")
        run = lc.tracker.stage_run(lc.parent_run("r1"), "r1", "gate", {}, {})
        return str(register(lc.tracker, run, name, path, np.asarray(splits.x["val"][:4]),
                            {"squeezeflow.gate": "passed", "squeezeflow.target": "cpu-fp32",
                             "squeezeflow.gate_champion": "none"}).version)

    untrained, trained = version(0), version(150)
    promote_version(lc.tracker, name, trained, "ci", "the trained one", lc.registry_lock)
    people = Registry(lc)
    with pytest.raises(PromotionRefused, match=f"v{untrained} vs champion v{trained} on today's test split: "
                                               "accuracy vs champion .* not shown to be no worse.*set force: true"):
        people.promote("cpu-fp32", None, untrained, "alice", "try", False, "r2")
    record = people.promote("cpu-fp32", None, untrained, "alice", "demo of the untrained model", True, "r3")
    assert record.version == untrained and record.forced  # its gate passed, but it was forced past the comparison
    shown = get_version(lc.tracker, name, untrained).tags[COMPARISON_TAG]
    assert shown.startswith(f"v{untrained} vs champion v{trained}") and "not shown to be no worse" in shown
    # the better one back: it is compared too, and passes without force
    assert people.promote("cpu-fp32", None, trained, "bob", "back to the trained one", False, "r4").version == trained
    assert "shown to be no worse" in get_version(lc.tracker, name, trained).tags[COMPARISON_TAG]


def test_recovery_releases_this_workspaces_pending_versions_only(workspace):
    """A run killed between registration and promotion leaves a pending version; the next run releases it. One of
    another dataset (or another workspace on a shared tracking server) is left for its own runs."""
    import numpy as np

    from squeezeflow.tracking import champion, get_version
    from squeezeflow.tracking.registry import register
    from squeezeflow.tracking.schema import RELEASE_TAG
    from tests.squeezeflow.tracking.test_registry import onnx_file

    lc = Lifecycle(Workspace(workspace), push=False)
    ours, theirs = lc.model_name("cpu-fp32"), "squeezeflow-someone-else-cpu-fp32"
    for i, name in enumerate((ours, theirs)):
        run = lc.tracker.stage_run(lc.parent_run("r1"), "r1", "gate", {}, {})
        register(lc.tracker, run, name, onnx_file(workspace / f"m{i}.onnx", seed=i), np.zeros((2, 4), np.float32),
                 {"squeezeflow.gate": "passed", "squeezeflow.target": "cpu-fp32", RELEASE_TAG: "pending",
                  "squeezeflow.gate_champion": "none"})
    notes = lc.recover_registry()
    assert notes == [f"{ours} v1: its interrupted promotion finished: champion (replaced none)"]
    assert "<!-- model card -->" in get_version(lc.tracker, ours, "1").description  # its card, as a release writes
    assert str(champion(lc.tracker, ours).version) == "1"
    assert get_version(lc.tracker, theirs, "1").tags[RELEASE_TAG] == "pending" and champion(lc.tracker, theirs) is None
    assert lc.recover_registry() == []  # once


def test_a_data_check_verdict_is_kept_across_runs_that_change_no_data_parameter(workspace):
    """The check's verdict is keyed by the params its stage reads: another recipe does not re-check the data; a
    changed split does."""
    def check(overrides: dict) -> list[str]:
        lc = Lifecycle(Workspace(workspace), overrides, push=False)
        lc.run_stage("dataset", "r")
        assert lc.run_check("dataset").passed
        return sorted(p.name for p in (workspace / ".squeezeflow" / "checks").iterdir())

    first = check({})
    assert len(first) == 1
    assert check({"compress.recipe": "default"}) == first  # the same data: the kept verdict
    assert len(check({"split.val": 0.2})) == 2  # other splits: checked again
