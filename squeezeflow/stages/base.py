from __future__ import annotations

import hashlib
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from squeezeflow.config import Params
from squeezeflow.targets import TargetProfile

if TYPE_CHECKING:
    from squeezeflow.workspace import Workspace


@dataclass(frozen=True)
class StageContext:
    ws: "Workspace"
    params: Params
    out: Path  # a fresh directory; swapped into place only when the stage succeeds
    target: TargetProfile | None = None

    def input(self, stage: str) -> Path:
        return self.ws.stage_dir(stage)

    def recipe(self, which: str = "main"):
        """The recipe as recorded in .squeezeflow/recipes.yaml (what DVC tracks), not re-read from recipes/."""
        from squeezeflow.compression.recipe import parse_recipe
        from squeezeflow.workspace import RESOLVED_RECIPES

        return parse_recipe(self.ws.recorded_recipes()[which], self.ws.root / RESOLVED_RECIPES)


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[[StageContext], dict]  # writes into ctx.out, returns metrics (also saved as metrics.json)
    deps: tuple[str, ...] = ()  # upstream stage names
    params: tuple[str, ...] = ()  # params.yaml sections this stage reads
    target_params: tuple[str, ...] = ()  # sections of the target's YAML this stage reads
    recipe_params: tuple[str, ...] = ()  # sections of the resolved recipe this stage reads
    input_params: tuple[str, ...] = ()  # fingerprints of user files this stage reads (.squeezeflow/inputs.yaml)
    artifacts: tuple[str, ...] = ()  # files of its output logged to MLflow as artifacts
    code: tuple[str, ...] = ()  # modules whose source is this stage's code version
    timings: tuple[str, ...] = ()  # metrics that are wall-clock measurements: kept out of the DVC output
    needs_timings: bool = False  # rerun (not reuse) an output whose timings are lost: something reads them
    target: TargetProfile | None = None
    description: str = ""

    def code_version(self) -> str:
        h = hashlib.sha256()
        for mod in (self.run.__module__, *self.code):
            m = importlib.import_module(mod)
            files = sorted(Path(m.__file__).parent.rglob("*.py")) if m.__file__.endswith("__init__.py") else [Path(m.__file__)]
            for f in files:
                h.update(f.read_bytes())
        return h.hexdigest()[:16]


def stage_graph(targets: list[TargetProfile]) -> dict[str, Stage]:
    """All stages, the per-target ones expanded from the target profiles."""
    from squeezeflow.stages import build, compressed, dataset, exported, finetuned, sweep, teacher, validate

    stages = [dataset.STAGE, teacher.STAGE, compressed.STAGE, finetuned.STAGE, exported.STAGE, sweep.STAGE]
    for t in targets:
        stages += [build.stage_for(t), validate.stage_for(t)]
    return {s.name: s for s in stages}
