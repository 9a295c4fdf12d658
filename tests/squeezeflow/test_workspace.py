"""Workspace.validate: one check of everything a run reads, before any work, for every entry point."""

import pytest

from squeezeflow.errors import SqueezeflowInputError
from squeezeflow.workspace import Workspace


@pytest.mark.parametrize("overrides, field, value", [
    ({"sweep.target": "tpu-v9"}, "sweep.target", "tpu-v9"),
    ({"teacher.arch": "vit"}, "teacher.arch", "vit"),
    ({"dataset.name": "npz", "dataset.path": "/nonexistent/data.npz"}, "dataset.path", "/nonexistent/data.npz"),
    ({"compress.recipe": "no-such-recipe"}, "compress.recipe", "no-such-recipe"),
])
def test_prepare_refuses_bad_input_before_writing_anything(workspace, overrides, field, value):
    # prepare() is what every entry point calls first (the Dagster resource's first stage, the CLI, dvc repro)
    ws = Workspace(workspace)
    with pytest.raises(SqueezeflowInputError) as err:
        ws.prepare(overrides)
    assert err.value.field == field and value in str(err.value)
    assert not (workspace / ".squeezeflow" / "params.yaml").exists() and not (workspace / "dvc.yaml").exists()


def test_validate_returns_the_chosen_targets_and_refuses_unknown_ones(workspace):
    ws = Workspace(workspace)
    params = ws.params()
    assert ws.validate(params) == ["cpu-fp32", "cpu-int8"]
    assert ws.validate(params, ["cpu-int8"]) == ["cpu-int8"]
    with pytest.raises(SqueezeflowInputError, match="field 'targets' = 'gpu'"):
        ws.validate(params, ["gpu"])
