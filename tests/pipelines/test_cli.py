import pytest

from pipelines.cli import main


@pytest.mark.parametrize("argv, needle", [
    (["run", "--dataset", "imagenet"], "field 'dataset.name' = 'imagenet'"),
    (["run", "--target", "gpu-h100"], "field 'targets' = 'gpu-h100'"),
    (["run", "--set", "teacher.train.epochs=0"], "teacher.train.epochs"),
    (["run", "--set", "nonsense"], "expected KEY=VALUE"),
    (["run", "--recipe", "no-such-recipe"], "--recipe: field 'compress.recipe' = 'no-such-recipe'"),
    (["run", "--recipe", "bad"], "field 'steps[1].sparsity' = 1.5"),
    (["run", "--recipe", "backwards"], "field 'steps[1].technique' = 'distill'"),
    (["sweep", "--set", "sweep.recipes=[bad]"], "field 'steps[1].sparsity' = 1.5"),
])
def test_bad_input_fails_before_any_run(workspace, capsys, argv, needle):
    (workspace / "recipes" / "bad.yaml").write_text(
        "steps:\n  - {technique: distill}\n  - {technique: prune-magnitude, sparsity: 1.5}\n")
    (workspace / "recipes" / "backwards.yaml").write_text(
        "steps:\n  - {technique: prune-magnitude}\n  - {technique: distill}\n")
    assert main(["--root", str(workspace), *argv]) == 2
    assert needle in capsys.readouterr().err
    assert not (workspace / "artifacts").exists() and not (workspace / ".dvc").exists()


def test_stage_command_runs_one_stage_in_place(workspace, capsys):
    assert main(["--root", str(workspace), "stage", "dataset"]) == 0
    names = {p.name for p in (workspace / "artifacts" / "dataset").iterdir()}
    assert names == {f"{s}-{a}.npy" for s in ("train", "val", "test") for a in "xy"} | {"metrics.json"}
    assert main(["--root", str(workspace), "stage", "nope"]) == 2
