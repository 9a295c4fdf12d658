"""`squeezeflow init`: a workspace for the user's own model and data in one command. It writes params.yaml, the
chosen device targets and an editable copy of the default recipe, then checks them the way a run would (the data
read and split, the model built and run on two samples); on any problem it removes what it wrote."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from squeezeflow.errors import SqueezeflowInputError
from squeezeflow.io import write_text
from squeezeflow.workspace import PROJECT_ROOT, SHIPPED_RECIPES, Workspace
from squeezeflow.yaml_schemas import with_schema

SHIPPED_TARGETS = PROJECT_ROOT / "device_targets"
REF = r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$"


@dataclass(frozen=True)
class Scaffolded:
    root: Path
    files: list[Path]
    summary: str


def model_source(model: str | None, checkpoint: str | None, train: bool, root: Path) -> dict:
    """'torchvision:resnet18' -> a torchvision source; 'pkg.mod:fn' -> the user's factory; a directory holding a
    config.json (save_pretrained) -> a Hugging Face classifier; model.onnx -> a frozen teacher; None -> built in."""
    import re

    if model is None:
        if checkpoint:
            raise SqueezeflowInputError("--checkpoint", "teacher.source.checkpoint", checkpoint,
                                        "a checkpoint needs --model (the module it belongs to)")
        return {"kind": "builtin"}
    if model.lower().endswith(".onnx"):  # an exported model: a frozen teacher, distilled
        if checkpoint or not train:
            raise SqueezeflowInputError("--model", "teacher.source", model, "an ONNX teacher takes no checkpoint "
                                        "and is never trained")
        return {"kind": "onnx", "path": _relative(Path(model), root)}
    if model.startswith("torchvision:"):
        source = {"kind": "torchvision", "name": model.partition(":")[2]}
    elif (Path(model) / "config.json").is_file():  # a directory save_pretrained wrote
        source = {"kind": "huggingface", "path": _relative(Path(model), root)}
    elif re.match(REF, model):
        source = {"kind": "python", "factory": model}
    else:
        raise SqueezeflowInputError("--model", "teacher.source", model, "give 'my_pkg.models:build' (a function in "
                                    "the workspace's folder returning an nn.Module), 'torchvision:resnet18', "
                                    "a Hugging Face model directory or an exported model.onnx")
    if checkpoint:
        source["checkpoint"] = _relative(Path(checkpoint), root)
    if not train:
        source["train"] = False
    return source


def dataset(data: str, root: Path) -> dict:
    """A folder -> image_folder; .csv/.parquet -> table; .npz -> npz; 'pkg.mod:fn' -> the user's data function."""
    import re

    path = Path(data)
    if not path.exists() and re.match(REF, data):
        return {"name": "python", "factory": data}
    if not path.exists():
        raise SqueezeflowInputError("--data", "dataset.path", data, "no such file or folder (or give 'pkg.mod:fn', "
                                    "a function returning (x, y))")
    kind = "image_folder" if path.is_dir() else {".npz": "npz", ".csv": "table", ".parquet": "table",
                                                  ".pq": "table"}.get(path.suffix.lower())
    if kind is None:
        raise SqueezeflowInputError("--data", "dataset.path", data, "expected a folder of images per class, a "
                                    ".csv/.parquet table or an .npz")
    return {"name": kind, "path": _relative(path, root)}


def _relative(path: Path, root: Path) -> str:
    path = path.resolve()
    try:
        return str(path.relative_to(root.resolve()))
    except ValueError:
        return str(path)


def init_workspace(root: Path, model: str | None, data: str, targets: list[str], checkpoint: str | None = None,
                   train: bool = True, force: bool = False) -> Scaffolded:
    root = Path(root).resolve()
    if (root / "params.yaml").exists() and not force:
        raise SqueezeflowInputError(root / "params.yaml", "<file>", str(root / "params.yaml"),
                                    "a workspace is already here (--force overwrites its params.yaml)")
    known = sorted(p.stem for p in SHIPPED_TARGETS.glob("*.yaml"))
    if not targets:
        raise SqueezeflowInputError("--target", "device_targets", [], "name at least one target")
    for t in targets:
        if t not in known:
            raise SqueezeflowInputError("--target", "device_targets", t, f"no such shipped target; known: {known}")
    params = {"dataset": dataset(data, root), "teacher": {"source": model_source(model, checkpoint, train, root)},
              "compress": {"recipe": "default"}, "sweep": {"target": targets[0]}}
    created = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    try:
        written.append(_write(root / "params.yaml",
                              with_schema(PARAMS_HEADER + yaml.safe_dump(params, sort_keys=False), "params")))
        for t in targets:
            written.append(_write(root / "device_targets" / f"{t}.yaml",
                                  with_schema((SHIPPED_TARGETS / f"{t}.yaml").read_text(), "target")))
        if not (root / "recipes" / "default.yaml").exists():
            written.append(_write(root / "recipes" / "default.yaml",
                                  with_schema((SHIPPED_RECIPES / "default.yaml").read_text(), "recipe")))
        ws = Workspace(root)
        try:
            ws.validate(ws.params(), read_data=True)
        except SqueezeflowInputError as exc:  # params.yaml is removed below: name the flag the value came from
            flag = FLAGS.get(".".join(exc.field.split(".")[:2]))
            if flag and exc.source == str(ws.params_path):
                raise SqueezeflowInputError(flag, exc.field, exc.value, exc.problem) from None
            raise
        return Scaffolded(root, written, _summary(ws))
    except BaseException:
        for path in written:  # nothing half-made: a workspace that would fail its first run is not left behind
            path.unlink(missing_ok=True)
        for folder in (root / "device_targets", root / "recipes"):
            if folder.is_dir() and not any(folder.iterdir()):
                shutil.rmtree(folder)
        if created and not any(root.iterdir()):
            root.rmdir()
        raise


FLAGS = {"teacher.source": "--model", "dataset.name": "--data", "dataset.path": "--data",
         "dataset.factory": "--data"}

PARAMS_HEADER = """\
# Written by `squeezeflow init`. Every field and its default: docs/techniques.md and README.md (Configure).
# dataset: your data; teacher.source: your model (python factory, torchvision name, or builtin);
# compress.recipe: recipes/default.yaml here (an editable copy of the shipped default).
"""


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, text)
    return path


def _summary(ws: Workspace) -> str:
    from squeezeflow.data import load_dataset

    params = ws.params()
    data = load_dataset(params.dataset)
    model = params.teacher.source
    what = "built-in (teacher.arch auto)" if model.kind == "builtin" else model.label()
    return (f"data: {params.dataset.name} {params.dataset.path or params.dataset.factory or ''}: {len(data.y)} "
            f"samples, {data.num_classes} classes, input {tuple(data.x.shape[1:])} {data.x.dtype}; model: {what}; "
            f"targets: {', '.join(sorted(ws.targets))}")
