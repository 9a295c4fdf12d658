"""The lifecycle as callable steps: run-or-reuse a stage (DVC decides), check data, gate, promote.

Orchestrators call these; this module knows nothing about Dagster.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from squeezeflow.data import Splits
from squeezeflow.data.checks import DataCheckReport, DataCheckSpec, check_splits
from squeezeflow.data.splits import expected_sizes
from squeezeflow.gates import GateVerdict, evaluate_gate
from squeezeflow.io import atomic_dir, read_json, write_json
from squeezeflow.stages import StageContext
from squeezeflow.tracking import Promotion, Tracker, promote
from squeezeflow.versioning import DvcStore
from squeezeflow.workspace import Workspace

METRICS = "metrics.json"


@dataclass(frozen=True)
class StageOutcome:
    stage: str
    path: Path
    metrics: dict
    reused: bool
    md5: str | None
    seconds: float
    mlflow_run_id: str | None = None

    def to_dict(self) -> dict:
        return {**asdict(self), "path": str(self.path)}


def git_commit(root: Path) -> str:
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def default_tracking_uri(ws: Workspace) -> str:
    import os

    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{ws.state_dir / 'mlflow.db'}"


def run_stage_locally(ws: Workspace, name: str, params) -> dict:
    """Run one stage into a temp folder and swap it into place; returns its metrics."""
    stage = ws.stages[name]
    with atomic_dir(ws.stage_dir(name)) as out:
        metrics = stage.run(StageContext(ws, params, out, stage.target))
        write_json(out / METRICS, metrics)
    return metrics


class Lifecycle:
    def __init__(self, ws: Workspace, overrides: dict[str, Any] | None = None, tracking_uri: str | None = None,
                 push: bool = True):
        self.ws, self.overrides, self.push = ws, overrides or {}, push
        self._tracking_uri = tracking_uri

    @cached_property
    def params(self):
        self.ws.state_dir.mkdir(parents=True, exist_ok=True)
        return self.ws.prepare(self.overrides)

    @cached_property
    def dvc(self) -> DvcStore:
        store = DvcStore(self.ws.root, self.ws.state_dir)
        store.ensure()
        return store

    @cached_property
    def tracker(self) -> Tracker:
        return Tracker(self._tracking_uri or default_tracking_uri(self.ws), artifact_location=self.ws.state_dir / "mlartifacts")

    # --- lineage -------------------------------------------------------------------------------------------
    def lineage_tags(self, run_key: str) -> dict[str, str]:
        tags = {"squeezeflow.dagster_run_id": run_key, "mlflow.source.git.commit": git_commit(self.ws.root)}
        tags.update({f"squeezeflow.dvc.{stage}": md5 for stage, md5 in self.dvc.hashes().items() if stage in self.ws.stages})
        return tags

    def parent_run(self, run_key: str) -> str:
        return self.tracker.parent_run(run_key, self.params.model_dump(mode="json"), self.lineage_tags(run_key))

    # --- stages --------------------------------------------------------------------------------------------
    def run_stage(self, name: str, run_key: str) -> StageOutcome:
        params, stage = self.params, self.ws.stages[name]
        t0 = time.perf_counter()
        out = self.ws.stage_dir(name)
        reused = (out / METRICS).exists() and self.dvc.up_to_date(name)
        parent = self.parent_run(run_key)
        try:
            if reused:
                metrics = read_json(out / METRICS)
            else:
                metrics = run_stage_locally(self.ws, name, params)
                self.dvc.commit(name)
                if self.push:
                    self.dvc.push(name)
        except Exception as exc:
            failed = self.tracker.stage_run(parent, run_key, name, {}, {"squeezeflow.error": str(exc)[:5000]})
            self.tracker.end(failed, failed=True)
            self.tracker.end(parent, failed=True)
            raise
        md5 = self.dvc.hashes().get(name)
        sections = {k: params.model_dump(mode="json")[k] for k in stage.params}
        if stage.target:
            sections["target"] = stage.target.model_dump(mode="json")
        if stage.recipe_params:
            resolved = self.ws.recorded_recipes()
            for dotted in stage.recipe_params:
                node = resolved
                for part in dotted.split("."):
                    node = node[part]
                sections[f"recipe.{dotted}"] = node
        tags = {"squeezeflow.reused": str(reused).lower(), f"squeezeflow.dvc.{name}": md5 or "",
                **{f"squeezeflow.dvc.{d}": self.dvc.hashes().get(d, "") for d in stage.deps}}
        child = self.tracker.stage_run(parent, run_key, name, metrics, tags, sections)
        if name == "dataset":
            self._log_dataset_input(parent, child, metrics)
        for artifact in stage.artifacts:
            if (out / artifact).exists():
                self.tracker.client.log_artifact(child, str(out / artifact))
        self.tracker.end(child)
        self.tracker.set_tags(parent, self.lineage_tags(run_key))
        self.tracker.end(parent)
        return StageOutcome(name, out, metrics, reused, md5, time.perf_counter() - t0, child)

    def _log_dataset_input(self, parent: str, child: str, meta: dict) -> None:
        splits = Splits.load(self.ws.stage_dir("dataset"))
        for run_id in (parent, child):
            for split in ("train", "val", "test"):
                self.tracker.log_dataset(run_id, f"{meta['name']}-{split}", meta["source"], splits.x[split],
                                         splits.y[split], context=split)

    # --- checks, gate, promotion ---------------------------------------------------------------------------
    def check_data(self) -> DataCheckReport:
        """Great Expectations on the splits. The verdict is kept per (data hash, split params, check code): an
        unchanged dataset is not re-validated, which spares the warm re-run GX's import and run."""
        from squeezeflow.stages.base import Stage
        from squeezeflow.data import checks

        md5 = self.dvc.hashes().get("dataset")
        key = Stage("data-check", check_splits).code_version() + f"-{md5}-{self.params.split.val}-{self.params.split.test}"
        cached = self.ws.state_dir / "data-checks" / f"{key}.json"
        if md5 and self.dvc.up_to_date("dataset") and cached.exists():
            return checks.DataCheckReport(**read_json(cached))
        report = self._check_data()
        write_json(cached, asdict(report))
        return report

    def _check_data(self) -> DataCheckReport:
        meta = read_json(self.ws.stage_dir("dataset") / METRICS)
        spec = DataCheckSpec(
            source=meta["source"],
            num_classes=meta["num_classes"],
            input_shape=tuple(meta["input_shape"]),
            value_range=tuple(meta["value_range"]) if meta.get("value_range") else None,
            split_sizes=expected_sizes(meta["samples"], self.params.split),
        )
        return check_splits(Splits.load(self.ws.stage_dir("dataset")), spec)

    def check_parity(self) -> tuple[dict, float]:
        """ONNX Runtime vs torch on the val split, recomputed from the files on disk."""
        from squeezeflow.export import parity
        from squeezeflow.models import load_checkpoint

        model, _ = load_checkpoint(self.ws.stage_dir("finetuned") / "model.pt")
        val = Splits.load(self.ws.stage_dir("dataset")).x["val"]
        return parity(model, self.ws.stage_dir("exported") / "model.onnx", val), self.params.export.parity_atol

    def gate(self, target: str) -> GateVerdict:
        """Fails closed: missing or unreadable metrics give a failing verdict, never an exception."""
        budgets = self.ws.targets[target].budgets
        try:
            metrics = read_json(self.ws.stage_dir(f"validate-{target}") / METRICS)
            teacher = read_json(self.ws.stage_dir("teacher") / METRICS)["test_accuracy"]
        except (OSError, ValueError, KeyError) as exc:
            return evaluate_gate({"error": str(exc)}, float("nan"), budgets)
        return evaluate_gate(metrics, teacher, budgets)

    def model_name(self, target: str) -> str:
        return f"{self.params.registry.model_prefix}-{self.params.dataset.name}-{target}"

    def promote(self, target: str, run_key: str) -> Promotion:
        verdict = self.gate(target)
        if not verdict.passed:
            raise RuntimeError(f"gate failed for {target}: " + "; ".join(verdict.reasons()) + " (not promoted)")
        build = self.ws.stage_dir(f"build-{target}") / "model.onnx"
        example = Splits.load(self.ws.stage_dir("dataset")).x["val"][:5]
        parent = self.parent_run(run_key)
        tags = {**self.lineage_tags(run_key), "squeezeflow.target": target, "squeezeflow.gate": "passed"}
        child = self.tracker.stage_run(parent, run_key, f"promote-{target}", {}, tags)
        try:
            result = promote(self.tracker, child, self.model_name(target), build, example, tags)
        except Exception:
            self.tracker.end(child, failed=True)
            raise
        self.tracker.set_tags(child, {"squeezeflow.model_uri": result.model_uri})
        self.tracker.end(child)
        return result
