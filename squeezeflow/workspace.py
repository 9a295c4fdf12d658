"""A workspace is a DVC repo holding params.yaml, device_targets/, the generated dvc.yaml and the artifacts.

The project checkout is the default workspace; tests make their own in a temp folder.
"""

from __future__ import annotations

import copy
import os
import sys
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from squeezeflow.compression.recipe import Recipe, find_recipe, load_recipe
from squeezeflow.config import FILE_DATASETS, FactorySource, Params, anchored, apply_overrides, load_params
from squeezeflow.io import read_json, read_yaml_cached, sha256_tree, write_text
from squeezeflow.stages import Stage, StageContext, stage_graph
from squeezeflow.targets import TargetProfile, load_targets
from squeezeflow.versioning.resolved import (
    ARTIFACTS,
    RESOLVED_PARAMS,
    RESOLVED_RECIPES,
    render_dvc_yaml,
    resolved_files,
)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHIPPED_RECIPES = PROJECT_ROOT / "recipes"


def default_root() -> Path:
    return Path(os.environ.get("SQUEEZEFLOW_ROOT", PROJECT_ROOT)).resolve()


class Workspace:
    def __init__(self, root: Path | str | None = None, recipe: str | None = None,
                 overrides: dict[str, Any] | None = None, files_root: Path | str | None = None):
        """`recipe`, `overrides`: a run's flags over params.yaml (`--recipe`, `--set`): the stage graph has the
        chain of its recipe and the points of its sweep. `files_root`: where relative paths in params.yaml point
        (the user's data, model code and checkpoint); default the workspace itself, for a worker's step workspace
        the run's (squeezeflow.fanout)."""
        self.root = Path(root).resolve() if root else default_root()
        self.files_root = Path(files_root).resolve() if files_root else self.root
        self._overrides = {**(overrides or {}), **({"compress.recipe": recipe} if recipe else {})}
        # the user's model factory and data loader import from the workspace's folder
        if str(self.files_root) not in sys.path:
            sys.path.insert(0, str(self.files_root))

    params_path = property(lambda self: self.root / "params.yaml")
    targets_dir = property(lambda self: self.root / "device_targets")
    artifacts_dir = property(lambda self: self.root / ARTIFACTS)
    state_dir = property(lambda self: self.root / ".squeezeflow")
    dvc_yaml_path = property(lambda self: self.root / "dvc.yaml")
    recipes_dir = property(lambda self: self.root / "recipes")

    def stage_dir(self, stage: str) -> Path:
        return self.artifacts_dir / stage

    def timings_path(self, stage: str) -> Path:
        return self.state_dir / "timings" / f"{stage}.json"

    def stage_timings(self, stage: str) -> dict | None:
        """Measurements kept out of the stage's DVC output (they differ run to run; the output must not), valid
        only for the output they were measured with."""
        path, out = self.timings_path(stage), self.stage_dir(stage)
        if not path.exists() or not out.is_dir():
            return None
        rec = read_json(path)
        return rec["values"] if rec.get("output_sha256") == sha256_tree(out) else None

    def stage_metrics(self, stage: str) -> dict:
        """The stage's metrics.json plus its timings, when they belong to this output."""
        return {**read_json(self.stage_dir(stage) / "metrics.json"), **(self.stage_timings(stage) or {})}

    def rel(self, path: Path) -> str:
        return Path(path).relative_to(self.root).as_posix()

    @cached_property
    def targets(self) -> dict[str, TargetProfile]:
        return load_targets(self.targets_dir)

    @cached_property
    def stages(self) -> dict[str, Stage]:
        p = self.graph_params
        return stage_graph(list(self.targets.values()), self.canonical_recipe(p.compress.recipe),
                           tuple(p.sweep.teacher_scales), tuple(self.canonical_recipe(r) for r in p.sweep.recipes),
                           teacher_x1=p.teacher.source.kind == "builtin")

    def canonical_recipe(self, ref: str) -> str:
        """A recipe's reference as its name when it is a path to the recipe that name finds (`--recipe
        recipes/small.yaml` is `small`), so one recipe given two ways is one chain."""
        path = Path(ref)
        if path.suffix not in (".yaml", ".yml") or not path.is_file():
            return ref
        try:
            found = find_recipe(path.stem, [self.recipes_dir, SHIPPED_RECIPES])
        except Exception:  # noqa: BLE001 - no recipe of that name: the path is its own
            return ref
        found = found if found.is_absolute() else self.root / found
        return path.stem if found.resolve() == path.resolve() else ref

    @cached_property
    def graph_params(self) -> Params:
        """What the stage graph expands over (the run's recipe, the sweep's sizes and recipes): params.yaml with the
        run's flags, read leniently (a broken params.yaml is reported by the run, not by building the graph)."""
        try:
            params = self.params()
        except Exception:  # noqa: BLE001
            params = Params()
        try:
            return apply_overrides(params, self._overrides) if self._overrides else params
        except Exception:  # noqa: BLE001
            return params

    def graph_for(self, params: Params) -> None:
        """The stage graph of these parameters from now on: its recipe chain and its sweep points."""
        if _axes(params) != _axes(self.graph_params):
            self.__dict__.update(graph_params=params)
            self.__dict__.pop("stages", None)

    def recipe_stage(self, base: str) -> str:
        """The run's recipe's stage of a per-recipe template: `compressed` -> `compressed-default`."""
        from squeezeflow.naming import stage_name

        return stage_name(base, self.run_key)

    @property
    def run_key(self) -> str:
        from squeezeflow.naming import recipe_key

        return recipe_key(self.run_recipe)

    @property
    def run_recipe(self) -> str:
        """The run's recipe reference."""
        return self.graph_params.compress.recipe

    def params(self) -> Params:
        """params.yaml as the user wrote it (never rewritten: flags apply to one run); relative file paths in it
        are relative to the workspace."""
        return anchored(load_params(self.params_path), self.files_root)

    def recorded_params(self) -> Params:
        """The parameters of the last prepared run (params.yaml + its flags): what `dvc repro` runs with."""
        path = self.root / RESOLVED_PARAMS
        return load_params(path) if path.exists() else self.params()

    def recipe(self, params: Params) -> Recipe:
        """The recipe params name: the workspace's recipes/ first, then the shipped ones."""
        name = params.compress.recipe
        path = find_recipe(name, [self.recipes_dir, SHIPPED_RECIPES])
        return load_recipe(path if path.is_absolute() else self.root / path)

    def recorded_recipes(self) -> dict:
        """The resolved recipes `prepare` recorded for DVC: stages run exactly what DVC compares."""
        path = self.root / RESOLVED_RECIPES
        if path.exists():
            return copy.deepcopy(read_yaml_cached(path))
        return self.resolved_recipes(self.params())

    def recipe_named(self, params: Params, name: str) -> Recipe:
        """Another recipe than params' own, found the same way."""
        return self.recipe(params.model_copy(update={"compress": params.compress.model_copy(update={"recipe": name})}))

    def resolved_recipes(self, params: Params) -> dict:
        """`run`: the run's recipe key; `recipes`: every recipe the stages compress with, by key (the run's and the
        targets' candidates); `sweep`: the sweep's, by name."""
        from squeezeflow.naming import recipe_key

        run = recipe_key(params.compress.recipe)
        recipes = {run: self.recipe(params).to_dict()}
        recipes |= {recipe_key(name): self._target_recipe(name, params) for name in self.candidate_recipes()
                    if recipe_key(name) != run}
        recipes |= {recipe_key(name): self.recipe_named(params, name).to_dict() for name in params.sweep.recipes
                    if recipe_key(name) not in recipes}
        return {"run": run, "recipes": recipes,
                "sweep": {name: self.recipe_named(params, name).to_dict() for name in params.sweep.recipes}}

    def candidate_recipes(self) -> list[str]:
        """Every recipe some target lists as a candidate, once each."""
        return sorted({r for t in self.targets.values() for r in t.recipes})

    def _target_recipe(self, name: str, params: Params) -> dict:
        """A target's candidate recipe, resolved like the run's; an unknown name names the target file."""
        from squeezeflow.errors import SqueezeflowInputError

        try:
            return self.recipe_named(params, name).to_dict()
        except SqueezeflowInputError as exc:
            if exc.field != "compress.recipe":
                raise
            owner = next(t for t in self.targets.values() if name in t.recipes)
            raise SqueezeflowInputError(self.targets_dir / f"{owner.name}.yaml", "recipes", name, exc.problem) \
                from None

    def validate(self, params: Params, targets: list[str] | None = None, source: str | None = None,
                 read_data: bool = False) -> list[str]:
        """Everything a run reads, checked before any work, the same for every entry point (CLI, launchpad,
        schedule, `dvc repro`): the dataset, every target profile and the chosen ones, the teacher's architecture,
        the recipes (main and sweep) and the sweep's target. `read_data`: also read and split a user's file.
        Raises SqueezeflowInputError (file, field, value); returns the chosen targets' names."""
        from squeezeflow.data import DATASETS
        from squeezeflow.errors import SqueezeflowInputError
        from squeezeflow.models import ARCHS
        from squeezeflow.targets import select_targets

        source = source or str(self.params_path)
        if params.dataset.name not in DATASETS:
            raise SqueezeflowInputError(source, "dataset.name", params.dataset.name,
                                        f"unknown dataset; known: {sorted(DATASETS)}")
        if params.teacher.arch != "auto" and params.teacher.arch not in ARCHS:
            raise SqueezeflowInputError(source, "teacher.arch", params.teacher.arch,
                                        f"unknown architecture; known: auto, {', '.join(sorted(ARCHS))}")
        chosen = [t.name for t in select_targets(self.targets, targets, "--target")]
        if params.sweep.target not in self.targets:
            raise SqueezeflowInputError(source, "sweep.target", params.sweep.target,
                                        f"no such device target; known: {sorted(self.targets)}")
        self.resolved_recipes(params)
        from squeezeflow.stages.base import run_recipes  # recipes whose stage names would collide

        run_recipes(self.canonical_recipe(params.compress.recipe), list(self.targets.values()),
                    tuple(self.canonical_recipe(r) for r in params.sweep.recipes))
        if params.teacher.source.kind == "onnx" and not Path(params.teacher.source.path).is_file():
            raise SqueezeflowInputError(source, "teacher.source.path", params.teacher.source.path, "no such file")
        if isinstance(params.teacher.source, FactorySource):
            from squeezeflow.models.user import check_factory

            check_factory(params.teacher.source, source)
            ckpt = params.teacher.source.checkpoint
            if ckpt and not Path(ckpt).is_file():
                raise SqueezeflowInputError(source, "teacher.source.checkpoint", ckpt, "no such file")
        if params.dataset.name in FILE_DATASETS and not Path(params.dataset.path).exists():
            raise SqueezeflowInputError(source, "dataset.path", params.dataset.path, "no such file or folder")
        users_data = params.dataset.name in FILE_DATASETS or params.dataset.name == "python"
        if read_data and (users_data or params.teacher.source.kind != "builtin"):
            model = self._check_data(params, source)
            if model is not None:  # each recipe's module selection, against the user's model
                for name in [params.compress.recipe, *self.candidate_recipes()]:
                    self.recipe_named(params, name).check_model(model)
        return chosen

    @staticmethod
    def _check_data(params: Params, source: str):
        """The user's data read and split, and the user's model run on two samples of it, before anything is
        created."""
        from squeezeflow.data import load_dataset, make_splits
        from squeezeflow.errors import SqueezeflowInputError

        data = load_dataset(params.dataset, source)
        make_splits(data, params.split, params.seed)
        if params.teacher.source.kind == "builtin" and np.issubdtype(data.x.dtype, np.integer):
            raise SqueezeflowInputError(source, "teacher.source.kind", "builtin", "the data's inputs are integers "
                                        f"({data.x.dtype}: token ids or indices): give a model that embeds them "
                                        "(teacher.source kind python), or store x as floats")
        if params.teacher.source.kind == "onnx":
            from squeezeflow.models.user import check_onnx_teacher

            return check_onnx_teacher(params.teacher.source, data.x[:2], data.num_classes, source)
        if params.teacher.source.kind != "builtin":
            from squeezeflow.models.user import check_user_model

            return check_user_model(params.teacher.source, data.x[:2], data.num_classes, source)
        return None

    def prepare(self, overrides: dict[str, Any] | None = None) -> Params:
        """Resolve params.yaml plus this run's overrides into .squeezeflow/params.yaml and regenerate dvc.yaml and
        the code versions, so DVC sees exactly what this run uses; params.yaml itself stays as the user wrote it.
        Writes only what changed."""
        params = apply_overrides(self.params(), overrides or {}) if overrides else self.params()
        self.validate(params)  # before anything is written or run
        self.graph_for(params)
        recipes = self.resolved_recipes(params)
        for rel, text in resolved_files(params, self.stages, self.targets, recipes).items():
            self._write_if_changed(self.root / rel, text)
        self._write_if_changed(self.dvc_yaml_path, render_dvc_yaml(self.stages))
        return params

    def context(self, name: str, params: Params, out: Path) -> StageContext:
        """What stage `name` gets to run: its parameters, its deps' outputs, recipes and targets; nothing else."""
        stage = self.stages[name]
        return StageContext(params, out, self._by_name(stage.deps), stage.target, self.targets,
                            self.recorded_recipes(), str(self.params_path), str(self.root / RESOLVED_RECIPES),
                            self.measured_dir(name), stage.recipe, stage.scale, self.state_dir / "cache")

    def check_inputs(self, name: str) -> dict[str, Path]:
        """What a stage's check reads: the output folders of the stage and its deps, by stage name and also by
        template name where that is unambiguous (a check is declared on the template: `exported`, `finetuned`)."""
        return self._by_name((name, *self.stages[name].deps))

    def _by_name(self, names: tuple[str, ...]) -> dict[str, Path]:
        """Output folders by stage name, and by template name where that is unambiguous: `teacher` is the
        teacher a stage reads, whether that is `teacher` or a sweep point's `teacher-x0_5`."""
        bases = [self.stages[n].base or n for n in names]
        out = {n: self.stage_dir(n) for n in names}
        return out | {b: self.stage_dir(n) for n, b in zip(names, bases, strict=True) if bases.count(b) == 1}

    def measured_dir(self, stage: str) -> Path:
        """A stage's measurement files (its plots): beside its timings, never in its DVC output."""
        return self.state_dir / "measured" / stage

    @staticmethod
    def _write_if_changed(path: Path, text: str) -> None:
        if not path.exists() or path.read_text() != text:
            write_text(path, text)


def _axes(params: Params) -> tuple:
    return params.compress.recipe, tuple(params.sweep.teacher_scales), tuple(params.sweep.recipes)
