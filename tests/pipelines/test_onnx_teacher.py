"""An exported ONNX model as the teacher, end to end: ONNX Runtime computes its outputs, the recipe distils them
into a torch student, which is built for int8, gated, registered and promoted. The teacher is never trained, and
the checkpoint of the teacher stage holds the file's bytes."""

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
import yaml

from pipelines.runner import run_lifecycle
from squeezeflow.workspace import Workspace
from tests.conftest import lifecycle_env, make_workspace

pytestmark = pytest.mark.slow

RECIPE = {"name": "from-onnx", "steps": [
    {"technique": "distill", "student": {"arch": "mlp", "hidden": [32]}, "train": {"epochs": 15, "patience": 15}},
    {"technique": "quantize", "bits": 8},
], "finetune": {"train": {"epochs": 2, "patience": 2}}}


def _export_teacher(path, x, y) -> None:
    """Someone else's model, trained elsewhere: only its ONNX file reaches squeezeflow (own input/output names)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    for _ in range(20):
        for i in range(0, len(xt), 64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(xt[i:i + 64]), yt[i:i + 64]).backward()
            opt.step()
    torch.onnx.export(net.eval(), (xt[:1],), str(path), input_names=["pixels"], output_names=["scores"],
                      dynamic_axes={"pixels": {0: "n"}, "scores": {0: "n"}}, dynamo=False)


def _workspace(root, recipe: dict) -> Workspace:
    from sklearn.datasets import load_digits

    make_workspace(root, {"dataset": {"name": "npz", "path": "digits.npz"},
                          "teacher": {"source": {"kind": "onnx", "path": "teacher.onnx"}},
                          "compress": {"recipe": recipe["name"]},
                          "sweep": {"target": "cpu-int8", "teacher_scales": [1.0], "recipes": [recipe["name"]]}},
                   targets=("cpu-int8",))
    (root / "recipes" / f"{recipe['name']}.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    d = load_digits()
    x, y = (d.images / 16.0).astype(np.float32), d.target.astype(np.int64)
    np.savez(root / "digits.npz", x=x, y=y)
    _export_teacher(root / "teacher.onnx", x[:900], y[:900])
    return Workspace(root)


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    with lifecycle_env(tmp_path_factory.mktemp("onnx_teacher")) as base:
        yield _workspace(base / "ws", RECIPE)


def test_an_onnx_teacher_is_distilled_into_a_student_built_for_int8_and_promoted(ws):
    assert run_lifecycle(ws, [], ["cpu-int8"]) == 0
    teacher = json.loads((ws.stage_dir("teacher") / "metrics.json").read_text())
    assert teacher["trained"] is False and teacher["arch"] == "onnx:teacher.onnx"
    # its accuracy is the file's own, measured here by ONNX Runtime directly
    x, y = (np.load(ws.stage_dir("dataset") / f"test-{a}.npy") for a in ("x", "y"))
    sess = ort.InferenceSession(str(ws.root / "teacher.onnx"), providers=["CPUExecutionProvider"])
    mine = float((sess.run(None, {"pixels": x})[0].argmax(1) == y).mean() * 100)
    assert teacher["test_accuracy"] == pytest.approx(mine)
    compressed = json.loads((ws.stage_dir(ws.recipe_stage("compressed")) / "metrics.json").read_text())
    assert compressed["parameters"] == 64 * 32 + 32 + 32 * 10 + 10  # the recipe's student: mlp [32]
    from squeezeflow.models import Standardize, load_checkpoint

    student, _ = load_checkpoint(ws.stage_dir(ws.recipe_stage("compressed")) / "model.pt")
    assert isinstance(student[0], Standardize)  # the ONNX file scales inside itself: the student got its own
    validated = json.loads((ws.stage_dir("validate-cpu-int8") / "metrics.json").read_text())
    assert validated["accuracy"] > teacher["test_accuracy"] - 5
    summary = json.loads(sorted((ws.state_dir / "runs").glob("*/summary.json"))[-1].read_text())
    assert summary["targets"][0]["promoted"] == "champion"
    # the teacher's checkpoint carries the model itself: it loads although the user's file is gone
    (ws.root / "teacher.onnx").rename(ws.root / "moved.onnx")
    model, spec = load_checkpoint(ws.stage_dir("teacher") / "model.pt")
    assert spec.arch == "onnx"
    got = model(torch.as_tensor(x[:5])).argmax(1).numpy()
    np.testing.assert_array_equal(got, sess.run(None, {"pixels": x[:5]})[0].argmax(1))


def test_an_onnx_teacher_is_built_for_int8_as_it_is(tmp_path):
    """`steps: []`: no student; the file itself is exported (names aligned), quantized by the int8 build, gated,
    registered and promoted."""
    import onnx

    with lifecycle_env(tmp_path) as base:
        ws = _workspace(base / "ws", {"name": "as-is", "steps": []})
        assert run_lifecycle(ws, [], ["cpu-int8"]) == 0
    teacher, compressed, validated = (json.loads((ws.stage_dir(s) / "metrics.json").read_text())
                                      for s in ("teacher", ws.recipe_stage("compressed"), "validate-cpu-int8"))
    assert teacher["parameters"] == compressed["parameters"] == 64 * 128 + 128 + 128 * 10 + 10  # its initializers
    exported = onnx.load(str(ws.stage_dir(ws.recipe_stage("exported")) / "model.onnx"))
    ops = {n.op_type for n in exported.graph.node}
    assert "Gemm" in ops or "MatMul" in ops
    built = onnx.load(str(ws.stage_dir("build-cpu-int8") / "model.onnx"))
    assert sum(t.data_type == onnx.TensorProto.INT8 for t in built.graph.initializer) >= 2  # both layers int8
    assert validated["accuracy"] > teacher["test_accuracy"] - 2 and validated["agreement_with_reference"] > 95
    summary = json.loads(sorted((ws.state_dir / "runs").glob("*/summary.json"))[-1].read_text())
    assert summary["targets"][0]["promoted"] == "champion"
