"""Moving the `champion` alias: by the pipeline after a passed gate, or by a person (promote, force, roll back).

Every move is serialised by a lock, tagged on the version (who, why, when, the previous champion) and recorded
as a run in the MLflow experiment `squeezeflow-promotions`: the registry's history, in order.
"""

from __future__ import annotations

import fcntl
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from squeezeflow.tracking.registry import (
    CHALLENGER,
    CHAMPION,
    GATE_TAG,
    champion,
    get_version,
    version_by_alias,
    versions,
)
from squeezeflow.tracking.tracker import Tracker

HISTORY_EXPERIMENT = "squeezeflow-promotions"
T = "squeezeflow."  # tag prefix


class PromotionRefused(ValueError):
    """A promotion that must not happen; the message says why and what would allow it."""


@dataclass(frozen=True)
class PromotionRecord:
    model_name: str
    version: str
    previous: str | None
    action: str  # promote | rollback | auto
    promoted_by: str
    reason: str
    forced: bool
    at: str  # ISO 8601, UTC
    seq: int  # position in this model's promotion history
    record_run_id: str

    def to_dict(self) -> dict:
        return asdict(self)


@contextmanager
def registry_lock(path: Path):
    """One alias move at a time across processes on this machine (a shared MLflow server needs its runs
    launched through one Dagster instance, whose queue runs one at a time)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _history_experiment(tracker: Tracker) -> str:
    from mlflow.exceptions import MlflowException

    exp = tracker.client.get_experiment_by_name(HISTORY_EXPERIMENT)
    if exp is not None:
        return exp.experiment_id
    try:
        return tracker.client.create_experiment(HISTORY_EXPERIMENT)
    except MlflowException:  # created meanwhile
        return tracker.client.get_experiment_by_name(HISTORY_EXPERIMENT).experiment_id


def history(tracker: Tracker, model_name: str) -> list[PromotionRecord]:
    """Every alias move of `champion` for this model, oldest first."""
    runs = tracker.client.search_runs([_history_experiment(tracker)], f"tags.`{T}model_name` = '{model_name}'",
                                      max_results=10_000)
    records = [PromotionRecord(
        model_name=model_name, version=r.data.tags[f"{T}version"],
        previous=r.data.tags.get(f"{T}previous_champion") or None,
        action=r.data.tags[f"{T}action"], promoted_by=r.data.tags[f"{T}promoted_by"], reason=r.data.tags[f"{T}reason"],
        forced=r.data.tags.get(f"{T}forced") == "true", at=r.data.tags[f"{T}promoted_at"],
        seq=int(r.data.tags[f"{T}promotion_seq"]), record_run_id=r.info.run_id) for r in runs]
    return sorted(records, key=lambda r: r.seq)


def _refuse_unless_promotable(model_name: str, mv, version: str, force: bool, reason: str, known: list[str]) -> None:
    if mv is None:
        raise PromotionRefused(f"{model_name}: field 'version' = {version!r}: no such version; known: {known}")
    gate = mv.tags.get(GATE_TAG)
    if gate != "passed" and not force:
        what = "failed its gate" if gate == "failed" else "has no gate verdict"
        raise PromotionRefused(f"{model_name}: field 'version' = {version!r}: the version {what}; set force: true "
                               f"with a reason to promote it anyway")
    if force and not reason.strip():
        raise PromotionRefused(f"{model_name}: field 'reason' = {reason!r}: a forced promotion needs a reason")


def promote_version(tracker: Tracker, model_name: str, version: str | int, promoted_by: str, reason: str,
                    lock_path: Path, force: bool = False, action: str = "promote",
                    tags: dict[str, str] | None = None) -> PromotionRecord:
    """Point `champion` at `version`. Refuses a version whose gate failed or is missing unless forced with a reason."""
    version = str(version).strip()
    for field, value in (("promoted_by", promoted_by), ("reason", reason)):
        if not str(value or "").strip():
            raise PromotionRefused(f"{model_name}: field '{field}' = {value!r}: required (who promotes, and why)")
    with registry_lock(lock_path):
        mv = get_version(tracker, model_name, version)
        _refuse_unless_promotable(model_name, mv, version, force, reason,
                                  [str(v.version) for v in versions(tracker, model_name)] if mv is None else [])
        current = champion(tracker, model_name)
        if current is not None and str(current.version) == str(mv.version):
            raise PromotionRefused(f"{model_name}: field 'version' = {version!r}: already the champion")
        record = _record(tracker, model_name, str(mv.version), str(current.version) if current else None, action,
                         promoted_by, reason, force and mv.tags.get(GATE_TAG) != "passed", tags or {})
        tracker.client.set_registered_model_alias(model_name, CHAMPION, str(mv.version))
        waiting = version_by_alias(tracker, model_name, CHALLENGER)
        if waiting is not None and str(waiting.version) == str(mv.version):
            tracker.client.delete_registered_model_alias(model_name, CHALLENGER)
        for k, v in {"promoted_by": promoted_by, "promoted_at": record.at, "promotion_reason": reason,
                     "previous_champion": record.previous or "", "forced": str(record.forced).lower(),
                     "promotion_run_id": record.record_run_id}.items():
            tracker.client.set_model_version_tag(model_name, str(mv.version), T + k, v)
        return record


def _record(tracker: Tracker, model_name: str, version: str, previous: str | None, action: str, who: str,
            reason: str, forced: bool, extra: dict[str, str]) -> PromotionRecord:
    seq = len(history(tracker, model_name)) + 1  # under the lock: a total order
    at = datetime.now(UTC).isoformat(timespec="seconds")
    tags = {f"{T}model_name": model_name, f"{T}version": version, f"{T}previous_champion": previous or "",
            f"{T}action": action, f"{T}promoted_by": who, f"{T}reason": reason, f"{T}forced": str(forced).lower(),
            f"{T}promoted_at": at, f"{T}promotion_seq": str(seq), **extra}
    run = tracker.client.create_run(_history_experiment(tracker), run_name=f"{action} {model_name} v{version}",
                                    tags=tags)
    tracker.client.set_terminated(run.info.run_id)
    return PromotionRecord(model_name, version, previous, action, who, reason, forced, at, seq, run.info.run_id)


def previous_champion(tracker: Tracker, model_name: str) -> str:
    """The version that was champion before the current one took over (walking back past earlier rollbacks)."""
    current = champion(tracker, model_name)
    if current is None:
        raise PromotionRefused(f"{model_name}: no champion to roll back from")
    records = [r for r in history(tracker, model_name) if r.version == str(current.version) and r.action != "rollback"]
    previous = records[-1].previous if records else current.tags.get(f"{T}previous_champion")
    if not previous:
        raise PromotionRefused(f"{model_name}: champion v{str(current.version)} has no previous champion "
                               "to roll back to")
    return previous


def rollback(tracker: Tracker, model_name: str, promoted_by: str, reason: str, lock_path: Path,
             tags: dict[str, str] | None = None) -> PromotionRecord:
    """Make the previous champion the champion again. It was deployed before, so its gate is not re-asked."""
    return promote_version(tracker, model_name, previous_champion(tracker, model_name), promoted_by, reason, lock_path,
                           force=True, action="rollback", tags=tags)


def set_challenger(tracker: Tracker, model_name: str, version: str) -> None:
    tracker.client.set_registered_model_alias(model_name, CHALLENGER, str(version))
