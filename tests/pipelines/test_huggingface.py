"""A Hugging Face transformer on token ids, end to end: a BERT classifier built from a local config (no
download), trained here on the example's token data, distilled into a one-layer student of the same config and
built for int8; then one from a local directory (save_pretrained, trained elsewhere), deployed with its own weights
(train: false, steps: []). Gated, registered, promoted."""

import json

import pytest
import yaml

from pipelines.runner import run_lifecycle
from squeezeflow.workspace import Workspace
from tests.conftest import PROJECT, lifecycle_env, make_workspace

pytestmark = pytest.mark.slow

BERT = {"model_type": "bert", "vocab_size": 256, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
        "intermediate_size": 64, "max_position_embeddings": 64, "pad_token_id": 0}
SHALLOW = {"name": "shallow", "steps": [
    {"technique": "distill", "student": {"kwargs": {"num_hidden_layers": 1}}, "train": {"epochs": 12, "patience": 12}},
    {"technique": "quantize", "bits": 8},
], "finetune": {"train": {"epochs": 2, "patience": 2}}}


def _workspace(root, source: dict, epochs: int = 12, recipe: dict = SHALLOW) -> Workspace:
    make_workspace(root, {"dataset": {"name": "python", "factory": "hftext.textdata:load", "kwargs": {"n": 1200}},
                          "teacher": {"source": source, "train": {"epochs": epochs, "patience": epochs}},
                          "compress": {"recipe": recipe["name"]},
                          "sweep": {"target": "cpu-int8", "teacher_scales": [1.0], "recipes": [recipe["name"]]}},
                   targets=("cpu-int8",))
    (root / "recipes" / f"{recipe['name']}.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    (root / "hftext").mkdir()
    (root / "hftext" / "__init__.py").write_text("")
    (root / "hftext" / "textdata.py").write_text((PROJECT / "examples" / "text_transformer" / "textdata.py")
                                                   .read_text())
    return Workspace(root)


def _train_elsewhere(model) -> None:
    """The user's own training, before squeezeflow sees the model: other samples of the same kind of data."""
    import importlib.util

    import torch

    spec = importlib.util.spec_from_file_location("textdata", PROJECT / "examples" / "text_transformer" / "textdata.py")
    textdata = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(textdata)
    x, y = (torch.as_tensor(a) for a in textdata.load(n=1000, seed=1))
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    model.train()
    for _ in range(8):
        for i in range(0, len(x), 64):
            opt.zero_grad()
            model(input_ids=x[i:i + 64], attention_mask=(x[i:i + 64] != 0).long(), labels=y[i:i + 64]).loss.backward()
            opt.step()
    model.eval()


def metrics(ws: Workspace, stage: str) -> dict:
    return json.loads((ws.stage_dir(stage) / "metrics.json").read_text())


def test_a_bert_from_a_config_is_distilled_into_one_layer_and_built_for_int8(tmp_path):
    import onnx

    with lifecycle_env(tmp_path) as base:
        ws = _workspace(base / "ws", {"kind": "huggingface", "config": BERT})
        assert run_lifecycle(ws, [], ["cpu-int8"]) == 0
    teacher, compressed, exported, validated = (metrics(ws, s) for s in (
        "teacher", ws.recipe_stage("compressed"), ws.recipe_stage("exported"), "validate-cpu-int8"))
    assert teacher["arch"] == "huggingface:bert" and teacher["test_accuracy"] > 60
    assert compressed["parameters"] < 0.85 * teacher["parameters"]  # one encoder layer of two (embeddings stay)
    graph = onnx.load(str(ws.stage_dir(ws.recipe_stage("exported")) / "model.onnx")).graph
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert exported["argmax_agreement"] == 1.0
    assert validated["accuracy"] > teacher["test_accuracy"] - 10
    summary = json.loads(sorted((ws.state_dir / "runs").glob("*/summary.json"))[-1].read_text())
    assert summary["targets"][0]["promoted"] == "champion"


def test_a_local_hugging_face_directory_is_deployed_with_its_own_weights(tmp_path):
    import numpy as np
    import torch

    from squeezeflow.imports import import_torchvision

    import_torchvision()  # transformers imports torchvision, whose CUDA wheel needs the shim on this CPU-only torch
    from transformers import AutoModelForSequenceClassification, BertConfig

    config = BertConfig(**{k: v for k, v in BERT.items() if k != "model_type"}, num_labels=3)
    theirs = AutoModelForSequenceClassification.from_config(config)
    _train_elsewhere(theirs)
    theirs.save_pretrained(tmp_path / "mybert")
    with lifecycle_env(tmp_path) as base:
        ws = _workspace(base / "ws", {"kind": "huggingface", "path": str(tmp_path / "mybert"), "train": False},
                        recipe={"name": "as-is", "steps": [], "finetune": None})  # only the int8 build
        assert run_lifecycle(ws, [], ["cpu-int8"]) == 0
    teacher = metrics(ws, "teacher")
    assert teacher["arch"] == "huggingface:mybert" and teacher["trained"] is False and teacher["test_accuracy"] > 60
    # the directory's own weights, evaluated here by transformers itself
    x, y = (np.load(ws.stage_dir("dataset") / f"test-{a}.npy") for a in ("x", "y"))
    theirs = AutoModelForSequenceClassification.from_pretrained(tmp_path / "mybert", local_files_only=True).eval()
    with torch.no_grad():
        ids = torch.as_tensor(x)
        mine = float((theirs(input_ids=ids, attention_mask=(ids != 0).long()).logits.argmax(1).numpy() == y).mean())
    assert teacher["test_accuracy"] == pytest.approx(mine * 100)
    assert "path_sha256" in (ws.root / ".squeezeflow" / "inputs.yaml").read_text()
