"""Run-or-reuse with recipes: DVC sees the resolved recipe, so exactly the stages that read a changed part rerun."""

import yaml

from squeezeflow.lifecycle import Lifecycle
from squeezeflow.workspace import Workspace

STAGES = ("dataset", "teacher", "compressed", "finetuned")


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
    assert run_all(workspace, "r3") == {"dataset": True, "teacher": True, "compressed": True, "finetuned": False}

    edit_recipe(workspace, lambda r: r["steps"][1].update(sparsity=0.7))
    assert run_all(workspace, "r4") == {"dataset": True, "teacher": True, "compressed": False, "finetuned": False}
    recorded = yaml.safe_load((workspace / "artifacts" / "compressed" / "recipe.yaml").read_text())
    assert recorded["steps"][1]["sparsity"] == 0.7 and "finetune" not in recorded


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
