"""The lifecycle as callable steps: run-or-reuse a stage (DVC decides), check data, gate, promote.

Orchestrators call these; this module knows nothing about Dagster.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from squeezeflow import faults
from squeezeflow.config import FILE_DATASETS
from squeezeflow.data import Splits
from squeezeflow.errors import SqueezeflowInputError, TransientError
from squeezeflow.gates import GateVerdict, evaluate_gate, failed_reasons
from squeezeflow.io import atomic_dir, read_json, sha256_file, sha256_tree, write_json, write_text
from squeezeflow.runtimes.engines import companion_files, engine_config
from squeezeflow.runtimes.measure import mlflow_session_options
from squeezeflow.stages import Verdict, stage_name
from squeezeflow.stats import resolution_warning
from squeezeflow.tracking import Tracker
from squeezeflow.tracking.promotion import RELEASE_TAG
from squeezeflow.tracking.schema import CHAIN_TAG
from squeezeflow.versioning import DvcStore
from squeezeflow.versioning.resolved import RESOLVED_INPUTS
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


@dataclass(frozen=True)
class Candidate:
    """A target's build as a model version: gated and registered in this run (`new`), or registered before."""

    model_name: str
    version: str
    new: bool
    passed: bool
    report_uri: str
    report_md: str
    reasons: list[str]
    checks: list[dict] = field(default_factory=list)
    unavailable: str = ""  # the target's runtime cannot run here (why): gated as failed, nothing registered


@dataclass(frozen=True)
class Promotion:
    model_name: str
    version: str
    model_uri: str
    alias: str  # champion | challenger | "" (left as it was)
    new_version: bool  # this run's promotion step released it (its first)
    previous_champion: str | None
    note: str = ""  # what the step did: e.g. why a passing version waits as challenger


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
    shutil.rmtree(ws.measured_dir(name), ignore_errors=True)
    ws.measured_dir(name).mkdir(parents=True)
    with atomic_dir(ws.stage_dir(name)) as out:
        metrics = stage.run(ws.context(name, params, out))
        # Timings vary run to run: outside the output, so identical inputs give identical DVC hashes.
        write_json(out / METRICS, {k: v for k, v in metrics.items() if not stage.is_timing(k)})
        timings = {k: v for k, v in metrics.items() if stage.is_timing(k)}
        if timings:
            write_json(ws.timings_path(name), {"output_sha256": sha256_tree(out), "values": timings})
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

    # --- one run per workspace ------------------------------------------------------------------------------
    def hold(self, command: str, wait: bool = True, say=print):
        """The workspace lock (squeezeflow.runlock): every entry point that runs stages takes it."""
        from squeezeflow.runlock import workspace_lock

        return workspace_lock(self.ws.state_dir / "locks", command, wait=wait, say=say)

    def recover(self, held) -> list[str]:
        """Once the workspace is held: clean up after a run that was killed while it held it. Its temp folders
        go; its MLflow runs are marked FAILED; what it left pending in the registry is finished or abandoned
        (recover_registry; also after a run that failed without being killed). Returns what was done."""
        from squeezeflow.runlock import describe, remove_temp_files

        if held.recovered:
            return []
        held.recovered = True
        notes = []
        removed = remove_temp_files(self.ws.root, self.ws.artifacts_dir, self.ws.state_dir)
        if removed:
            notes.append(f"removed {len(removed)} half-written temp path(s): {', '.join(removed[:6])}")
        crashed = held.crashed or {}
        if crashed.get("dagster_run_id"):
            why = f"killed while running ({describe(crashed)}); marked FAILED by the next run"
            failed = self.tracker.fail_runs_of(crashed["dagster_run_id"], why)
            notes.append(f"{describe(crashed)} was killed: marked {len(failed)} of its MLflow run(s) FAILED")
        elif held.crashed is not None:
            notes.append(f"{describe(crashed)} was killed before it started a pipeline run")
        try:
            self.ws.targets, self.params  # noqa: B018 - unreadable targets or params: the run's steps report them
        except Exception:  # noqa: BLE001
            return notes
        return notes + self.recover_registry()

    @cached_property
    def dvc(self) -> DvcStore:
        store = DvcStore(self.ws.root, self.ws.state_dir)
        store.ensure()
        return store

    @cached_property
    def tracker(self) -> Tracker:
        self.ws.state_dir.mkdir(parents=True, exist_ok=True)
        return Tracker(self._tracking_uri or default_tracking_uri(self.ws),
                       artifact_location=self.ws.state_dir / "mlartifacts")

    @cached_property
    def notifier(self):
        """Webhook messages per run, target and event (params.yaml `notify`); with params that do not load (the
        failure being reported may be that), the environment's webhook and the defaults."""
        from squeezeflow.config import NotifyParams
        from squeezeflow.notify import Notifier

        try:
            config = self.params.notify
        except Exception:  # noqa: BLE001 - a broken params.yaml must still be reported
            config = NotifyParams()
        return Notifier(config, self.ws.state_dir / "notifications", str(self.ws.root))

    # --- lineage -------------------------------------------------------------------------------------------
    def lineage_tags(self, run_key: str, target: str | None = None) -> dict[str, str]:
        """Dagster run, git commit and the DVC hash of every stage output (for a target: only its own chain's)."""
        def relevant(stage: str) -> bool:
            return target is None or stage in chain

        chain = set(self.chain(target)) if target else set()

        tags = {"squeezeflow.dagster_run_id": run_key, "mlflow.source.git.commit": git_commit(self.ws.root)}
        tags.update({f"squeezeflow.dvc.{stage}": md5 for stage, md5 in self.dvc.hashes().items()
                     if stage in self.ws.stages and relevant(stage)})
        return tags

    def chain(self, target: str) -> list[str]:
        """The stages that made the target's deployed file, in order: the shared ones, the chain of the recipe its
        select stage chose, and its own."""
        chosen = self.ws.stage_dir(stage_name("select", target)) / "selection.json"
        key = (read_json(chosen).get("recipe_key") if chosen.exists() else None) or self.ws.run_key
        return [name for name, s in self.ws.stages.items() if s.group == "lifecycle"
                and (s.target.name == target if s.target else s.recipe == key if s.recipe else True)]

    def parent_run(self, run_key: str) -> str:
        return self.tracker.parent_run(run_key, self.params.model_dump(mode="json"), self.lineage_tags(run_key))

    # --- stages --------------------------------------------------------------------------------------------
    def run_stage(self, name: str, run_key: str) -> StageOutcome:
        params = self.params
        if name not in self.ws.stages:  # an asset graph loaded for another recipe than this run's
            raise SqueezeflowInputError("run config", "compress.recipe", params.compress.recipe,
                                        f"this run's stages are {sorted(self.ws.stages)}, not {name}: the asset graph "
                                        f"was loaded for another recipe; set compress.recipe in params.yaml and "
                                        "reload the code location, or run `squeezeflow run --recipe ...`")
        stage = self.ws.stages[name]
        t0 = time.perf_counter()
        out = self.ws.stage_dir(name)
        reused = ((out / METRICS).exists() and self.dvc.up_to_date(name)
                  and (not stage.needs_timings or self.ws.stage_timings(name) is not None))
        parent = self.parent_run(run_key)
        try:
            if reused:
                metrics = self.ws.stage_metrics(name)
            else:
                metrics = run_stage_locally(self.ws, name, params)
                self.dvc.commit(name)
                faults.point("dvc-committed", name)
            if self.push:  # reused too: what an earlier run committed may never have reached the remote
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
        if stage.input_params:  # the user's files by content hash: the model's factory file, its checkpoint
            recorded = yaml.safe_load((self.ws.root / RESOLVED_INPUTS).read_text()) or {}
            sections |= {f"inputs.{key}": recorded.get(key) for key in stage.input_params}
        tags = {"squeezeflow.reused": str(reused).lower(), f"squeezeflow.dvc.{name}": md5 or "",
                **{f"squeezeflow.dvc.{d}": self.dvc.hashes().get(d, "") for d in stage.deps}}
        child = self.tracker.stage_run(parent, run_key, name, metrics, tags, sections)
        if stage.logs_data:
            self._log_dataset_input(parent, child, out, metrics)
        for artifact in stage.artifacts:
            for where in (out, self.ws.measured_dir(name)):
                if (where / artifact).exists():
                    self.tracker.client.log_artifact(child, str(where / artifact))
                    break
        self.tracker.end(child)
        self.tracker.set_tags(parent, self.lineage_tags(run_key))
        self.tracker.end(parent)
        return StageOutcome(name, out, metrics, reused, md5, time.perf_counter() - t0, child)

    def _log_dataset_input(self, parent: str, child: str, out: Path, meta: dict) -> None:
        splits = Splits.load(out, self.params.machine.data_memory_mb)
        for run_id in (parent, child):
            for split in ("train", "val", "test"):
                self.tracker.log_dataset(run_id, f"{meta['name']}-{split}", meta["source"], splits.x[split],
                                         splits.y[split], context=split)

    # --- checks, gate, promotion ---------------------------------------------------------------------------
    def run_check(self, stage: str, run_key: str | None = None) -> Verdict:
        """The stage's blocking check, on the files on disk. Its verdict is kept per (check code, DVC hashes of the
        stage and its deps, the stage's params): unchanged data is not re-validated, which spares the warm re-run
        GX's import and run. A check that declares a tag records its verdict on the pipeline's MLflow run."""
        st = self.ws.stages[stage]
        check = st.check
        hashes = self.dvc.hashes()
        key_parts = [check.code_version(), *(hashes.get(d, "") for d in (stage, *st.deps)),
                     json.dumps(self.params.model_dump(mode="json"), sort_keys=True)]
        key = hashlib.sha256("|".join(key_parts).encode()).hexdigest()[:24]
        cached = self.ws.state_dir / "checks" / f"{check.name}-{key}.json"
        if all(hashes.get(d) for d in (stage, *st.deps)) and self.dvc.up_to_date(stage) and cached.exists():
            verdict = Verdict(**read_json(cached))
        else:
            verdict = check.run(self.ws.check_inputs(stage), self.params)
            write_json(cached, asdict(verdict))
        if run_key and check.tag:
            shown = verdict.metadata.get("tag_value") or ("passed" if verdict.passed else f"failed: {verdict.message}")
            tags = {check.tag: str(shown)[:5000]}
            if verdict.metadata.get("engine"):
                tags[f"{check.tag}.engine"] = str(verdict.metadata["engine"])
            self.tracker.set_tags(self.parent_run(run_key), tags)
        return verdict

    def gate(self, target: str) -> GateVerdict:
        """The absolute budgets and the majority-class baseline. Fails closed: missing or unreadable metrics or
        splits give a failing verdict."""
        from squeezeflow.gates.gate import majority_baseline

        budgets = self.ws.targets[target].budgets
        try:
            metrics = self.ws.stage_metrics(stage_name("validate", target))
            teacher = read_json(self.ws.stage_dir("teacher") / METRICS)["test_accuracy"]
            splits = Splits.load(self.ws.stage_dir("dataset"), self.params.machine.data_memory_mb)
            baseline = majority_baseline(splits.y["train"], splits.y["test"])
        except (OSError, ValueError, KeyError) as exc:
            return evaluate_gate({"error": str(exc)}, float("nan"), budgets)
        return evaluate_gate(metrics, teacher, budgets, baseline)

    def model_name(self, target: str) -> str:
        """`<prefix>-<registry.model_name>-<target>`; the model name defaults to the dataset's (the .npz file's stem),
        so two datasets never share a champion."""
        reg, ds = self.params.registry, self.params.dataset
        name = reg.model_name or (Path(ds.path).stem if ds.name in FILE_DATASETS and ds.path else
                                  ds.factory.partition(":")[0] if ds.factory else ds.name)
        return f"{reg.model_prefix}-{safe_name(name)}-{target}"

    @property
    def registry_lock(self) -> Path:
        return self.ws.state_dir / "locks" / "registry.lock"

    def _run_dir(self, run_key: str, target: str) -> Path:
        return run_dir(self.ws, run_key, target)

    # --- candidate: gate against budgets and champion, registered with its verdict -------------------------
    def evaluate_candidate(self, target: str, run_key: str) -> Candidate:
        """Gate the target's build (absolute budgets, then side by side against the champion), write the report,
        and register the build as a model version carrying its verdict. A file already registered is not gated or
        registered again: its recorded verdict stands."""
        from squeezeflow.tracking import registry

        build = self.ws.stage_dir(stage_name("build", target)) / "model.onnx"
        name, sha = self.model_name(target), sha256_file(build)
        reason = self.ws.stage_metrics(stage_name("validate", target)).get("unavailable")
        if reason:
            cand = self._unavailable(target, run_key, name, build, sha, reason)
            write_json(self._run_dir(run_key, target) / "candidate.json", asdict(cand))
            return cand
        existing = registry.version_with_sha(self.tracker, name, sha)
        if existing is not None:
            cand = Candidate(name, str(existing.version), False, existing.tags.get(registry.GATE_TAG) == "passed",
                             existing.tags.get("squeezeflow.gate_report", ""), "", [])
        else:
            cand = self._gate_and_register(target, run_key, name, build, sha)
        write_json(self._run_dir(run_key, target) / "candidate.json", asdict(cand))
        return cand

    def selection(self, target: str) -> dict:
        """Which recipe the target's build came from, and why (its select stage's record)."""
        stage = stage_name("select", target)
        path = self.ws.stage_dir(stage) / "selection.json"
        if path.exists():  # the decision (tracked), with what was measured to make it (when it belongs to it)
            return {**read_json(path), **(self.ws.stage_timings(stage) or {}).get("measured", {})}
        return {"recipe": self.params.compress.recipe, "reason": "the run's recipe"}

    def _log_gate(self, run_key: str, target: str, report: dict, md: str, tags: dict) -> str:
        """The gate report beside the run's candidate record and as artifacts of a `gate-<target>` MLflow run (left
        open: the caller ends it)."""
        out = self._run_dir(run_key, target)
        write_json(out / "gate_report.json", report)
        write_text(out / "gate_report.md", md)
        gate_run = self.tracker.stage_run(self.parent_run(run_key), run_key, stage_name("gate", target),
                                          _gate_metrics(report), tags)
        for f in ("gate_report.json", "gate_report.md"):
            self.tracker.client.log_artifact(gate_run, str(out / f))
        return gate_run

    def _unavailable(self, target: str, run_key: str, name: str, build: Path, sha: str, reason: str) -> Candidate:
        """A runtime that cannot run here (TensorRT without a GPU): the gate fails closed with the reason and is
        logged to MLflow, but no model version is registered (there is no validated model to register)."""
        from squeezeflow.gates.report import gate_report, report_markdown

        metrics = self.ws.stage_metrics(stage_name("validate", target))
        checks = list(self.gate(target).checks)
        report = gate_report(target, name, {"path": str(build), "sha256": sha, "metrics": metrics}, None, checks,
                             None, run_key, [f"unavailable: {reason}"])
        md = report_markdown(report)
        gate_run = self._log_gate(run_key, target, report, md, {"squeezeflow.gate": "failed",
                                                                "squeezeflow.target": target,
                                                                "squeezeflow.unavailable": reason[:500]})
        self.tracker.end(gate_run)
        return Candidate(name, "", False, False, f"runs:/{gate_run}/gate_report.md", md,
                         failed_reasons(checks), report["checks"], unavailable=reason)

    def _gate_and_register(self, target: str, run_key: str, name: str, build: Path, sha: str) -> Candidate:
        from squeezeflow.gates.report import gate_report, report_markdown, version_description
        from squeezeflow.tracking import registry

        profile = self.ws.targets[target]
        metrics = self.ws.stage_metrics(stage_name("validate", target))
        checks = list(self.gate(target).checks)
        champ = registry.champion(self.tracker, name)
        comparison, champ_info, notes = None, None, []
        data_md5 = self.dvc.hashes().get("dataset", "")
        small = resolution_warning(int(metrics.get("test_samples", 0)), float(metrics.get("accuracy", 0.0)),
                                   profile.budgets.max_accuracy_drop, target)
        if small:
            notes.append(small)
        if champ is not None and champ.tags.get("squeezeflow.dvc.dataset", data_md5) != data_md5:
            notes.append("the data (or its split) changed since the champion was trained: some of these test samples "
                         "may have been in its training split, which favours the champion")
        if champ is not None:
            champ_info = {"model_name": name, "version": str(champ.version),
                          "sha256": champ.tags.get(registry.SHA_TAG, "")}
            if "error" in metrics:  # it could not be run: nothing to compare, and it fails already
                notes.append("not compared with the champion: validation failed")
            else:
                comparison, regress = self._compare_with_champion(profile, name, str(champ.version), build)
                checks += regress
        report = gate_report(target, name, {"path": str(build), "sha256": sha, "metrics": metrics}, champ_info,
                             checks, comparison, run_key, notes)
        md = report_markdown(report)
        gate_run = self._log_gate(run_key, target, report, md, {
            "squeezeflow.gate": report["verdict"], "squeezeflow.target": target,
            "squeezeflow.gate_champion": f"v{str(champ.version)}" if champ else "none"})
        passed = report["verdict"] == "passed"
        lineage = self.lineage_tags(run_key, target)
        selection = self.selection(target)
        tags = {**lineage, registry.TARGET_TAG: target, registry.GATE_TAG: report["verdict"],
                **({RELEASE_TAG: "pending"} if passed else {}),  # its promotion step has yet to run
                "squeezeflow.recipe": selection["recipe"], "squeezeflow.recipe_selection": selection["reason"][:5000],
                "squeezeflow.runtime": profile.runtime,
                "squeezeflow.runtime_config": json.dumps(engine_config(profile.runtime, profile.measure.threads,
                                                                       profile.measure.session_options)),
                "squeezeflow.build_config": json.dumps(profile.build.model_dump(mode="json"), sort_keys=True),
                "squeezeflow.gate_run_id": gate_run, "squeezeflow.gate_report": f"runs:/{gate_run}/gate_report.md",
                "squeezeflow.gate_champion": f"v{str(champ.version)}" if champ else "none",
                CHAIN_TAG: json.dumps([[s, self.ws.stages[s].base or s] for s in self.chain(target)])}
        short = {"data": lineage.get("squeezeflow.dvc.dataset", "")[:8], "recipe": selection["recipe"],
                 "dagster run": run_key[:8], "git": lineage.get("mlflow.source.git.commit", "")[:8]}
        example = Splits.load(self.ws.stage_dir("dataset"), self.params.machine.data_memory_mb).x["val"][:5]
        try:
            mv = registry.register(self.tracker, gate_run, name, build, example, tags,
                                   version_description(report, metrics, short)
                                   + (f" Recipe {selection['recipe']}: {selection['reason']}."
                                      if selection.get("candidates") else "")
                                   + (f" Validated with {profile.runtime}, loaded as the tag "
                                      "squeezeflow.runtime_config says (MLflow's pyfunc runs the file with ONNX "
                                      "Runtime)." if profile.runtime != "onnxruntime" else ""),
                                   session_options=mlflow_session_options(profile.measure),
                                   companions=companion_files(profile.runtime, build))
        except Exception:
            self.tracker.end(gate_run, failed=True)
            raise
        self.tracker.end(gate_run)
        return Candidate(name, str(mv.version), True, passed, tags["squeezeflow.gate_report"], md,
                         failed_reasons(checks), report["checks"])

    def _compare_with_champion(self, profile, name: str, version: str, build: Path) -> tuple[dict, list[dict]]:
        """Champion and candidate side by side on the same test samples, in a constrained process of their own.
        Raises when the comparison could not be made (a download, a timeout, a crash, a champion without a
        recorded sha256): that is no verdict on the candidate, so nothing is registered and the next run tries
        again; meanwhile nothing is promoted."""
        import tempfile

        from squeezeflow.gates.compare import compare_isolated, regression_checks
        from squeezeflow.tracking import registry

        splits = Splits.load(self.ws.stage_dir("dataset"), self.params.machine.data_memory_mb)
        with tempfile.TemporaryDirectory(prefix=".champion.", dir=self.ws.state_dir) as tmp:
            try:
                champ_path = registry.download_onnx(self.tracker, name, version, Path(tmp) / "champion.onnx")
            except Exception as exc:
                raise TransientError(f"{profile.name}: champion v{version} could not be fetched for the comparison "
                                     f"({type(exc).__name__}: {exc}); nothing registered, not promoted") from exc
            comparison = compare_isolated(champ_path, build, splits.x["test"], splits.y["test"], profile.measure,
                                          profile.regression, runtime=profile.runtime)
        if "error" in comparison:
            kind = TransientError if comparison.get("transient") else RuntimeError
            raise kind(f"{profile.name}: the comparison with champion v{version} failed: {comparison['error']}; "
                       "nothing registered, not promoted")
        return comparison, regression_checks(comparison, profile.regression)

    # --- promotion -----------------------------------------------------------------------------------------
    def held_back(self, target: str, run_key: str) -> str:
        """Why this run's candidate is not to be promoted ('' when its gate passed): its runtime is unavailable
        here, or its gate failed. No candidate record for this run is an error (raises), not a verdict."""
        cand = read_candidate(self.ws, run_key, target)
        if cand is None:
            raise RuntimeError(f"{target}: no gated candidate in run {run_key} (not promoted)")
        if cand.unavailable:
            return f"unavailable: {cand.unavailable}"
        return "" if cand.passed else "gate failed: " + ("; ".join(cand.reasons) or "see the gate report")

    def promote(self, target: str, run_key: str) -> Promotion:
        """After the gate, the candidate's promotion step (squeezeflow.tracking.promotion.release): `auto` makes a
        passing version champion if the champion is still the one its gate compared against (else it waits as
        challenger, with the reason), `manual` makes it challenger. A version whose step already ran (registered
        before) is left as it is. Fails closed: no candidate record for this run, or a verdict other than passed in
        the registry, raises."""
        from squeezeflow.tracking import registry
        from squeezeflow.tracking.promotion import release

        path = self._run_dir(run_key, target) / "candidate.json"
        if not path.exists():
            raise RuntimeError(f"{target}: no gated candidate in run {run_key} (not promoted)")
        cand = Candidate(**read_json(path))
        mv = registry.get_version(self.tracker, cand.model_name, cand.version)
        if mv is None or mv.tags.get(registry.GATE_TAG) != "passed":
            raise RuntimeError(f"{target}: {cand.model_name} v{cand.version} has not passed its gate (not promoted)")
        before = registry.champion(self.tracker, cand.model_name)
        previous = str(before.version) if before else None
        uri = f"models:/{cand.model_name}/{cand.version}"
        policy = self.ws.targets[target].promotion
        child = self.tracker.stage_run(self.parent_run(run_key), run_key, stage_name("promote", target), {},
                                       {**self.lineage_tags(run_key), registry.TARGET_TAG: target,
                                        "squeezeflow.model_uri": uri, "squeezeflow.promotion": policy})
        try:
            done = release(self.tracker, cand.model_name, cand.version, policy, self.registry_lock,
                           "squeezeflow (auto)", f"gate passed in Dagster run {run_key}",
                           tags={"squeezeflow.dagster_run_id": run_key})
        except Exception:
            self.tracker.end(child, failed=True)
            raise
        self.tracker.end(child)
        if done is None:  # released before (an earlier run registered this very file)
            current = registry.champion(self.tracker, cand.model_name)
            alias = "champion" if current is not None and str(current.version) == cand.version else ""
            return Promotion(cand.model_name, cand.version, uri, alias, False, previous)
        alias, note, _ = done
        return Promotion(cand.model_name, cand.version, uri, alias, True, previous, note)

    def recover_registry(self) -> list[str]:
        """Finish what a killed or failed run left pending in the registry: a champion move recorded but not
        completed, a passed version whose promotion step never ran (released now, by its target's policy and
        compare-and-swap on the champion; abandoned when its target is gone). Returns what was done."""
        from squeezeflow.tracking import registry
        from squeezeflow.tracking.promotion import (
            abandon_release,
            pending_moves,
            pending_releases,
            recover_history,
            registry_lock,
            release,
        )

        notes = []
        for name in sorted(pending_moves(self.tracker)):
            with registry_lock(self.registry_lock):
                notes += recover_history(self.tracker, name)
        ours = self.model_name("-")[:-1]  # `<prefix>-<model name>-`: this workspace's models for its current data
        for mv in pending_releases(self.tracker):
            target = mv.tags.get(registry.TARGET_TAG, "")
            if not mv.name.startswith(ours) or mv.name != ours + target and target in self.ws.targets:
                continue  # another dataset's or workspace's (a shared tracking server): its own runs release it
            if target not in self.ws.targets:
                abandon_release(self.tracker, mv.name, str(mv.version), f"its target {target!r} is not configured")
                notes.append(f"{mv.name} v{mv.version}: abandoned (target {target!r} is not configured)")
                continue
            done = release(self.tracker, mv.name, str(mv.version), self.ws.targets[target].promotion,
                           self.registry_lock, "squeezeflow (recovery)",
                           f"gate passed in Dagster run {mv.tags.get('squeezeflow.dagster_run_id', '?')}, which "
                           "stopped before its promotion step", tags={"squeezeflow.recovered": "true"})
            if done:
                notes.append(f"{mv.name} v{mv.version}: its interrupted promotion finished: {done[1]}")
                for version in filter(None, (str(mv.version), done[2])):  # their promotion history changed
                    try:
                        self.publish_card(mv.name, version)
                    except Exception as exc:  # noqa: BLE001 - the alias has moved: a stale card is not a failure
                        notes.append(f"{mv.name} v{version}: model card not updated: {exc}")
        return notes

    def collect_garbage(self, keep: int | None = None, dry_run: bool = False):
        """Retention (squeezeflow.retention): old versions nobody can deploy again and DVC objects nothing names.
        `keep`: the newest versions kept per model (default: params.yaml retention.keep_versions)."""
        from squeezeflow.retention import collect

        retention = self.params.retention
        stores = self.dvc.object_stores()
        if not retention.remote:
            stores.pop("DVC remote", None)
        outs = {o["md5"] for entry in self.dvc.lock().values() for o in entry.get("outs", []) if o.get("md5")}
        removed = collect(self.tracker, self.params.registry.model_prefix,
                          retention.keep_versions if keep is None else keep, stores, outs, self.registry_lock, dry_run)
        uri = self.tracker.tracking_uri
        if uri.startswith("sqlite:///") and removed.versions and not dry_run:
            import sqlite3

            try:  # SQLite keeps the pages of deleted rows until VACUUM
                with sqlite3.connect(uri.removeprefix("sqlite:///"), timeout=30) as db:
                    db.execute("VACUUM")
            except sqlite3.Error as exc:
                print(f"warning: the MLflow database was not compacted: {exc}", file=sys.stderr)
        return removed

    def publish_card(self, model_name: str, version: str) -> tuple[str, str]:
        """The version's model card, (re)written from the store: its Markdown and artifact URI."""
        from squeezeflow.tracking.model_card import publish

        return publish(self.tracker, model_name, version)


def run_dir(ws: Workspace, run_key: str, target: str) -> Path:
    """Where a run keeps a target's gate report and candidate record."""
    return ws.state_dir / "runs" / run_key / target


def read_candidate(ws: Workspace, run_key: str, target: str) -> Candidate | None:
    """The target's gated candidate in this run (its verdict and reasons), or None when it was not gated."""
    path = run_dir(ws, run_key, target) / "candidate.json"
    return Candidate(**read_json(path)) if path.exists() else None


def _gate_metrics(report: dict) -> dict:
    out = {"gate_passed": float(report["verdict"] == "passed")}
    for c in report["checks"]:
        for k in ("value", "low", "high"):
            if isinstance(c.get(k), (int, float)) and not isinstance(c.get(k), bool):
                out[f"{c['name']}.{k}"] = c[k]
    return out


def safe_name(name: str) -> str:
    """A registry-safe model name from a dataset name or file stem."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.")
    return cleaned or "dataset"


COMPARISON_TAG = "squeezeflow.promotion_comparison"  # what a person's promotion was compared with


def _person_tags(run_key: str) -> dict[str, str]:
    return {"squeezeflow.dagster_run_id": run_key}


class Registry:
    """What a person does in the registry (promote, force, roll back), on one workspace's MLflow store."""

    def __init__(self, lifecycle: Lifecycle):
        self.lc = lifecycle

    def model_name(self, target: str | None, model_name: str | None) -> str:
        if model_name:
            return model_name
        if not target:
            raise SqueezeflowInputError("promotion config", "target", target, "give a target or a model_name")
        if target not in self.lc.ws.targets:
            raise SqueezeflowInputError("promotion config", "target", target,
                                        f"unknown target; known: {sorted(self.lc.ws.targets)}")
        return self.lc.model_name(target)

    def promote(self, target: str | None, model_name: str | None, version: str, promoted_by: str, reason: str,
                force: bool, run_key: str):
        from squeezeflow.tracking.promotion import promote_version

        name = self.model_name(target, model_name)
        shown, worse = self.compare_with_champion(name, str(version).strip(), force)
        record = promote_version(self.lc.tracker, name, version, promoted_by, reason, self.lc.registry_lock,
                                 force=force, tags={**_person_tags(run_key),
                                                    **({COMPARISON_TAG: shown[:5000]} if shown else {})},
                                 forced_past=shown if worse else "")
        if shown:
            self.lc.tracker.client.set_model_version_tag(name, record.version, COMPARISON_TAG, shown[:5000])
        return self._carded(record)

    def compare_with_champion(self, name: str, version: str, force: bool) -> tuple[str, bool]:
        """A version gated against another champion (or none), promoted by a person: compared with today's
        champion on the workspace's test split, in the target's constrained process, as the gate would. Worse (or
        not comparable) needs `force`. Returns what the comparison showed ('' when the version's own gate already
        compared it with today's champion) and whether it was worse (or not comparable)."""
        import tempfile

        from squeezeflow.gates.compare import compare_isolated, regression_checks
        from squeezeflow.tracking import registry
        from squeezeflow.tracking.promotion import PromotionRefused

        mv, current = registry.get_version(self.lc.tracker, name, version), registry.champion(self.lc.tracker, name)
        if mv is None or current is None or str(current.version) == version \
                or mv.tags.get("squeezeflow.gate_champion") == f"v{current.version}":
            return "", False
        target = mv.tags.get(registry.TARGET_TAG, "")
        try:
            profile = self.lc.ws.targets[target]
            splits = Splits.load(self.lc.ws.stage_dir("dataset"), self.lc.params.machine.data_memory_mb)
            with tempfile.TemporaryDirectory(prefix=".champion.", dir=self.lc.ws.state_dir) as tmp:
                ours = registry.download_onnx(self.lc.tracker, name, version, Path(tmp) / "candidate.onnx")
                theirs = registry.download_onnx(self.lc.tracker, name, current.version, Path(tmp) / "champion.onnx")
                comparison = compare_isolated(theirs, ours, splits.x["test"], splits.y["test"], profile.measure,
                                              profile.regression, runtime=profile.runtime)
            if "error" in comparison:
                raise RuntimeError(comparison["error"])
        except Exception as exc:  # noqa: BLE001 - not comparable: fail closed unless forced
            shown = f"v{version} could not be compared with champion v{current.version}: {type(exc).__name__}: {exc}"
            if not force:
                raise PromotionRefused(f"{name}: field 'version' = {version!r}: {shown}; set force: true with a "
                                       "reason to promote it anyway") from None
            return shown, True
        checks = regression_checks(comparison, profile.regression)
        shown = f"v{version} vs champion v{current.version} on today's test split: " + "; ".join(
            c["message"] for c in checks)
        worse = not all(c["passed"] for c in checks)
        if worse and not force:
            raise PromotionRefused(f"{name}: field 'version' = {version!r}: {shown}; set force: true with a reason "
                                   "to promote it anyway")
        return shown, worse

    def rollback(self, target: str | None, model_name: str | None, promoted_by: str, reason: str, run_key: str):
        from squeezeflow.tracking.promotion import rollback

        name = self.model_name(target, model_name)
        return self._carded(rollback(self.lc.tracker, name, promoted_by, reason, self.lc.registry_lock,
                                     tags=_person_tags(run_key)))

    def _carded(self, record):
        """The promotion history of both versions changed: their cards are written again."""
        for version in filter(None, (record.version, record.previous)):
            try:
                self.lc.publish_card(record.model_name, version)
            except Exception as exc:  # noqa: BLE001 - the alias has moved: a stale card is not a failed promotion
                print(f"warning: model card of {record.model_name} v{version} not updated: {exc}", file=sys.stderr)
        return record

    def target_of(self, model_name: str, version: str) -> str | None:
        from squeezeflow.tracking import get_version
        from squeezeflow.tracking.registry import TARGET_TAG

        mv = get_version(self.lc.tracker, model_name, version)
        return mv.tags.get(TARGET_TAG) if mv is not None else None
