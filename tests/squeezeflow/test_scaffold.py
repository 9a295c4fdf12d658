"""`squeezeflow init`: a workspace for the user's model and data, checked before it is left behind."""

import shutil
from pathlib import Path

import pytest
import yaml

from pipelines.cli import main
from tests.conftest import PROJECT

EXAMPLE = PROJECT / "examples" / "text_transformer"


@pytest.fixture
def user_folder(tmp_path):
    for f in ("textdata.py", "textnet.py"):
        shutil.copy(EXAMPLE / f, tmp_path / f)
    return tmp_path


def test_init_writes_a_workspace_that_names_the_users_model_and_data(user_folder, capsys):
    assert main(["init", str(user_folder), "--model", "textnet:build", "--data", "textdata:load",
                 "--target", "cpu-int8"]) == 0
    params = yaml.safe_load((user_folder / "params.yaml").read_text())
    assert params["dataset"] == {"name": "python", "factory": "textdata:load"}
    assert params["teacher"]["source"] == {"kind": "python", "factory": "textnet:build"}
    assert sorted(p.name for p in (user_folder / "device_targets").iterdir()) == ["cpu-int8.yaml"]
    copied, shipped = ((f / "recipes" / "default.yaml").read_text().split("\n", 1) for f in (user_folder, PROJECT))
    assert copied[1] == shipped[1]  # the shipped default, its schema line pointing at this installation's file
    for written in ("params.yaml", "recipes/default.yaml", "device_targets/cpu-int8.yaml"):
        first = (user_folder / written).read_text().splitlines()[0]
        assert first.startswith("# yaml-language-server: $schema=/") and Path(first.split("=", 1)[1]).is_file()
    out = capsys.readouterr().out
    assert "3000 samples, 3 classes, input (24,) int64" in out and "next: squeezeflow --root" in out
    # a second init does not overwrite the user's params.yaml
    assert main(["init", str(user_folder), "--model", "textnet:build", "--data", "textdata:load"]) == 2
    assert "already here" in capsys.readouterr().err


def test_init_of_an_image_folder_with_a_torchvision_model_picks_the_kinds(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    for c in range(2):
        (tmp_path / "images" / f"k{c}").mkdir(parents=True)
        for i in range(6):
            Image.fromarray(np.full((8, 8, 3), 40 * c + i, np.uint8)).save(tmp_path / "images" / f"k{c}" / f"{i}.png")
    assert main(["init", str(tmp_path), "--model", "torchvision:resnet18", "--data", str(tmp_path / "images")]) == 0
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    assert params["dataset"] == {"name": "image_folder", "path": "images"}  # relative to the workspace
    assert params["teacher"]["source"] == {"kind": "torchvision", "name": "resnet18"}


def test_init_of_an_onnx_teacher(user_folder):
    from squeezeflow.export import export_onnx
    from squeezeflow.models import ModelSpec, build_model

    spec = ModelSpec("mlp", (24,), 3, (8,))
    export_onnx(build_model(spec), spec.input_shape, user_folder / "teacher.onnx", 17)
    (user_folder / "feats.py").write_text("import numpy as np\ndef load():\n    r = np.random.default_rng(0)\n"
                                          "    return r.normal(size=(60, 24)).astype('float32'), np.arange(60) % 3\n")
    assert main(["init", str(user_folder), "--model", str(user_folder / "teacher.onnx"), "--data", "feats:load"]) == 0
    params = yaml.safe_load((user_folder / "params.yaml").read_text())
    assert params["teacher"]["source"] == {"kind": "onnx", "path": "teacher.onnx"}


def test_init_of_a_hugging_face_directory(user_folder):
    from squeezeflow.imports import import_torchvision

    import_torchvision()  # transformers imports torchvision (see squeezeflow.imports)
    from transformers import AutoModelForSequenceClassification, BertConfig

    config = BertConfig(vocab_size=256, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32, pad_token_id=0, num_labels=3)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(user_folder / "mybert")
    assert main(["init", str(user_folder), "--model", str(user_folder / "mybert"), "--data", "textdata:load",
                 "--no-train"]) == 0
    params = yaml.safe_load((user_folder / "params.yaml").read_text())
    assert params["teacher"]["source"] == {"kind": "huggingface", "path": "mybert", "train": False}


@pytest.mark.parametrize("argv,needle", [
    (["--model", "textnet:nope", "--data", "textdata:load"], "--model: field 'teacher.source.factory'"),
    (["--model", "not a ref", "--data", "textdata:load"], "--model: field 'teacher.source' = 'not a ref'"),
    (["--model", "textnet:build", "--data", "missing.csv"], "--data: field 'dataset.path' = 'missing.csv'"),
    (["--model", "textnet:build", "--data", "textdata:load", "--target", "tpu-9"], "no such shipped target"),
])
def test_a_bad_init_is_one_error_and_leaves_nothing_behind(user_folder, capsys, argv, needle):
    before = sorted(p.name for p in user_folder.iterdir())
    assert main(["init", str(user_folder), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert sorted(p.name for p in user_folder.iterdir() if p.name != "__pycache__") == before
