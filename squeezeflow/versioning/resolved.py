"""What DVC compares: the resolved-parameter files under .squeezeflow/ and dvc.yaml, rendered from the stages.

params.yaml stays as the user wrote it; a run's flags, the target profiles and recipes with their defaults filled
in, each stage's code version and the user's data file's content hash are written here, and dvc.yaml names the
sections each stage reads, so `dvc repro` reruns exactly what changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import yaml

from squeezeflow.config import Params
from squeezeflow.io import sha256_file, sha256_tree
from squeezeflow.stages import Stage

RESOLVED_PARAMS = ".squeezeflow/params.yaml"  # params.yaml + this run's flags: what stages and DVC read
CODE_VERSIONS = ".squeezeflow/code_versions.yaml"
RESOLVED_TARGETS = ".squeezeflow/targets.yaml"  # profiles with defaults filled in: what DVC compares
# main: the chosen recipe; sweep: the sweep's; validated, defaults filled
RESOLVED_RECIPES = ".squeezeflow/recipes.yaml"
RESOLVED_INPUTS = ".squeezeflow/inputs.yaml"  # content hashes of user files (a .npz changed in place must retrain)
ARTIFACTS = "artifacts"  # stage outputs: artifacts/<stage>


def input_fingerprints(params: Params) -> dict:
    """The user's files by content: params name the data file, the model's factory and checkpoint; DVC must also
    see what is in them (editing the model's code retrains the teacher)."""
    path = Path(params.dataset.path) if params.dataset.path else None
    if params.dataset.factory:  # the user's data function: its module's file stands for what it returns
        path = _module_file(params.dataset.factory)
    return {"dataset": {"file": str(path) if path else None, "sha256": _digest(path)},
            "model": model_fingerprint(params)}


def _digest(path: Path | None) -> str | None:
    if path is None or not path.exists():
        return None
    return sha256_tree(path) if path.is_dir() else sha256_file(path)


def _module_file(ref: str) -> Path | None:
    from importlib.util import find_spec

    try:
        found = find_spec(ref.partition(":")[0])
    except (ImportError, ValueError):
        return None
    return Path(found.origin) if found and found.origin else None


def _package_digest(ref: str) -> str | None:
    """The Python files of the factory's top-level package (a factory in `my_pkg.models` may build from
    `my_pkg/blocks.py`): editing any of them reruns the teacher. None for a top-level module (its file is hashed)."""
    import hashlib
    from importlib.util import find_spec

    try:
        found = find_spec(ref.partition(":")[0].split(".")[0])
    except (ImportError, ValueError):
        return None
    if not found or not found.submodule_search_locations:
        return None
    root, h = Path(list(found.submodule_search_locations)[0]), hashlib.sha256()
    for f in sorted(root.rglob("*.py")):  # sources only: __pycache__ changes whenever Python compiles
        h.update(f.relative_to(root).as_posix().encode())
        h.update(sha256_file(f).encode())
    return h.hexdigest()


def model_fingerprint(params: Params) -> dict:
    src = params.teacher.source
    if src.kind == "builtin":
        return {"kind": src.kind}
    if src.kind == "onnx":
        return {"kind": src.kind, "path": src.path, "sha256": _digest(Path(src.path))}
    origin = _module_file(src.factory_ref())
    ckpt = Path(src.checkpoint) if src.checkpoint else None
    out = {"kind": src.kind, "factory": src.factory_ref(), "kwargs": src.factory_kwargs(),
           "factory_file": str(origin) if origin else None, "factory_sha256": _digest(origin),
           "checkpoint": str(ckpt) if ckpt else None, "checkpoint_sha256": _digest(ckpt)}
    library = {"torchvision": "torchvision", "huggingface": "transformers"}.get(src.kind)
    if library:  # the architecture's code is the library's: its version stands for it
        from importlib.metadata import version

        out[library] = version(library)
    else:
        out["package_sha256"] = _package_digest(src.factory_ref())
    if getattr(src, "path", None):  # a local Hugging Face directory: its config and weights by content
        out["path"], out["path_sha256"] = src.path, _digest(Path(src.path))
    return out


def resolved_files(params: Params, stages: Mapping[str, Stage], targets: Mapping, recipes: dict) -> dict[str, str]:
    """Relative path -> text of every resolved file DVC reads."""
    return {
        RESOLVED_PARAMS: yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False),
        CODE_VERSIONS: yaml.safe_dump({name: s.code_version() for name, s in stages.items()}, sort_keys=True),
        RESOLVED_TARGETS: yaml.safe_dump({n: t.model_dump(mode="json") for n, t in targets.items()}, sort_keys=True),
        RESOLVED_RECIPES: yaml.safe_dump(recipes, sort_keys=False),
        RESOLVED_INPUTS: yaml.safe_dump(input_fingerprints(params), sort_keys=True),
    }


def dvc_stage(stage: Stage) -> dict:
    params: list = [{RESOLVED_PARAMS: list(stage.params)}] if stage.params else []
    if stage.target_params:
        params.append({RESOLVED_TARGETS: [f"{stage.target.name}.{k}" for k in stage.target_params]})
    if stage.recipe_params:
        params.append({RESOLVED_RECIPES: list(stage.recipe_params)})
    if stage.input_params:
        params.append({RESOLVED_INPUTS: list(stage.input_params)})
    params.append({CODE_VERSIONS: [stage.name]})
    entry: dict = {"cmd": f"squeezeflow --root . stage {stage.name}"}  # DVC runs it in the workspace
    if stage.description:
        entry["desc"] = stage.description
    if stage.deps:
        entry["deps"] = [f"{ARTIFACTS}/{d}" for d in stage.deps]
    entry["params"] = params
    entry["outs"] = [f"{ARTIFACTS}/{stage.name}"]
    return entry


def render_dvc_yaml(stages: Mapping[str, Stage]) -> str:
    body = {"stages": {name: dvc_stage(s) for name, s in stages.items()}}
    header = "# Generated from squeezeflow/stages by `squeezeflow dvc-yaml` (and by every run): do not edit.\n"
    return header + yaml.safe_dump(body, sort_keys=False)
