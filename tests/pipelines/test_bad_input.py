"""Bad-input catalogue, through the CLI: data files, recipes, targets, params, and corrupt checkpoints and ONNX files
read by `squeezeflow stage` (the command `dvc repro` runs). Every case must exit non-zero with exactly one `error:`
line naming the file (or the command-line option), the field and the value, print no stack trace, train nothing,
register nothing and leave params.yaml as it was.

Most cases fail before any run starts (exit 2). A few data files load but fail the Great Expectations data check
inside the run (exit 1): those run a Dagster job each, so there are only three of them."""

from __future__ import annotations

import functools
import io
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pipelines.cli import main
from tests.conftest import write_target

GARBAGE = bytes(range(256)) * 8


@functools.cache
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images / 16.0).astype(np.float32), d.target.astype(np.int64)


def _npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


@functools.cache
def _model_file(kind: str) -> bytes:
    """A real (untrained) digits model as a squeezeflow checkpoint ("pt") or an ONNX export ("onnx")."""
    from squeezeflow.export import export_onnx
    from squeezeflow.models import ModelSpec, build_model, save_checkpoint

    spec = ModelSpec("mlp", (8, 8), 10, (16,))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"model.{kind}"
        if kind == "pt":
            save_checkpoint(path, build_model(spec), spec)
        else:
            export_onnx(build_model(spec), spec.input_shape, path, 17)
        return path.read_bytes()


def _torch_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


# --- setups: each writes its bad input and returns the CLI arguments (after --root) ----------------------------------
def npz(make=None, raw: bytes | None = None, extra: tuple[str, ...] = ()):
    """`run --npz data.npz`, the file written from make(x, y) -> arrays (or raw bytes); None: no file at all."""
    def setup(ws: Path) -> list[str]:
        path = ws.parent / "data.npz"
        if make is not None or raw is not None:
            path.write_bytes(raw if raw is not None else _npz_bytes(**make(*map(np.copy, _digits()))))
        return ["run", "--npz", str(path), *extra]
    return setup


def relabel(y: np.ndarray, rows: dict[int, int]) -> np.ndarray:
    for i, v in rows.items():
        y[i] = v
    return y


def recipe(text: str):
    def setup(ws: Path) -> list[str]:
        (ws / "recipes" / "bad.yaml").write_text(text)
        return ["run", "--recipe", "bad"]
    return setup


def target(text: str | None = None, extra: dict | None = None, argv=("run",), **kw):
    """device_targets/cpu-fp32.yaml replaced: by `text`, or by write_target's profile with kw and `extra` keys."""
    def setup(ws: Path) -> list[str]:
        path = write_target(ws / "device_targets", "cpu-fp32", **kw)
        if text is not None:
            path.write_text(text)
        elif extra:
            path.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), **extra}))
        return list(argv)
    return setup


def params(text: str):
    def setup(ws: Path) -> list[str]:
        (ws / "params.yaml").write_text(text)
        return ["run"]
    return setup


def args(*argv: str):
    return lambda ws: list(argv)


def stage(name: str, files: dict[str, bytes | Callable[[], bytes]], dataset: bool = True):
    """`stage <name>` after writing artifacts/<rel> files (a real dataset first, by `stage dataset`, if asked)."""
    def setup(ws: Path) -> list[str]:
        if dataset:
            assert main(["--root", str(ws), "stage", "dataset"]) == 0
        for rel, data in files.items():
            path = ws / "artifacts" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data() if callable(data) else data)
        return ["stage", name]
    return setup


USER_NET = """
from torch import nn


def build(num_classes=10, outputs=None):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, outputs or num_classes))
"""


CUSTOM_LAYER_NET = """
import torch
from torch import nn


class MyLinear(nn.Module):  # the user's own layer: its weight is a bare Parameter, not an nn.Linear
    def __init__(self, n, m):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(m, n) * 0.1)

    def forward(self, x):
        return x @ self.weight.t()


def build(num_classes=10):
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU())
    net.add_module("head", MyLinear(32, num_classes))
    return net
"""


def user_model(code: str, state: dict | None = None, factory: str = "build", recipe: dict | None = None):
    """params.yaml naming a factory in a module of the workspace (a fresh module name per case: Python caches
    imports), with a checkpoint holding `state` and a recipe `recipe` if given."""
    def setup(ws: Path) -> list[str]:
        name = f"usernet_{abs(hash((code, factory, str(state)))) % 10**8}"
        (ws / f"{name}.py").write_text(code)
        src = {"kind": "python", "factory": f"{name}:{factory}"}
        if state is not None:
            (ws / "teacher.pt").write_bytes(_torch_bytes(state))
            src["checkpoint"] = "teacher.pt"
        params = {"teacher": {"source": src, "train": {"epochs": 1}}}
        if recipe is not None:
            (ws / "recipes" / "mine.yaml").write_text(yaml.safe_dump(recipe))
            params["compress"] = {"recipe": "mine"}
        (ws / "params.yaml").write_text(yaml.safe_dump(params))
        return ["run"]
    return setup


def data_files(files: dict[str, bytes], flag_path: str):
    """`run --data <flag_path>` after writing the files (relative to a folder beside the workspace)."""
    def setup(ws: Path) -> list[str]:
        for rel, data in files.items():
            path = ws.parent / "userdata" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        return ["run", "--data", str(ws.parent / "userdata" / flag_path)]
    return setup


def _png(value: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8), value, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def case(id: str, setup, *needles: str, rc: int = 2):
    return pytest.param(setup, needles, rc, id=id)


def half(kind: str) -> Callable[[], bytes]:
    """A real model file cut off mid-write."""
    return lambda: _model_file(kind)[: len(_model_file(kind)) // 2]


CASES = [
    # data files: read and split by `run --npz`, before any run starts
    case("npz-missing", npz(), "data.npz", "field 'dataset.path'", "no such file"),
    # the user's own model and data (teacher.source python, --data): checked on two samples before any work
    case("factory-not-importable", user_model(USER_NET, factory="nope"), "params.yaml",
         "field 'teacher.source.factory'", ":nope'", "has no 'nope'"),
    case("factory-module-missing", lambda ws: (ws / "params.yaml").write_text(yaml.safe_dump({"teacher": {
        "source": {"kind": "python", "factory": "no_such_module_here:build"}}})) and ["run"],
         "field 'teacher.source.factory'", "cannot import module 'no_such_module_here'"),
    case("factory-no-module", user_model("def build(**kw):\n    return 42\n"), "field 'teacher.source.factory'",
         "returned int, not a torch.nn.Module"),
    case("checkpoint-keys", user_model(USER_NET, state={"fc.weight": torch.zeros(10, 64)}),
         "field 'teacher.source.checkpoint'", "teacher.pt", "keys do not match", "missing ['1.bias'"),
    case("torchvision-unknown", lambda ws: (ws / "params.yaml").write_text(yaml.safe_dump({"teacher": {
        "source": {"kind": "torchvision", "name": "resnet7"}}})) and ["run"],
         "field 'teacher.source.name' = 'resnet7'", "unknown torchvision classification model", "resnet18"),
    case("huggingface-dir-missing", lambda ws: (ws / "params.yaml").write_text(yaml.safe_dump({"teacher": {
        "source": {"kind": "huggingface", "path": "nobert"}}})) and ["run"],
         "field 'teacher.source.path'", "nobert", "not a Hugging Face model directory"),
    case("huggingface-unknown-model-type", lambda ws: (ws / "params.yaml").write_text(yaml.safe_dump({"teacher": {
        "source": {"kind": "huggingface", "config": {"model_type": "bret"}}}})) and ["run"],
         "field 'teacher.source.config' = 'bret'", "unknown Hugging Face model_type"),
    case("huggingface-no-origin", lambda ws: (ws / "params.yaml").write_text(yaml.safe_dump({"teacher": {
        "source": {"kind": "huggingface"}}})) and ["run"],
         "params.yaml", "field 'teacher.source", "exactly one of path"),
    case("huggingface-image-data", lambda ws: (ws / "params.yaml").write_text(yaml.safe_dump({"teacher": {
        "source": {"kind": "huggingface", "config": {"model_type": "bert", "hidden_size": 32,
                                                     "num_attention_heads": 2}}}})) and ["run"],
         "field 'teacher.source.config' = 'bert'", "takes token ids", "(8, 8)"),
    case("custom-layer-a-technique-cannot-handle", user_model(CUSTOM_LAYER_NET, recipe={"name": "mine", "steps": [
        {"technique": "prune-magnitude", "sparsity": 0.5}, {"technique": "quantize", "include": ["head"]}]}),
         "mine.yaml", "field 'steps[1].include' = ['head']", "module 'head' of type MyLinear",
         "quantize cannot handle", "supports Linear, Conv1d, Conv2d"),
    case("include-matches-nothing", user_model(USER_NET, recipe={"name": "mine", "steps": [
        {"technique": "factorize-svd", "rank_ratio": 0.5, "include": ["layer9.*"]}]}),
         "field 'steps[0].include' = ['layer9.*']", "matches no module factorize-svd handles (Linear)", "['1']"),
    case("onnx-teacher-missing", lambda ws: (ws / "params.yaml").write_text(yaml.safe_dump({"teacher": {
        "source": {"kind": "onnx", "path": "nope.onnx"}}})) and ["run"],
         "field 'teacher.source.path'", "/nope.onnx'", "no such file"),
    case("onnx-teacher-garbage", lambda ws: (ws / "t.onnx").write_bytes(GARBAGE) and (ws / "params.yaml").write_text(
        yaml.safe_dump({"teacher": {"source": {"kind": "onnx", "path": "t.onnx"}}})) and ["run"],
         "field 'teacher.source.path'", "/t.onnx'", "not an ONNX model ONNX Runtime can load"),
    case("onnx-teacher-not-distilled-first", lambda ws: (ws / "t.onnx").write_bytes(_model_file("onnx")) and (
        ws / "recipes" / "q.yaml").write_text("name: q\nsteps:\n  - {technique: quantize, bits: 8}\n") and (
        ws / "params.yaml").write_text(yaml.safe_dump({"teacher": {"source": {"kind": "onnx", "path": "t.onnx"}},
                                                       "compress": {"recipe": "q"}})) and ["run"],
         "q.yaml", "field 'steps[0].technique' = 'quantize'", "the first step must be `distill`"),
    case("output-classes", user_model(USER_NET.replace("outputs=None", "outputs=3")),
         "field 'teacher.source.factory'", "(2, 3)", "10 classes"),
    case("image-undecodable", data_files({"a/1.png": _png(0), "a/2.png": _png(9), "a/3.png": _png(3),
                                          "b/1.png": _png(200), "b/2.png": b"not a png", "b/3.png": _png(250)},
                                         ""), "b/2.png", "field '<file>'", "not a decodable image"),
    case("table-no-label", data_files({"t.csv": b"a,b,kind\n1,2,x\n3,4,y\n5,6,x\n"}, "t.csv"), "t.csv",
         "field 'dataset.label_column' = 'label'", "no such column", "'kind'"),
    case("npz-random-bytes", npz(raw=GARBAGE), "data.npz", "field '<file>'", "not a .npz file"),
    case("npz-truncated", npz(raw=_npz_bytes(x=np.zeros((50, 4), np.float32))[:200]), "data.npz", "field '<file>'",
         "not a readable .npz file"),
    case("npz-no-x", npz(lambda x, y: {"y": y}), "data.npz", "field 'x' = None", "missing array 'x'"),
    case("npz-no-y", npz(lambda x, y: {"x": x}), "data.npz", "field 'y' = None", "missing array 'y'"),
    # integer x is token ids (or indices) that only a model embedding them can take
    case("npz-int-x-builtin-model", npz(lambda x, y: {"x": (x * 16).astype(np.int64), "y": y}),
         "field 'teacher.source.kind' = 'builtin'", "integers (int64: token ids", "teacher.source kind python"),
    case("npz-1d-x", npz(lambda x, y: {"x": x[:, 0, 0], "y": y}), "data.npz", "field 'x' = 'shape (1797,)'"),
    case("npz-float-y", npz(lambda x, y: {"x": x, "y": y.astype(np.float32)}), "data.npz", "field 'y' = 'float32'"),
    case("npz-length-mismatch", npz(lambda x, y: {"x": x, "y": y[:-1]}), "data.npz", "field 'y' = 'shape (1796,)'"),
    case("npz-empty", npz(lambda x, y: {"x": x[:0], "y": y[:0]}), "data.npz", "field 'x' = 'shape (0, ...)'", "empty"),
    case("npz-label-negative", npz(lambda x, y: {"x": x, "y": relabel(y, {5: -1})}), "data.npz", "field 'y' = -1",
         "row 5"),
    case("npz-label-too-big",
         npz(lambda x, y: {"x": x, "y": relabel(y, {7: 10})}, extra=("--set", "dataset.num_classes=10")),
         "data.npz", "field 'y' = 10", "0..9"),
    case("npz-class-with-2-samples", npz(lambda x, y: {"x": x, "y": relabel(np.where(y == 9, 8, y), {0: 9, 1: 9})}),
         "data.npz", "field 'y' = 9", "2 sample(s)"),
    # data files that load but fail the data check inside the run (the dataset stage only: exit 1)
    case("npz-nan", npz(lambda x, y: {"x": np.where(np.arange(x.size).reshape(x.shape) == 99, np.nan, x), "y": y}),
         "data.npz", "field 'x' = nan", "finite", rc=1),
    case("npz-huge-values", npz(lambda x, y: {"x": x * np.float32(1e30), "y": y}), "data.npz", "field 'x' = 9.3",
         "e+29", "|values| must be <= 1e+06", rc=1),
    case("npz-constant-features", npz(lambda x, y: {"x": np.ones_like(x), "y": y}), "data.npz",
         "field 'x' = 1 distinct row(s)", "constant", rc=1),
    # recipes
    case("recipe-unknown-name", args("run", "--recipe", "no-such-recipe"), "field 'compress.recipe' = 'no-such-recipe'",
         "no such recipe"),
    case("recipe-missing-file", lambda ws: ["run", "--recipe", str(ws.parent / "gone.yaml")], "gone.yaml",
         "field '<file>'", "no such recipe file"),
    case("recipe-unknown-technique", recipe("steps:\n  - {technique: shrink-ray}\n"), "bad.yaml",
         "field 'steps[0].technique' = 'shrink-ray'", "unknown technique"),
    case("recipe-unknown-step-key", recipe("steps:\n  - {technique: prune-magnitude, sparsty: 0.5}\n"), "bad.yaml",
         "field 'steps[0].sparsty' = 0.5"),
    case("recipe-unknown-top-key", recipe("stepz: []\nsteps:\n  - {technique: prune-magnitude}\n"), "bad.yaml",
         "field 'stepz' = []", "unknown recipe key"),
    case("recipe-invalid-yaml", recipe("steps: [{technique: distill\n"), "bad.yaml", "field '<root>' = None",
         "not valid YAML: line 2, column 1"),
    case("recipe-out-of-range", recipe("steps:\n  - {technique: prune-magnitude, sparsity: 1.5}\n"), "bad.yaml",
         "field 'steps[0].sparsity' = 1.5"),
    # device targets
    case("target-unknown", args("run", "--target", "gpu-h100"), "--target", "field 'targets' = 'gpu-h100'",
         "unknown target"),
    case("target-unknown-key", target(extra={"budgetz": {"max_model_bytes": 1}}), "cpu-fp32.yaml",
         "field 'budgetz' = {'max_model_bytes': 1}", "not permitted"),
    case("target-unknown-builder", target(builder="coreml"), "cpu-fp32.yaml", "field 'build.builder' = 'coreml'",
         "unknown builder"),
    case("target-unknown-runtime", target(extra={"runtime": "tflite"}), "cpu-fp32.yaml",
         "field 'runtime' = 'tflite'", "unknown runtime; known: onnxruntime, openvino, tensorrt"),
    case("target-runtime-cannot-run-build", target(extra={"runtime": "openvino"}), "cpu-fp32.yaml",
         "field 'build.builder' = 'ort-fp32'", "runtime 'openvino' does not run", "whose output openvino runs"),
    case("target-negative-budget", target(max_latency_p95_ms=-1), "cpu-fp32.yaml",
         "field 'budgets.max_latency_p95_ms' = -1", "greater than 0"),
    case("target-name-mismatch", target(extra={"name": "cpu-fp33"}), "cpu-fp32.yaml", "field 'name' = 'cpu-fp33'"),
    case("target-agent-token-in-clear", target(extra={"device": {"agent": "http://board.local:8765"}}),
         "cpu-fp32.yaml", "field 'device' = {'agent': 'http://board.local:8765'}", "token in clear"),
    case("target-invalid-yaml", target("build: [\n"), "cpu-fp32.yaml", "field '<root>' = None",
         "not valid YAML: line 2, column 1"),
    # params: the file and the command line
    case("set-unknown-key", args("run", "--set", "teacher.epochs=5"), "command line", "field 'teacher.epochs' = 5",
         "unknown parameter"),
    case("set-out-of-range", args("run", "--set", "teacher.train.epochs=0"), "command line",
         "field 'teacher.train.epochs' = 0", "greater than or equal to 1"),
    case("set-malformed", args("run", "--set", "nonsense"), "--set", "field '<override>' = 'nonsense'", "KEY=VALUE"),
    case("dataset-unknown", args("run", "--dataset", "imagenet"), "command line", "field 'dataset.name' = 'imagenet'"),
    # found before any work, not when the sweep (or the teacher) runs: Workspace.validate, every entry point
    case("sweep-target-unknown", args("run", "--set", "sweep.target=tpu-v9"), "command line",
         "field 'sweep.target' = 'tpu-v9'", "no such device target"),
    case("teacher-arch-unknown", params("teacher: {arch: vit}\n"), "params.yaml", "field 'teacher.arch' = 'vit'",
         "unknown architecture"),
    case("params-invalid-yaml", params("teacher: {arch: mlp\n"), "params.yaml", "field '<root>' = None",
         "not valid YAML: line 2, column 1"),
    case("params-unknown-key", params("teacher: {epochz: 3}\n"), "params.yaml", "field 'teacher.epochz' = 3"),
    case("params-wrong-type", params("split: {val: lots}\n"), "params.yaml", "field 'split.val' = 'lots'"),
    case("params-webhook-not-a-url", params("notify: {webhook_url: hooks.slack.com/x}\n"), "params.yaml",
         "field 'notify.webhook_url' = 'hooks.slack.com/x'", "pattern"),
    # corrupt stage inputs, through `squeezeflow stage` (what `dvc repro` runs)
    case("ckpt-garbage", stage("compressed-tiny", {"teacher/model.pt": GARBAGE}), "teacher/model.pt",
         "field '<file>'", "not a readable squeezeflow checkpoint"),
    case("ckpt-truncated", stage("finetuned-tiny", {"teacher/model.pt": lambda: _model_file("pt"),
                                                    "compressed-tiny/model.pt": half("pt")}),
         "compressed-tiny/model.pt", "field '<file>'", "not a readable squeezeflow checkpoint"),
    case("ckpt-empty", stage("exported-tiny", {"finetuned-tiny/model.pt": b""}, dataset=False),
         "finetuned-tiny/model.pt", "field '<file>'", "an empty file"),
    case("ckpt-pickled-object",
         stage("exported-tiny", {"finetuned-tiny/model.pt": lambda: _torch_bytes({"x": Path("/")})}, dataset=False),
         "finetuned-tiny/model.pt", "field '<file>'", "Unsupported global"),
    case("ckpt-foreign-dict",
         stage("exported-tiny", {"finetuned-tiny/model.pt": lambda: _torch_bytes({"w": torch.zeros(2)})},
               dataset=False), "finetuned-tiny/model.pt", "field 'model' = None", "not a squeezeflow checkpoint"),
    case("ckpt-missing", stage("exported-tiny", {}, dataset=False), "finetuned-tiny/model.pt", "field '<file>'",
         "no such checkpoint file"),
    case("onnx-garbage", stage("select-cpu-fp32", {"exported-tiny/model.onnx": GARBAGE}),
         "exported-tiny/model.onnx", "field '<file>'", "not a valid ONNX model"),
    case("onnx-empty", stage("select-cpu-int8", {"exported-tiny/model.onnx": b""}), "exported-tiny/model.onnx",
         "field '<file>'", "an empty file"),
    case("onnx-truncated", stage("select-cpu-int8", {"exported-tiny/model.onnx": half("onnx")}),
         "exported-tiny/model.onnx", "field '<file>'", "not a valid ONNX model"),
    case("onnx-missing", stage("select-cpu-fp32", {}), "exported-tiny/model.onnx", "field '<file>'",
         "no such ONNX model file"),
    case("onnx-built-garbage", stage("validate-cpu-fp32", {"build-cpu-fp32/model.onnx": GARBAGE}),
         "build-cpu-fp32/model.onnx", "field '<file>'", "not a valid ONNX model"),
    case("stage-bad-target", target(builder="coreml", argv=("stage", "dataset")), "cpu-fp32.yaml",
         "field 'build.builder' = 'coreml'"),
]


def _listing(ws: Path) -> set[str]:
    root = ws / "artifacts"
    return {p.relative_to(root).as_posix() for p in root.rglob("*")} if root.exists() else set()


@pytest.mark.parametrize("setup, needles, rc", CASES)
def test_bad_input_is_one_clear_error(workspace, capsys, monkeypatch, setup, needles, rc):
    monkeypatch.setenv("SQUEEZEFLOW_ROOT", str(workspace))  # the CLI sets it (setdefault): keep it to this test
    argv = setup(workspace)
    capsys.readouterr()
    before, params_bytes = _listing(workspace), (workspace / "params.yaml").read_bytes()

    assert main(["--root", str(workspace), *argv]) == rc
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    errors = err.strip().splitlines()  # one message, one line: nothing else on stderr
    assert len(errors) == 1 and errors[0].startswith("error: "), err
    assert all(n in errors[0] for n in needles), errors[0]

    new = _listing(workspace) - before  # nothing trained: in-run, only the dataset stage ran
    assert not new if rc == 2 else {p.split("/")[0] for p in new} == {"dataset"}, new
    assert (workspace / "params.yaml").read_bytes() == params_bytes
    db = workspace / ".squeezeflow" / "mlflow.db"
    if db.exists():
        from mlflow import MlflowClient

        uri = f"sqlite:///{db}"
        assert MlflowClient(tracking_uri=uri, registry_uri=uri).search_registered_models() == []
