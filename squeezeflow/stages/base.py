"""What a stage is, and the one registry of them.

A stage declares itself once, in its own module (`register_stage(Stage(...))`): its deps, the parameters, code and
artifacts DVC and MLflow track, its Dagster asset (name, kinds, group, blocking check), and whether it is a
template run once per device target (`per_target`) or once per compression recipe (`per_recipe`: the run's recipe
and every candidate recipe a target lists). dvc.yaml, the Dagster assets and checks, the runner's selection, the
summary and lineage are all generated from this registry, so a new stage is one new module in this package.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from squeezeflow import codeversion
from squeezeflow.config import Params
from squeezeflow.naming import recipe_key, stage_name
from squeezeflow.targets import TargetProfile


@dataclass(frozen=True)
class Verdict:
    """The outcome of a blocking check, read by every orchestrator the same way."""

    passed: bool
    message: str
    metadata: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Check:
    """A blocking check on a stage's output: nothing downstream runs when it fails. `run(inputs, params)` gets
    the output folders of the stage and of its deps, by stage name."""

    name: str
    run: Callable[[Mapping[str, Path], Params], Verdict]
    description: str = ""
    tag: str = ""  # the MLflow tag on the pipeline run that records the verdict (lineage reads it)

    def code_version(self) -> str:
        return code_version((self.run.__module__,))


@dataclass(frozen=True)
class StageContext:
    """What a stage gets: its parameters, its deps' outputs, the resolved recipes and target profiles. Nothing
    else of the workspace: a stage reads only what it declares."""

    params: Params
    out: Path  # a fresh directory; swapped into place only when the stage succeeds
    inputs: Mapping[str, Path]  # declared deps -> their output folders
    target: TargetProfile | None = None
    targets: Mapping[str, TargetProfile] = field(default_factory=dict)
    recipes: Mapping[str, Any] = field(default_factory=dict)  # resolved recipes, as recorded for DVC
    params_source: str = "params.yaml"  # what a bad-parameter error names
    recipes_source: str = "recipes.yaml"
    measured: Path | None = None  # files that hold measurements (plots): outside the DVC output, refreshed per run
    recipe_key: str | None = None  # on a per-recipe stage: its recipe (a key of recipes["recipes"])
    scale: float | None = None  # on a sweep point: the teacher's size
    cache: Path | None = None  # the workspace's cache of what stages may share and recompute (teacher outputs)

    def input(self, stage: str) -> Path:
        if stage not in self.inputs:
            raise KeyError(f"stage input '{stage}' is not a declared dependency (declared: {sorted(self.inputs)})")
        return self.inputs[stage]

    def splits(self):
        """The dataset stage's splits; each one larger than machine.data_memory_mb is read from disk by rows."""
        from squeezeflow.data import Splits

        return Splits.load(self.input("dataset"), self.params.machine.data_memory_mb)

    def recipe_name(self, key: str) -> str:
        return self.recipes["recipes"][key]["name"]

    def target_recipes(self) -> dict[str, str]:
        """The recipes this per-target stage chooses among, key -> name: the target's candidates, else the run's."""
        keys = [recipe_key(r) for r in self.target.recipes] or [self.recipes["run"]]
        return {k: self.recipe_name(k) for k in keys}


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[[StageContext], dict]  # writes into ctx.out, returns metrics (also saved as metrics.json)
    deps: tuple[str, ...] = ()  # upstream stage names (a per-target stage names per-target deps by their base name)
    params: tuple[str, ...] = ()  # params.yaml sections this stage reads
    target_params: tuple[str, ...] = ()  # sections of the target's YAML this stage reads
    recipe_params: tuple[str, ...] = ()  # sections of its recipe this per-recipe stage reads ("steps")
    input_params: tuple[str, ...] = ()  # fingerprints of user files this stage reads (.squeezeflow/inputs.yaml)
    artifacts: tuple[str, ...] = ()  # files of its output logged to MLflow as artifacts (and .png shown in Dagster)
    code: tuple[str, ...] = ()  # modules whose source is this stage's code version
    timings: tuple[str, ...] = ()  # wall-clock (or memory) measurements kept out of the DVC output; "x_*": a prefix
    needs_timings: bool = False  # rerun (not reuse) an output whose timings are lost: something reads them
    measures: bool = False  # times models on its target's device: one such stage per device at a time (a pool)
    description: str = ""
    per_target: bool = False  # a template: one stage per device target, named stage_name(name, target)
    per_recipe: bool = False  # a template: one stage per recipe in the run, named stage_name(name, recipe key)
    per_scale: bool = False  # a template that also runs once per teacher size of the sweep (group "sweep")
    sweep_points: tuple[str, ...] = ()  # templates whose sweep points (every scale, every sweep recipe) it reads
    asset: str = ""  # the Dagster asset's name (under the target's key when per target); default: the name
    kinds: tuple[str, ...] = ()  # Dagster kinds shown on the asset
    group: str = "lifecycle"  # Dagster asset group; the main job runs group "lifecycle"
    check: Check | None = None  # a blocking check on the output
    report: Callable[[Path, dict], dict[str, str]] | None = None  # markdown for the UI: (output folder, metrics)
    logs_data: bool = False  # its output holds the train/val/test splits: logged as MLflow dataset inputs
    base: str = ""  # the template's name, on a per-target stage
    target: TargetProfile | None = None  # set on a per-target stage
    recipe: str | None = None  # the recipe key, set on a per-recipe stage
    scale: float | None = None  # the teacher's size, set on a sweep point (teacher-x0_5, compressed-small-x0_5)
    run_chain: bool = False  # set on the stages of the run's own recipe (its Dagster assets keep their plain names)

    def is_timing(self, metric: str) -> bool:
        return any(metric == t or (t.endswith("*") and metric.startswith(t[:-1])) for t in self.timings)

    @property
    def asset_name(self) -> str:
        return self.asset or (self.base or self.name)

    def expand(self, axes: Axes) -> list[Stage]:
        """This declaration as the stages of one run: itself, or one per target or per recipe; a per-recipe or
        per-scale template also once per point of the sweep (teacher size x sweep recipe), in group "sweep"."""
        if self.per_target:
            return [replace(self, name=stage_name(self.name, t.name), base=self.name, target=t,
                            deps=axes.deps(self.deps, target=t), description=f"{t.name} {self.description}".strip())
                    for t in axes.targets]
        if self.per_recipe:
            main = [self._for_recipe(axes, key, ref) for key, ref in axes.recipes.items()]
            return main + [self._for_recipe(axes, key, ref, scale) for scale in axes.scales
                           for key, ref in axes.sweep_recipes.items() if not axes.is_main(key, scale)]
        deps = axes.deps(self.deps) + axes.sweep_deps(self.sweep_points)
        scaled = [replace(self, name=axes.point(self.name, None, scale), base=self.name, scale=scale,
                          deps=axes.deps(self.deps, scale=scale), group="sweep",
                          description=f"{self.description} Sweep point: x{scale:g} of its size.")
                  for scale in axes.scales if not axes.is_main(None, scale)] if self.per_scale else []
        return [replace(self, deps=deps), *scaled]

    def _for_recipe(self, axes: Axes, key: str, ref: str, scale: float | None = None) -> Stage:
        where = f"Recipe {ref}" + ("" if scale is None else f", on the sweep's teacher at x{scale:g}")
        return replace(self, name=axes.point(self.name, key, scale), base=self.name, recipe=key, scale=scale,
                       run_chain=key == axes.run and scale is None,
                       deps=axes.deps(self.deps, recipe=key, scale=scale), group="sweep" if scale else self.group,
                       recipe_params=tuple(f"recipes.{key}.{p}" for p in self.recipe_params),
                       description=f"{self.description} {where}.".strip())

    def code_version(self) -> str:
        return code_version((self.run.__module__, *self.code))


def code_version(modules: tuple[str, ...]) -> str:
    """A hash of the source of the modules and of every project module they import, read statically (a package
    named here: every module in it); editing a module they never import leaves it as it is. See
    squeezeflow.codeversion."""
    return codeversion.code_version(modules)


STAGES: dict[str, Stage] = {}


def register_stage(stage: Stage) -> Stage:
    if stage.name in STAGES and STAGES[stage.name].run is not stage.run:
        raise ValueError(f"stage '{stage.name}' is registered twice")
    STAGES[stage.name] = stage
    return stage


def _ordered(stages: list[Stage]) -> list[Stage]:
    """Dependencies first; otherwise in registration order (stable)."""
    done: dict[str, Stage] = {}
    names = {s.name for s in stages}
    pending = list(stages)
    while pending:
        ready = [s for s in pending if all(d in done or d not in names for d in s.deps)]
        if not ready:
            raise ValueError(f"stage dependency cycle among {[s.name for s in pending]}")
        for s in ready:
            done[s.name] = s
        pending = [s for s in pending if s.name not in done]
    return list(done.values())


def scale_tag(scale: float) -> str:
    """A teacher size as a stage-name suffix: 0.25 -> `x0_25` (stage names carry no dots)."""
    return f"x{scale:g}".replace(".", "_")


@dataclass(frozen=True)
class Axes:
    """What the templates expand over in one run: the device targets, the recipes (key -> reference) with the
    run's own first, and the sweep's points (teacher sizes x its recipes)."""

    targets: list[TargetProfile]
    recipes: dict[str, str]
    run: str  # the run's recipe key
    scales: tuple[float, ...] = ()
    sweep_recipes: dict[str, str] = field(default_factory=dict)
    teacher_x1: bool = True  # the main teacher is the sweep's point at x1

    def deps(self, deps: tuple[str, ...], target: TargetProfile | None = None, recipe: str | None = None,
             scale: float | None = None):
        """Template deps resolved for one stage: a per-target dep is its own target's; a per-recipe dep is its own
        recipe's, on a per-target stage each recipe its target chooses among (else the run's recipe); on a sweep
        point, the point's own (its teacher at its size)."""
        out: list[str] = []
        for d in deps:
            template = STAGES.get(d)
            if template is not None and template.per_target:
                out.append(stage_name(d, target.name))
            elif template is not None and template.per_recipe:
                keys = [recipe] if recipe else [recipe_key(r) for r in target.recipes] if target else []
                out += [self.point(d, k, scale) for k in (keys or [self.run])]
            elif template is not None and template.per_scale:
                out.append(self.point(d, None, scale))
            else:
                out.append(d)
        return tuple(out)

    def is_main(self, recipe: str | None, scale: float | None) -> bool:
        """A sweep point the main line already makes: the teacher at its own size, a run recipe on it."""
        main = scale is None or (scale == 1.0 and self.teacher_x1)
        return main and (recipe is None or recipe in self.recipes)

    def point(self, template: str, recipe: str | None, scale: float | None) -> str:
        """The stage of a template at a recipe and a teacher size: `compressed-small-x0_5`, `teacher-x0_5`; the
        main line's own stage where it is the same work (`teacher` for x1, `compressed-small` for small at x1)."""
        name = stage_name(template, recipe)
        return name if self.is_main(recipe, scale) else f"{name}-{scale_tag(scale)}"

    def sweep_deps(self, templates: tuple[str, ...]) -> tuple[str, ...]:
        """Every sweep point of these templates: each teacher size, and each sweep recipe at each size."""
        keys = {d: list(self.sweep_recipes) if STAGES[d].per_recipe else [None] for d in templates}
        return tuple(dict.fromkeys(self.point(d, k, s) for d in templates for s in self.scales for k in keys[d]))


def run_recipes(run_recipe: str, targets: list[TargetProfile],
                sweep_recipes: tuple[str, ...] = ()) -> tuple[dict[str, str], str, dict[str, str]]:
    """The recipes one run compresses with, key -> reference: the run's own, then each candidate a target lists;
    and the sweep's. Two references with one key (two files both named fast.yaml), or keys that would make two
    stages or assets of one name, are an error naming where the second one was given."""
    run = recipe_key(run_recipe)
    recipes: dict[str, str] = {}
    given = [(run_recipe, "params.yaml", "compress.recipe")]
    given += [(ref, f"device_targets/{t.name}.yaml", "recipes") for t in targets for ref in t.recipes]
    for ref, source, field_name in given:
        _add(recipes, ref, source, field_name)
    sweep: dict[str, str] = {}
    for ref in sweep_recipes:
        if recipes.get(recipe_key(ref), ref) != ref:
            raise _collision(ref, recipes[recipe_key(ref)], "params.yaml", "sweep.recipes")
        _add(sweep, ref, "params.yaml", "sweep.recipes")
    return recipes, run, sweep


def _add(recipes: dict[str, str], ref: str, source: str, field_name: str) -> None:
    from squeezeflow.errors import SqueezeflowInputError

    key = recipe_key(ref)
    if re.search(r"-x\d+(_\d+)?$", key):
        raise SqueezeflowInputError(source, field_name, ref, "a recipe whose name ends in -x<number> would name its "
                                    "stages like the sweep's points (compressed-<recipe>-x0_5): rename its file")
    same_asset = [k for k in recipes if k != key and k.replace("-", "_") == key.replace("-", "_")]
    if recipes.setdefault(key, ref) != ref or same_asset:
        raise _collision(ref, recipes[same_asset[0]] if same_asset else recipes[key], source, field_name)


def _collision(ref: str, other: str, source: str, field_name: str):
    from squeezeflow.errors import SqueezeflowInputError

    return SqueezeflowInputError(source, field_name, ref, f"its stages would be named like those of recipe {other!r} "
                                 f"({recipe_key(other)}): rename one of the files")


def stage_graph(targets: list[TargetProfile], run_recipe: str = "default", scales: tuple[float, ...] = (),
                sweep_recipes: tuple[str, ...] = (), teacher_x1: bool = True) -> dict[str, Stage]:
    """All stages in dependency order, the templates expanded over the targets, the run's recipes and the sweep's
    points (teacher sizes x sweep recipes). `teacher_x1`: the main teacher is the sweep's x1 point (a built-in
    architecture; a user's model is not the sweep's built-in one at x1)."""
    # every stage module has registered itself: importing this module runs squeezeflow/stages/__init__.py, which
    # imports them all (importing that package here again would only be an import cycle)
    recipes, run, sweep = run_recipes(run_recipe, targets, tuple(sweep_recipes))
    axes = Axes(targets, recipes, run, tuple(scales), sweep, teacher_x1)
    stages = _ordered([s for template in STAGES.values() for s in template.expand(axes)])
    unknown = {d for s in stages for d in s.deps} - {s.name for s in stages}
    if unknown:
        raise ValueError(f"stages depend on unregistered stages: {sorted(unknown)}")
    return {s.name: s for s in stages}
