"""Releases: a passed candidate's promotion step (auto or manual, compare-and-swap on the champion), what a killed run
left pending in the registry, model cards, retention, and what a person does in the registry (promote, force,
roll back)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from squeezeflow.data import Splits
from squeezeflow.errors import SqueezeflowInputError
from squeezeflow.io import read_json
from squeezeflow.lifecycle.candidates import Candidate, Candidates
from squeezeflow.stages import stage_name
from squeezeflow.tracking.schema import (
    COMPARISON_TAG,
    DAGSTER_RUN_TAG,
    GATE_CHAMPION_TAG,
    GATE_TAG,
    MODEL_URI_TAG,
    PROMOTION_POLICY_TAG,
    RECOVERED_TAG,
    TARGET_TAG,
)


@dataclass(frozen=True)
class Promotion:
    model_name: str
    version: str
    model_uri: str
    alias: str  # champion | challenger | "" (left as it was)
    new_version: bool  # this run's promotion step released it (its first)
    previous_champion: str | None
    note: str = ""  # what the step did: e.g. why a passing version waits as challenger


class Releases(Candidates):
    """Promotion after the gate, recovery of pending releases, cards and retention."""

    def held_back(self, target: str, run_key: str) -> str:
        """Why this run's candidate is not to be promoted ('' when its gate passed): its runtime is unavailable
        here, or its gate failed. No candidate record for this run is an error (raises), not a verdict."""
        path = self.candidate_path(run_key, target)
        cand = Candidate(**read_json(path)) if path.exists() else None
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

        path = self.candidate_path(run_key, target)
        if not path.exists():
            raise RuntimeError(f"{target}: no gated candidate in run {run_key} (not promoted)")
        cand = Candidate(**read_json(path))
        mv = registry.get_version(self.tracker, cand.model_name, cand.version)
        if mv is None or mv.tags.get(GATE_TAG) != "passed":
            raise RuntimeError(f"{target}: {cand.model_name} v{cand.version} has not passed its gate (not promoted)")
        before = registry.champion(self.tracker, cand.model_name)
        previous = str(before.version) if before else None
        uri = f"models:/{cand.model_name}/{cand.version}"
        policy = self.ws.targets[target].promotion
        child = self.tracker.stage_run(self.parent_run(run_key), run_key, stage_name("promote", target), {},
                                       {**self.lineage_tags(run_key), TARGET_TAG: target,
                                        MODEL_URI_TAG: uri, PROMOTION_POLICY_TAG: policy})
        try:
            done = release(self.tracker, cand.model_name, cand.version, policy, self.registry_lock,
                           "squeezeflow (auto)", f"gate passed in Dagster run {run_key}",
                           tags={DAGSTER_RUN_TAG: run_key})
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

    def recover_registry(self, alive=None) -> list[str]:
        """Finish what a killed or failed run left pending in the registry: a champion move recorded but not
        completed, a passed version whose promotion step never ran (released now, by its target's policy and
        compare-and-swap on the champion; abandoned when its target is gone). Returns what was done. `alive`:
        which Dagster runs are still going; their pending versions are theirs to release."""
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
            target = mv.tags.get(TARGET_TAG, "")
            if alive is not None and alive(mv.tags.get(DAGSTER_RUN_TAG, "")):
                continue
            if not mv.name.startswith(ours) or mv.name != ours + target and target in self.ws.targets:
                continue  # another dataset's or workspace's (a shared tracking server): its own runs release it
            if target not in self.ws.targets:
                abandon_release(self.tracker, mv.name, str(mv.version), f"its target {target!r} is not configured")
                notes.append(f"{mv.name} v{mv.version}: abandoned (target {target!r} is not configured)")
                continue
            done = release(self.tracker, mv.name, str(mv.version), self.ws.targets[target].promotion,
                           self.registry_lock, "squeezeflow (recovery)",
                           f"gate passed in Dagster run {mv.tags.get(DAGSTER_RUN_TAG, '?')}, which "
                           "stopped before its promotion step", tags={RECOVERED_TAG: "true"})
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


def _person_tags(run_key: str) -> dict[str, str]:
    return {DAGSTER_RUN_TAG: run_key}


class Registry:
    """What a person does in the registry (promote, force, roll back), on one workspace's MLflow store."""

    def __init__(self, lifecycle: Releases):
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
                or mv.tags.get(GATE_CHAMPION_TAG) == f"v{current.version}":
            return "", False
        target = mv.tags.get(TARGET_TAG, "")
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

        mv = get_version(self.lc.tracker, model_name, version)
        return mv.tags.get(TARGET_TAG) if mv is not None else None
