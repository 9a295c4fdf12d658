from pathlib import Path

import pytest
import yaml

from squeezeflow.compression import TECHNIQUES
from squeezeflow.compression.recipe import find_recipe, load_recipe, parse_recipe
from squeezeflow.errors import SqueezeflowInputError
from tests.squeezeflow.compression.conftest import FAST

SHIPPED = Path(__file__).resolve().parents[3] / "recipes"


def write(tmp_path, data) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_every_shipped_recipe_loads_and_the_default_exists():
    names = {p.stem for p in SHIPPED.glob("*.yaml")}
    assert "default" in names and len(names) >= 4
    for path in SHIPPED.glob("*.yaml"):
        recipe = load_recipe(path)
        assert recipe.name == path.stem and recipe.steps and recipe.description
        assert parse_recipe(recipe.to_dict(), "again").to_dict() == recipe.to_dict()  # the resolved form reloads


@pytest.mark.parametrize("step, field, value", [
    ({"technique": "prune-magnitude", "sparsity": 1.0}, "steps[0].sparsity", "1.0"),
    ({"technique": "prune-channels", "amount": 1.2}, "steps[0].amount", "1.2"),
    ({"technique": "factorize-svd", "rank_ratio": 0}, "steps[0].rank_ratio", "0"),
    ({"technique": "quantize", "bits": 3}, "steps[0].bits", "3"),
    ({"technique": "magic"}, "steps[0].technique", "'magic'"),
    ({"technique": ["distill"]}, "steps[0].technique", "['distill']"),
    ({"technique": "quantize", "activations": True}, "steps[0].activations", "True"),
    ({"technique": "distill", "temprature": 2}, "steps[0].temprature", "2"),
])
def test_bad_steps_name_the_file_the_field_and_the_value(tmp_path, step, field, value):
    path = write(tmp_path, {"steps": [step]})
    with pytest.raises(SqueezeflowInputError) as err:
        load_recipe(path)
    msg = str(err.value)
    assert str(path) in msg and f"'{field}'" in msg and value in msg


@pytest.mark.parametrize("steps, bad_index", [
    (["prune-magnitude", "distill"], 1),          # a new student would discard the pruning
    (["quantize", "prune-channels"], 1),           # channels cannot be removed from quantized layers
    (["prune-magnitude", {"technique": "factorize-svd", "rank_ratio": 0.5}], 1),  # factorizing would densify the zeros
    (["quantize", "qat"], 1),                      # one quantize step
])
def test_impossible_orders_are_rejected(tmp_path, steps, bad_index):
    path = write(tmp_path, {"steps": [s if isinstance(s, dict) else {"technique": s} for s in steps]})
    with pytest.raises(SqueezeflowInputError, match=rf"steps\[{bad_index}\]\.technique"):
        load_recipe(path)


def test_fine_tuning_may_come_anywhere(tmp_path):
    recipe = load_recipe(write(tmp_path, {"steps": [{"technique": "distill"}, {"technique": "finetune"},
                                                   {"technique": "prune-magnitude"}, {"technique": "finetune"}]}))
    assert [s.name for s in recipe.steps] == ["distill", "finetune", "prune-magnitude", "finetune"]


@pytest.mark.parametrize("data, field", [
    ({"stepz": []}, "stepz"),
    ({"steps": "distill"}, "steps"),
    ({"steps": ["distill"]}, "steps[0]"),
    ({"steps": [{"technique": "distill"}], "finetune": {"train": {"epochs": 0}}}, "finetune.train.epochs"),
])
def test_bad_recipe_shapes(tmp_path, data, field):
    with pytest.raises(SqueezeflowInputError, match=rf"'{field}'".replace("[", r"\[").replace("]", r"\]")):
        load_recipe(write(tmp_path, data))


def test_find_recipe_by_name_prefers_the_workspace_then_the_shipped_ones(tmp_path):
    (tmp_path / "default.yaml").write_text("steps: [{technique: distill}]\n")
    assert find_recipe("default", [tmp_path, SHIPPED]) == tmp_path / "default.yaml"
    assert find_recipe("classic", [tmp_path, SHIPPED]) == SHIPPED / "classic.yaml"
    with pytest.raises(SqueezeflowInputError, match="compress.recipe.*'nope'.*known"):
        find_recipe("nope", [tmp_path, SHIPPED])


def test_a_recipe_runs_its_steps_in_order_and_reports_each(task):
    import copy

    recipe = parse_recipe({"name": "t", "steps": [
        {"technique": "distill", "student": {"hidden": [8]}, "train": FAST.model_dump()},
        {"technique": "prune-magnitude", "sparsity": 0.5},
    ], "finetune": {"train": FAST.model_dump()}}, "inline")
    model, spec, report = recipe.run(copy.deepcopy(task.teacher), task, on_step=lambda a: {"seen": True})
    assert spec.hidden == (8,) and [r["technique"] for r in report] == ["distill", "prune-magnitude"]
    assert all(r["seen"] for r in report) and report[1]["sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert recipe.recover(model, task)["epochs"] >= 1


def test_all_techniques_have_typed_configs_that_reject_unknown_keys():
    from pydantic import ValidationError

    assert {"distill", "distill-online", "distill-self", "prune-magnitude", "prune-channels", "factorize-svd",
            "factorize-tucker", "factorize-cp", "quantize", "qat", "mixed-precision", "finetune"} <= set(TECHNIQUES)
    for cls in TECHNIQUES.values():
        with pytest.raises(ValidationError):
            cls.Config.model_validate({"no_such_key": 1})


def test_a_step_that_does_not_fit_the_model_names_the_step_and_the_teacher_is_untouched(task):
    import copy

    import torch

    before = copy.deepcopy(task.teacher.state_dict())
    recipe = parse_recipe({"steps": [{"technique": "prune-magnitude", "sparsity": 0.5},
                                     {"technique": "finetune", "train": FAST.model_dump()}]}, "r.yaml")
    recipe.run(task.teacher, task)
    assert all(torch.equal(before[k], v) for k, v in task.teacher.state_dict().items())  # pruned a copy
    bn_on_mlp = parse_recipe({"steps": [{"technique": "prune-channels", "importance": "bn"}]}, "r.yaml")
    with pytest.raises(SqueezeflowInputError, match=r"r.yaml: field 'steps\[0\]\.technique' = 'prune-channels'"):
        bn_on_mlp.run(task.teacher, task)


def test_a_recipe_that_is_not_utf8_is_one_clear_error(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_bytes(b"steps: [\xff\xfe]")
    with pytest.raises(SqueezeflowInputError, match="not valid YAML"):
        load_recipe(path)
