"""A transformer classifier on token ids, end to end, with the files of examples/text_transformer: the user's data
function (integer sequences, generated offline) and the user's nn.TransformerEncoder model, distilled into a
shallower student of the same factory and built for int8; then attention/FFN pruning of the teacher itself.
Exported with int64 inputs, parity checked, gated, registered, promoted."""

import json

import numpy as np
import onnx
import pytest
import yaml

from pipelines.runner import run_lifecycle
from squeezeflow.workspace import Workspace
from tests.conftest import PROJECT, lifecycle_env, make_workspace

pytestmark = pytest.mark.slow

SHALLOW = {"name": "shallow", "steps": [
    {"technique": "distill", "student": {"kwargs": {"layers": 1}}, "train": {"epochs": 20, "patience": 20}},
    {"technique": "quantize", "bits": 8},
], "finetune": {"train": {"epochs": 2, "patience": 2}}}
PRUNE = {"name": "prune", "steps": [
    {"technique": "prune-channels", "amount": 0.5, "steps": 2, "finetune": {"epochs": 5, "patience": 5}},
    {"technique": "quantize", "bits": 8},
], "finetune": {"train": {"epochs": 5, "patience": 5}}}


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    with lifecycle_env(tmp_path_factory.mktemp("tokens")) as base:
        root = base / "ws"
        make_workspace(root, {"dataset": {"name": "python", "factory": "usertext.textdata:load",
                                          "kwargs": {"n": 1500}},
                              "teacher": {"source": {"kind": "python", "factory": "usertext.textnet:build",
                                                     "kwargs": {"d_model": 32, "ff": 64}},
                                          "train": {"epochs": 15, "patience": 15}},
                              "compress": {"recipe": "shallow"},
                              "sweep": {"teacher_scales": [1.0], "recipes": ["shallow"]}})
        for recipe in (SHALLOW, PRUNE):
            (root / "recipes" / f"{recipe['name']}.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
        (root / "usertext").mkdir()
        (root / "usertext" / "__init__.py").write_text("")
        for f in ("textdata.py", "textnet.py"):  # the example's own files, as a package in the workspace
            (root / "usertext" / f).write_text((PROJECT / "examples" / "text_transformer" / f).read_text())
        yield Workspace(root)


def metrics(ws: Workspace, stage: str) -> dict:
    return json.loads((ws.stage_dir(stage) / "metrics.json").read_text())


def last_summary(ws: Workspace) -> dict:
    runs = sorted((ws.state_dir / "runs").glob("*/summary.json"), key=lambda p: p.stat().st_mtime)
    return json.loads(runs[-1].read_text())


def test_a_shallower_student_of_the_users_transformer_on_token_ids(ws):
    assert run_lifecycle(ws, [], ["cpu-int8"]) == 0
    data, teacher = metrics(ws, "dataset"), metrics(ws, "teacher")
    assert data["input_dtype"] == "int64"
    # ids stay ids: never standardized or cast to float
    assert np.load(ws.stage_dir("dataset") / "train-x.npy").dtype == np.int64
    assert teacher["arch"] == "usertext.textnet:build" and teacher["test_accuracy"] > 60
    compressed = metrics(ws, ws.recipe_stage("compressed"))
    assert compressed["parameters"] < 0.7 * teacher["parameters"]  # one encoder layer instead of two
    graph = onnx.load(str(ws.stage_dir(ws.recipe_stage("exported")) / "model.onnx")).graph
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert {"Gather", "Softmax", "DequantizeLinear"} <= {n.op_type for n in graph.node}  # embedding, attention, int8
    assert metrics(ws, ws.recipe_stage("exported"))["max_abs_diff"] < 1e-4
    validated = metrics(ws, "validate-cpu-int8")
    assert validated["accuracy"] > teacher["test_accuracy"] - 5
    assert {r["target"]: r["promoted"] for r in last_summary(ws)["targets"]} == {"cpu-int8": "champion"}


def test_attention_and_ffn_pruning_of_the_teacher_itself(ws):
    assert run_lifecycle(ws, ["compress.recipe=prune"], ["cpu-int8"]) in (0, 3)  # 3: held back by its gate
    teacher, compressed = metrics(ws, "teacher"), metrics(ws, "compressed-prune")
    assert compressed["parameters"] < 0.5 * teacher["parameters"]
    from squeezeflow.models import load_checkpoint

    model = load_checkpoint(ws.stage_dir("compressed-prune") / "model.pt")[0]
    attn = model.get_submodule("encoder.layers.0.self_attn")  # no input-norm wrapper: ids are not standardized
    # heads keep their size; the projections agree with each other after pruning
    assert attn.embed_dim == attn.in_proj_weight.shape[1] == attn.out_proj.weight.shape[0] < 32
    assert attn.embed_dim % attn.num_heads == 0
    assert metrics(ws, "exported-prune")["argmax_agreement"] == 1.0
    assert last_summary(ws)["targets"][0]["gate"] in ("pass", "FAIL")  # the gate decided
