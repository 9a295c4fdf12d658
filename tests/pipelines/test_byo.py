"""Bring your own model and data, end to end: a residual CNN from a factory in the workspace, trained elsewhere (its
checkpoint, train: false), on a folder of PNG images, through the main job with gates, registration and promotion;
then reuse, and a rerun of the teacher when the factory's file changes."""

import json

import numpy as np
import onnx
import pytest
import torch
import yaml
from mlflow import MlflowClient
from PIL import Image

from pipelines.runner import run_lifecycle
from squeezeflow.workspace import Workspace
from tests.conftest import lifecycle_env, make_workspace

pytestmark = pytest.mark.slow

NETS = '''
import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x):
        return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


class Net(nn.Module):
    def __init__(self, num_classes, width):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.layer1 = Block(width)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.head(self.layer1(self.stem(x.unsqueeze(1))).mean((2, 3)))


def build(num_classes, width=24):
    return Net(num_classes, width)
'''

RECIPE = {"name": "byo", "steps": [
    {"technique": "prune-channels", "amount": 0.5, "steps": 2, "finetune": {"epochs": 4, "patience": 4}},
    {"technique": "quantize", "bits": 8, "exclude": ["stem.*"]},
], "finetune": {"alpha": 0.5, "train": {"epochs": 8, "patience": 8, "lr": 0.003}}}


def _write_images(root):
    from sklearn.datasets import load_digits

    d = load_digits()
    for i, (img, y) in enumerate(zip(d.images[:900], d.target[:900], strict=True)):
        (root / f"digit_{y}").mkdir(parents=True, exist_ok=True)
        Image.fromarray((img * 16).clip(0, 255).astype(np.uint8)).save(root / f"digit_{y}" / f"{i}.png")
    return d.images[:900] / 16.0, d.target[:900]


def _train_elsewhere(root, x, y) -> None:
    """What the user did before: their own training script, their own state dict."""
    import sys

    sys.path.insert(0, str(root))
    from usernets.nets import build

    torch.manual_seed(0)
    model = build(10)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    xt, yt = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y)
    for _ in range(15):
        for i in range(0, len(xt), 64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xt[i:i + 64]), yt[i:i + 64]).backward()
            opt.step()
    torch.save(model.state_dict(), root / "teacher.pt")


def client(ws: Workspace) -> MlflowClient:
    uri = f"sqlite:///{ws.state_dir / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def reused(ws: Workspace) -> dict[str, str]:
    runs = sorted((ws.state_dir / "runs").glob("*/summary.json"), key=lambda p: p.stat().st_mtime)
    key = json.loads(runs[-1].read_text())["dagster_run_id"]
    c = client(ws)
    found = c.search_runs([c.get_experiment_by_name("squeezeflow").experiment_id],
                          f"tags.`squeezeflow.run_key` = '{key}'")
    return {r.data.tags["squeezeflow.stage"]: r.data.tags.get("squeezeflow.reused") for r in found}


@pytest.fixture(scope="module")
def byo(tmp_path_factory):
    base = tmp_path_factory.mktemp("byo")
    with lifecycle_env(base):
        root = base / "ws"
        params = {"dataset": {"name": "image_folder", "path": "images"}, "compress": {"recipe": "byo"},
                  "teacher": {"source": {"kind": "python", "factory": "usernets.nets:build",
                                         "checkpoint": "teacher.pt", "train": False}},
                  "sweep": {"teacher_scales": [1.0], "recipes": ["byo"]}}
        make_workspace(root, params)
        (root / "recipes" / "byo.yaml").write_text(yaml.safe_dump(RECIPE, sort_keys=False))
        (root / "usernets").mkdir()
        (root / "usernets" / "__init__.py").write_text("")
        (root / "usernets" / "nets.py").write_text(NETS)
        x, y = _write_images(root / "images")
        _train_elsewhere(root, x, y)
        ws = Workspace(root)
        yield ws, run_lifecycle(ws, [], ["cpu-fp32", "cpu-int8"])


def test_the_users_trained_model_is_compressed_without_retraining_and_promoted(byo):
    ws, rc = byo
    assert rc == 0
    teacher = json.loads((ws.stage_dir("teacher") / "metrics.json").read_text())
    assert teacher["trained"] is False and teacher["epochs"] == 0
    # the teacher's numbers are the user's checkpoint's own, measured here independently
    from usernets.nets import build

    model = build(10)
    model.load_state_dict(torch.load(ws.root / "teacher.pt", weights_only=True))
    x, y = (np.load(ws.stage_dir("dataset") / f"test-{a}.npy") for a in ("x", "y"))
    with torch.no_grad():
        mine = float((model.eval()(torch.as_tensor(x)).argmax(1).numpy() == y).mean() * 100)
    assert teacher["test_accuracy"] == pytest.approx(mine)
    assert teacher["test_accuracy"] > 80

    compressed = json.loads((ws.stage_dir(ws.recipe_stage("compressed")) / "metrics.json").read_text())
    assert compressed["parameters"] < 0.5 * teacher["parameters"]
    exported = json.loads((ws.stage_dir(ws.recipe_stage("exported")) / "metrics.json").read_text())
    assert exported["argmax_agreement"] == 1.0
    graph = onnx.load(str(ws.stage_dir(ws.recipe_stage("exported")) / "model.onnx")).graph
    ops = [n.op_type for n in graph.node]
    assert "Add" in ops and "DequantizeLinear" in ops  # the residual add survived; weights are int8
    summary = json.loads(sorted((ws.state_dir / "runs").glob("*/summary.json"))[0].read_text())
    assert {r["target"]: r["promoted"] for r in summary["targets"]} == {"cpu-fp32": "champion",
                                                                         "cpu-int8": "champion"}
    versions = client(ws).search_model_versions("name = 'squeezeflow-images-cpu-int8'")
    assert len(versions) == 1


def test_lineage_names_the_users_factory_and_the_sha256_of_its_file_and_checkpoint(byo, capsys):
    import hashlib

    from pipelines.cli import main

    ws, _ = byo
    capsys.readouterr()
    assert main(["--root", str(ws.root), "lineage", "models:/squeezeflow-images-cpu-int8/1"]) == 0
    out = capsys.readouterr().out
    nets = hashlib.sha256((ws.root / "usernets" / "nets.py").read_bytes()).hexdigest()
    ckpt = hashlib.sha256((ws.root / "teacher.pt").read_bytes()).hexdigest()
    assert "model usernets.nets:build(" in out
    assert f"factory sha256 {nets[:12]}" in out and f"sha256 {ckpt[:12]}" in out


def test_nothing_changed_reuses_every_stage_and_editing_the_factory_reruns_the_teacher(byo):
    ws, _ = byo
    assert run_lifecycle(ws, [], ["cpu-fp32", "cpu-int8"]) == 0
    first = reused(ws)
    assert all(first[s] == "true" for s, st in ws.stages.items() if st.group != "sweep"), first
    nets = ws.root / "usernets" / "nets.py"
    nets.write_text(nets.read_text() + "\n# the user edited their model's file\n")
    assert run_lifecycle(ws, [], ["cpu-fp32", "cpu-int8"]) in (0, 3)  # 3: the champion check may hold it back
    second = reused(ws)
    assert second["dataset"] == "true" and second["teacher"] == "false", second
