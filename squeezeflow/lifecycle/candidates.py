"""A target's build as a candidate: gated (absolute budgets, then side by side against the champion in a constrained
process) and registered as a model version carrying its verdict, report and lineage."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from squeezeflow.data import Splits
from squeezeflow.errors import TransientError
from squeezeflow.gates import GateVerdict, evaluate_gate, failed_reasons
from squeezeflow.io import read_json, sha256_file, write_json, write_text
from squeezeflow.lifecycle.base import METRICS, run_dir
from squeezeflow.lifecycle.stages import StageRunner
from squeezeflow.runtimes.engines import companion_files, engine_config
from squeezeflow.runtimes.measure import mlflow_session_options
from squeezeflow.stages import stage_name
from squeezeflow.stats import resolution_warning
from squeezeflow.tracking.schema import (
    BUILD_CONFIG_TAG,
    CHAIN_TAG,
    GATE_CHAMPION_TAG,
    GATE_REPORT_TAG,
    GATE_RUN_TAG,
    GATE_TAG,
    GIT_TAG,
    RECIPE_SELECTION_TAG,
    RECIPE_TAG,
    RELEASE_TAG,
    RUNTIME_CONFIG_TAG,
    RUNTIME_TAG,
    SHA_TAG,
    TARGET_TAG,
    UNAVAILABLE_TAG,
    dvc_tag,
)
from squeezeflow.workspace import Workspace


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


class Candidates(StageRunner):
    """Gate and registration, per target."""

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

    def evaluate_candidate(self, target: str, run_key: str) -> Candidate:
        """Gate the target's build (absolute budgets, then side by side against the champion), write the report,
        and register the build as a model version carrying its verdict. A file already registered is not gated or
        registered again: its recorded verdict stands."""
        from squeezeflow.tracking import registry

        if self.fanout:  # a worker's step workspace: what the gate reads, as this run made it
            self.pull_inputs([s for s in ("dataset", "teacher", *(stage_name(b, target) for b in (
                "select", "build", "validate"))) if s in self.ws.stages], run_key)
        build = self.ws.stage_dir(stage_name("build", target)) / "model.onnx"
        name, sha = self.model_name(target), sha256_file(build)
        reason = self.ws.stage_metrics(stage_name("validate", target)).get("unavailable")
        if reason:
            cand = self._unavailable(target, run_key, name, build, sha, reason)
            self._record(run_key, target, cand)
            return cand
        existing = registry.version_with_sha(self.tracker, name, sha)
        if existing is not None:
            cand = Candidate(name, str(existing.version), False, existing.tags.get(GATE_TAG) == "passed",
                             existing.tags.get(GATE_REPORT_TAG, ""), "", [])
        else:
            cand = self._gate_and_register(target, run_key, name, build, sha)
        self._record(run_key, target, cand)
        return cand

    def _record(self, run_key: str, target: str, cand: Candidate) -> None:
        """The candidate record the promotion step reads; on a step workspace also on the run's MLflow parent (the
        promotion step may run on another worker)."""
        path = self._run_dir(run_key, target) / "candidate.json"
        write_json(path, asdict(cand))
        if self.fanout:
            self.tracker.client.log_artifact(self.parent_run(run_key), str(path), f"candidates/{target}")

    def candidate_path(self, run_key: str, target: str) -> Path:
        """This run's candidate record for the target (fetched from the run's MLflow parent on a step workspace)."""
        path = self._run_dir(run_key, target) / "candidate.json"
        if self.fanout and not path.exists():
            import tempfile

            with tempfile.TemporaryDirectory() as tmp:
                try:
                    got = self.tracker.client.download_artifacts(self.parent_run(run_key),
                                                                 f"candidates/{target}/candidate.json", tmp)
                except Exception:  # noqa: BLE001 - none recorded: the caller says "no gated candidate"
                    return path
                write_json(path, read_json(Path(got)))
        return path

    def selection(self, target: str) -> dict:
        """Which recipe the target's build came from, and why (its select stage's record)."""
        stage = stage_name("select", target)
        path = self.ws.stage_dir(stage) / "selection.json"
        if path.exists():  # the decision (tracked), with what was measured to make it (when it belongs to it)
            return {**read_json(path), **(self.ws.stage_timings(stage) or {}).get("measured", {})}
        return {"recipe": self.params.compress.recipe, "reason": "the run's recipe"}

    def _log_gate(self, run_key: str, target: str, report: dict, md: str, tags: dict, metrics: bool = True) -> str:
        """The gate report beside the run's candidate record and as artifacts of a `gate-<target>` MLflow run (left
        open: the caller ends it). `metrics=False`: the caller logs them after the model (MLflow's log_model copies
        a run's metrics onto its logged model, re-inserting each row: a duplicate-key error in a Postgres store)."""
        out = self._run_dir(run_key, target)
        write_json(out / "gate_report.json", report)
        write_text(out / "gate_report.md", md)
        gate_run = self.tracker.stage_run(self.parent_run(run_key), run_key, stage_name("gate", target),
                                          _gate_metrics(report) if metrics else {}, tags)
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
        gate_run = self._log_gate(run_key, target, report, md, {GATE_TAG: "failed",
                                                                TARGET_TAG: target,
                                                                UNAVAILABLE_TAG: reason[:500]})
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
        data_md5 = self.run_hashes(run_key).get("dataset", "")
        small = resolution_warning(int(metrics.get("test_samples", 0)), float(metrics.get("accuracy", 0.0)),
                                   profile.budgets.max_accuracy_drop, target)
        if small:
            notes.append(small)
        if champ is not None and champ.tags.get(dvc_tag("dataset"), data_md5) != data_md5:
            notes.append("the data (or its split) changed since the champion was trained: some of these test samples "
                         "may have been in its training split, which favours the champion")
        if champ is not None:
            champ_info = {"model_name": name, "version": str(champ.version),
                          "sha256": champ.tags.get(SHA_TAG, "")}
            if "error" in metrics:  # it could not be run: nothing to compare, and it fails already
                notes.append("not compared with the champion: validation failed")
            else:
                comparison, regress = self._compare_with_champion(profile, name, str(champ.version), build)
                checks += regress
        report = gate_report(target, name, {"path": str(build), "sha256": sha, "metrics": metrics}, champ_info,
                             checks, comparison, run_key, notes)
        md = report_markdown(report)
        gate_run = self._log_gate(run_key, target, report, md, {
            GATE_TAG: report["verdict"], TARGET_TAG: target,
            GATE_CHAMPION_TAG: f"v{str(champ.version)}" if champ else "none"}, metrics=False)
        passed = report["verdict"] == "passed"
        lineage = self.lineage_tags(run_key, target)
        selection = self.selection(target)
        tags = {**lineage, TARGET_TAG: target, GATE_TAG: report["verdict"],
                **({RELEASE_TAG: "pending"} if passed else {}),  # its promotion step has yet to run
                RECIPE_TAG: selection["recipe"], RECIPE_SELECTION_TAG: selection["reason"][:5000],
                RUNTIME_TAG: profile.runtime,
                RUNTIME_CONFIG_TAG: json.dumps(engine_config(profile.runtime, profile.measure.threads,
                                                                       profile.measure.session_options)),
                BUILD_CONFIG_TAG: json.dumps(profile.build.model_dump(mode="json"), sort_keys=True),
                GATE_RUN_TAG: gate_run, GATE_REPORT_TAG: f"runs:/{gate_run}/gate_report.md",
                GATE_CHAMPION_TAG: f"v{str(champ.version)}" if champ else "none",
                CHAIN_TAG: json.dumps([[s, self.ws.stages[s].base or s] for s in self.chain(target)])}
        short = {"data": lineage.get(dvc_tag("dataset"), "")[:8], "recipe": selection["recipe"],
                 "dagster run": run_key[:8], "git": lineage.get(GIT_TAG, "")[:8]}
        example = Splits.load(self.ws.stage_dir("dataset"), self.params.machine.data_memory_mb).x["val"][:5]
        try:
            mv = registry.register(self.tracker, gate_run, name, build, example, tags,
                                   version_description(report, metrics, short)
                                   + (f" Recipe {selection['recipe']}: {selection['reason']}."
                                      if selection.get("candidates") else "")
                                   + (f" Validated with {profile.runtime}, loaded as the tag "
                                      f"{RUNTIME_CONFIG_TAG} says (MLflow's pyfunc runs the file with ONNX "
                                      "Runtime)." if profile.runtime != "onnxruntime" else ""),
                                   session_options=mlflow_session_options(profile.measure),
                                   companions=companion_files(profile.runtime, build))
        except Exception:
            self.tracker.log_metrics(gate_run, _gate_metrics(report))
            self.tracker.end(gate_run, failed=True)
            raise
        self.tracker.log_metrics(gate_run, _gate_metrics(report), model_id=getattr(mv, "model_id", None))
        self.tracker.end(gate_run)
        return Candidate(name, str(mv.version), True, passed, tags[GATE_REPORT_TAG], md,
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
