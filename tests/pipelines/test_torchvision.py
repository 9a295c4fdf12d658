"""torchvision architectures by name as teachers, end to end on an image folder the test writes: resnet18 (RGB)
through the shipped default recipe (a pruned student distilled from it, int8), mobilenet_v3_small (grayscale: its
first convolution takes one channel) through structured pruning; each exported with its residual adds and parity,
built for int8 and gated, registered and promoted."""

import json

import numpy as np
import onnx
import pytest
import yaml
from mlflow import MlflowClient
from PIL import Image

from pipelines.runner import run_lifecycle
from squeezeflow.workspace import Workspace
from tests.conftest import PROJECT, lifecycle_env, make_workspace

pytestmark = pytest.mark.slow

PRUNE = {"name": "prune", "steps": [
    {"technique": "prune-channels", "amount": 0.5, "steps": 2, "finetune": {"epochs": 3, "patience": 3}},
    {"technique": "quantize", "bits": 8},
], "finetune": {"alpha": 0.5, "train": {"epochs": 4, "patience": 4, "lr": 0.001}}}


def _images(root, rgb: bool, n: int = 450) -> None:
    """Digits at 16x16; in RGB each class gets its own tint, so colour carries signal too."""
    from sklearn.datasets import load_digits

    d = load_digits()
    tints = np.random.default_rng(0).uniform(0.4, 1.0, size=(10, 3))
    for i, (img, y) in enumerate(zip(d.images[:n], d.target[:n], strict=True)):
        g = (img * 16).clip(0, 255).astype(np.uint8)
        im = Image.fromarray((g[..., None] * tints[y]).astype(np.uint8)) if rgb else Image.fromarray(g)
        (root / f"c{y}").mkdir(parents=True, exist_ok=True)
        im.resize((16, 16)).save(root / f"c{y}" / f"{i}.png")


def _quick_default() -> dict:
    """The shipped default recipe, its training budgets cut for a test (the techniques are the same)."""
    recipe = yaml.safe_load((PROJECT / "recipes" / "default.yaml").read_text())
    recipe["steps"][0]["train"] |= {"epochs": 12, "patience": 12}
    recipe["finetune"]["train"] |= {"epochs": 2, "patience": 2}
    return recipe


def _run(base, name: str, rgb: bool, recipe: dict, epochs: int):
    root = base / name
    params = {"dataset": {"name": "image_folder", "path": "images", "channels": 3 if rgb else 1},
              "teacher": {"source": {"kind": "torchvision", "name": name},
                          "train": {"epochs": epochs, "patience": epochs}},
              "compress": {"recipe": recipe["name"]}, "sweep": {"teacher_scales": [1.0], "recipes": [recipe["name"]]}}
    make_workspace(root, params)
    (root / "recipes" / f"{recipe['name']}.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    _images(root / "images", rgb)
    ws = Workspace(root)
    return ws, run_lifecycle(ws, [], ["cpu-int8"])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    with lifecycle_env(tmp_path_factory.mktemp("tv")) as base:
        yield {"resnet18": _run(base, "resnet18", True, _quick_default(), 3),
               "mobilenet_v3_small": _run(base, "mobilenet_v3_small", False, PRUNE, 10)}


def metrics(ws: Workspace, stage: str) -> dict:
    return json.loads((ws.stage_dir(stage) / "metrics.json").read_text())


def versions(ws: Workspace) -> list:
    uri = f"sqlite:///{ws.state_dir / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    return client.search_model_versions("name = 'squeezeflow-images-cpu-int8'")


def test_resnet18_by_name_through_the_default_recipe(runs):
    import torchvision

    ws, rc = runs["resnet18"]
    assert rc == 0
    teacher = metrics(ws, "teacher")
    assert teacher["arch"] == "torchvision:resnet18"
    # the real resnet18, with 10 classes: its parameter count, as torchvision builds it
    assert teacher["parameters"] == sum(p.numel() for p in torchvision.models.resnet18(num_classes=10).parameters())
    assert teacher["test_accuracy"] > 30
    exported = metrics(ws, ws.recipe_stage("exported"))
    assert exported["argmax_agreement"] == 1.0
    ops = [n.op_type for n in onnx.load(str(ws.stage_dir(ws.recipe_stage("exported")) / "model.onnx")).graph.node]
    assert ops.count("Add") >= 8  # resnet18's eight residual adds survived pruning and export
    built = metrics(ws, "build-cpu-int8")
    assert built["model_bytes"] * 10 < teacher["parameters"] * 4  # >= 10x smaller than the fp32 teacher
    validated = metrics(ws, "validate-cpu-int8")
    assert validated["accuracy"] > 70
    summary = json.loads(sorted((ws.state_dir / "runs").glob("*/summary.json"))[0].read_text())
    assert {r["target"]: r["promoted"] for r in summary["targets"]} == {"cpu-int8": "champion"}
    assert [v.tags.get("squeezeflow.gate") for v in versions(ws)] == ["passed"]


def test_mobilenet_v3_small_on_grayscale_through_structured_pruning(runs):
    ws, rc = runs["mobilenet_v3_small"]
    assert rc in (0, 3)  # 3: gated and held back; either way the gate decided, nothing broke
    teacher, compressed = metrics(ws, "teacher"), metrics(ws, ws.recipe_stage("compressed"))
    assert teacher["test_accuracy"] > 30  # BatchNorm momentum 0.01: evaluated on stale statistics it would be 10%
    assert compressed["parameters"] < 0.5 * teacher["parameters"]  # channels physically removed
    graph = onnx.load(str(ws.stage_dir(ws.recipe_stage("exported")) / "model.onnx")).graph
    assert len(graph.input[0].type.tensor_type.shape.dim) == 3  # (N, 16, 16): the channel axis is added inside
    assert metrics(ws, ws.recipe_stage("exported"))["argmax_agreement"] == 1.0
    gated = versions(ws)
    assert len(gated) == 1 and gated[0].tags.get("squeezeflow.gate") in ("passed", "failed")
