"""The stage graph's template axes: targets, recipes (the run's and the candidates targets list) and the sweep's
points; names that would collide are one clear error naming where the second one was given."""

import pytest
import yaml

from squeezeflow.errors import SqueezeflowInputError
from squeezeflow.stages.base import run_recipes, stage_graph
from squeezeflow.targets import load_target
from squeezeflow.workspace import Workspace
from tests.conftest import write_target


def target(tmp_path, name: str, recipes: list[str]):
    path = write_target(tmp_path, name)
    path.write_text(path.read_text() + yaml.safe_dump({"recipes": recipes}))
    return load_target(path)


@pytest.mark.parametrize("run, candidates, sweep, source, field, value", [
    ("fast", ["other/fast.yaml"], (), "edge.yaml", "recipes", "other/fast.yaml"),  # two files, one name
    ("default", ["tiny-x0_5"], (), "edge.yaml", "recipes", "tiny-x0_5"),  # a sweep point's name
    ("fast-a", ["fast_a"], (), "edge.yaml", "recipes", "fast_a"),  # one Dagster asset key
    ("default", ["small"], ("other/small.yaml",), "params.yaml", "sweep.recipes", "other/small.yaml"),
])
def test_recipes_whose_stages_would_collide_are_named(tmp_path, run, candidates, sweep, source, field, value):
    with pytest.raises(SqueezeflowInputError) as err:
        run_recipes(run, [target(tmp_path, "edge", candidates)], sweep)
    assert str(err.value.source).endswith(source) and err.value.field == field and err.value.value == value


def test_sweep_points_at_x1_are_the_main_lines_own_for_a_built_in_teacher(tmp_path):
    edge = target(tmp_path, "edge", ["small"])
    stages = stage_graph([edge], "default", (0.5, 1.0), ("default", "lowrank"))
    assert {"teacher-x0_5", "compressed-default-x0_5", "compressed-lowrank-x1"} <= set(stages)
    assert "teacher-x1" not in stages and "compressed-default-x1" not in stages  # the main line's own
    assert stages["compressed-lowrank-x1"].deps == ("dataset", "teacher")
    assert set(stages["sweep"].deps) >= {"teacher", "teacher-x0_5", "exported-default", "exported-lowrank-x1"}
    users = stage_graph([edge], "default", (0.5, 1.0), ("default",), teacher_x1=False)  # the user's own model
    assert users["compressed-default-x1"].deps == ("dataset", "teacher-x1") and users["teacher-x1"].group == "sweep"


def test_a_recipe_given_as_the_path_of_a_named_one_is_one_chain(workspace):
    ws = Workspace(workspace, recipe=str(workspace / "recipes" / "tiny.yaml"))
    assert ws.canonical_recipe(str(workspace / "recipes" / "tiny.yaml")) == "tiny"
    assert "compressed-tiny" in ws.stages
    other = workspace / "elsewhere" / "tiny.yaml"
    other.parent.mkdir()
    other.write_text((workspace / "recipes" / "tiny.yaml").read_text())
    assert Workspace(workspace).canonical_recipe(str(other)) == str(other)  # another file: its own reference
