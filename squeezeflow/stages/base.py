"""What a stage is, and the one registry of them.

A stage declares itself once, in its own module (`register_stage(Stage(...))`): its deps, the parameters, code and
artifacts DVC and MLflow track, its Dagster asset (name, kinds, group, blocking check), and whether it runs once
per device target. dvc.yaml, the Dagster assets and checks, the runner's selection and the summary are all
generated from this registry, so a new stage is one new module in this package.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from squeezeflow.config import Params
from squeezeflow.naming import stage_name
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

    def input(self, stage: str) -> Path:
        if stage not in self.inputs:
            raise KeyError(f"stage input '{stage}' is not a declared dependency (declared: {sorted(self.inputs)})")
        return self.inputs[stage]

    def splits(self):
        """The dataset stage's splits; each one larger than machine.data_memory_mb is read from disk by rows."""
        from squeezeflow.data import Splits

        return Splits.load(self.input("dataset"), self.params.machine.data_memory_mb)

    def recipe(self, which: str = "main"):
        """The recipe as recorded in .squeezeflow/recipes.yaml (what DVC tracks), not re-read from recipes/."""
        from squeezeflow.compression.recipe import parse_recipe

        return parse_recipe(self.recipes[which], self.recipes_source)


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[[StageContext], dict]  # writes into ctx.out, returns metrics (also saved as metrics.json)
    deps: tuple[str, ...] = ()  # upstream stage names (a per-target stage names per-target deps by their base name)
    params: tuple[str, ...] = ()  # params.yaml sections this stage reads
    target_params: tuple[str, ...] = ()  # sections of the target's YAML this stage reads
    recipe_params: tuple[str, ...] = ()  # sections of the resolved recipe this stage reads
    input_params: tuple[str, ...] = ()  # fingerprints of user files this stage reads (.squeezeflow/inputs.yaml)
    artifacts: tuple[str, ...] = ()  # files of its output logged to MLflow as artifacts (and .png shown in Dagster)
    code: tuple[str, ...] = ()  # modules whose source is this stage's code version
    timings: tuple[str, ...] = ()  # wall-clock (or memory) measurements kept out of the DVC output; "x_*": a prefix
    needs_timings: bool = False  # rerun (not reuse) an output whose timings are lost: something reads them
    description: str = ""
    per_target: bool = False  # a template: one stage per device target, named stage_name(name, target)
    asset: str = ""  # the Dagster asset's name (under the target's key when per target); default: the name
    kinds: tuple[str, ...] = ()  # Dagster kinds shown on the asset
    group: str = "lifecycle"  # Dagster asset group; the main job runs group "lifecycle"
    check: Check | None = None  # a blocking check on the output
    report: Callable[[Path, dict], dict[str, str]] | None = None  # markdown for the UI: (output folder, metrics)
    logs_data: bool = False  # its output holds the train/val/test splits: logged as MLflow dataset inputs
    base: str = ""  # the template's name, on a per-target stage
    target: TargetProfile | None = None  # set on a per-target stage

    def is_timing(self, metric: str) -> bool:
        return any(metric == t or (t.endswith("*") and metric.startswith(t[:-1])) for t in self.timings)

    @property
    def asset_name(self) -> str:
        return self.asset or (self.base or self.name)

    def for_target(self, target: TargetProfile, per_target: set[str]) -> Stage:
        deps = tuple(stage_name(d, target.name) if d in per_target else d for d in self.deps)
        return replace(self, name=stage_name(self.name, target.name), deps=deps, base=self.name, target=target,
                       description=f"{target.name} {self.description}".strip())

    def code_version(self) -> str:
        return code_version((self.run.__module__, *self.code))


def code_version(modules: tuple[str, ...]) -> str:
    """A hash of the modules' source (a package: every .py file in it)."""
    h = hashlib.sha256()
    for mod in modules:
        m = importlib.import_module(mod)
        files = (sorted(Path(m.__file__).parent.rglob("*.py")) if m.__file__.endswith("__init__.py")
                 else [Path(m.__file__)])
        for f in files:
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


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


def stage_graph(targets: list[TargetProfile]) -> dict[str, Stage]:
    """All stages in dependency order, the per-target ones expanded from the target profiles."""
    import squeezeflow.stages  # noqa: F401  (imports every stage module: each registers itself)

    per_target = {s.name for s in STAGES.values() if s.per_target}
    stages = [s for s in STAGES.values() if not s.per_target]
    for t in targets:
        stages += [s.for_target(t, per_target) for s in STAGES.values() if s.per_target]
    stages = _ordered(stages)
    unknown = {d for s in stages for d in s.deps} - {s.name for s in stages}
    if unknown:
        raise ValueError(f"stages depend on unregistered stages: {sorted(unknown)}")
    return {s.name: s for s in stages}
