"""A Hugging Face transformer on token ids, end to end: a BERT classifier built from a local config (no download),
trained here on the example's token data, distilled into a one-layer student of the same config and built for int8;
then from a local directory (save_pretrained), compressed as it is trained (train: false). Gated, registered,
promoted."""

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


def _workspace(root, source: dict, epochs: int = 12) -> Workspace:
    make_workspace(root, {"dataset": {"name": "python", "factory": "usertext.textdata:load", "kwargs": {"n": 1200}},
                          "teacher": {"source": source, "train": {"epochs": epochs, "patience": epochs}},
                          "compress": {"recipe": "shallow"}, "sweep": {"target": "cpu-int8"}}, targets=("cpu-int8",))
    (root / "recipes" / "shallow.yaml").write_text(yaml.safe_dump(SHALLOW, sort_keys=False))
    (root / "usertext").mkdir()
    (root / "usertext" / "__init__.py").write_text("")
    (root / "usertext" / "textdata.py").write_text((PROJECT / "examples" / "text_transformer" / "textdata.py")
                                                   .read_text())
    return Workspace(root)


def metrics(ws: Workspace, stage: str) -> dict:
    return json.loads((ws.stage_dir(stage) / "metrics.json").read_text())


def test_a_bert_from_a_config_is_distilled_into_one_layer_and_built_for_int8(tmp_path):
    import onnx

    with lifecycle_env(tmp_path) as base:
        ws = _workspace(base / "ws", {"kind": "huggingface", "config": BERT})
        assert run_lifecycle(ws, [], ["cpu-int8"]) == 0
    teacher, compressed, exported, validated = (metrics(ws, s) for s in ("teacher", "compressed", "exported",
                                                                         "validate-cpu-int8"))
    assert teacher["arch"] == "huggingface:bert" and teacher["test_accuracy"] > 60
    assert compressed["parameters"] < 0.85 * teacher["parameters"]  # one encoder layer of two (embeddings stay)
    graph = onnx.load(str(ws.stage_dir("exported") / "model.onnx")).graph
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert exported["argmax_agreement"] == 1.0
    assert validated["accuracy"] > teacher["test_accuracy"] - 10
    summary = json.loads(sorted((ws.state_dir / "runs").glob("*/summary.json"))[-1].read_text())
    assert summary["targets"][0]["promoted"] == "champion"


def test_a_local_hugging_face_directory_is_compressed_without_retraining(tmp_path):
    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification, BertConfig

    config = BertConfig(**{k: v for k, v in BERT.items() if k != "model_type"}, num_labels=3)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(tmp_path / "mybert")
    with lifecycle_env(tmp_path) as base:
        ws = _workspace(base / "ws", {"kind": "huggingface", "path": str(tmp_path / "mybert"), "train": False})
        assert run_lifecycle(ws, [], ["cpu-int8"]) == 0
    teacher = metrics(ws, "teacher")
    assert teacher["arch"] == "huggingface:mybert" and teacher["trained"] is False
    # the directory's own weights, evaluated here by transformers itself
    x, y = (np.load(ws.stage_dir("dataset") / f"test-{a}.npy") for a in ("x", "y"))
    theirs = AutoModelForSequenceClassification.from_pretrained(tmp_path / "mybert", local_files_only=True).eval()
    with torch.no_grad():
        ids = torch.as_tensor(x)
        mine = float((theirs(input_ids=ids, attention_mask=(ids != 0).long()).logits.argmax(1).numpy() == y).mean())
    assert teacher["test_accuracy"] == pytest.approx(mine * 100)
    assert "path_sha256" in (ws.root / ".squeezeflow" / "inputs.yaml").read_text()
