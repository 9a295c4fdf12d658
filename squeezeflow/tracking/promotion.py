"""Moving the `champion` alias: by the pipeline after a passed gate, or by a person (promote, force, roll back).

Every move is serialised by a lock, tagged on the version (who, why, when, the previous champion) and recorded
as a run in the MLflow experiment `squeezeflow-promotions`: the registry's history, in order.

No step may strand: a move is recorded as `pending` before the alias moves and marked `done` after the version's
tags; a passed version is registered with `squeezeflow.release: pending` and marked `done` once its promotion step
ran. Whatever a kill or an MLflow error leaves pending, the next run's recovery (`recover`) finishes or abandons,
with the reason, so the history says what really happened and aliases always match it.
"""

from __future__ import annotations

import fcntl
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from squeezeflow import faults
from squeezeflow.tracking.registry import (
    CHALLENGER,
    CHAMPION,
    champion,
    get_version,
    version_by_alias,
    versions,
)
from squeezeflow.tracking.schema import (
    ABANDONED_REASON_TAG,
    ACTION_TAG,
    FORCED_TAG,
    GATE_CHAMPION_TAG,
    GATE_TAG,
    MODEL_NAME_TAG,
    PREVIOUS_CHAMPION_TAG,
    PROMOTED_AT_TAG,
    PROMOTED_BY_TAG,
    PROMOTION_REASON_TAG,
    PROMOTION_RUN_TAG,
    PROMOTION_SEQ_TAG,
    REASON_TAG,
    RELEASE_NOTE_TAG,
    RELEASE_TAG,
    STATE_TAG,
    VERSION_TAG,
)
from squeezeflow.tracking.tracker import Tracker

HISTORY_EXPERIMENT = "squeezeflow-promotions"


class PromotionRefused(ValueError):
    """A promotion that must not happen; the message says why and what would allow it."""


class ChampionMoved(PromotionRefused):
    """The champion is no longer the version a candidate's gate compared against (compare-and-swap failed)."""


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


def history(tracker: Tracker, model_name: str, states: tuple[str, ...] = ("done",)) -> list[PromotionRecord]:
    """Every alias move of `champion` for this model, oldest first (by default only those that happened; a record
    from before recovery existed has no state and counts as done)."""
    runs = tracker.client.search_runs([_history_experiment(tracker)], f"tags.`{MODEL_NAME_TAG}` = '{model_name}'",
                                      max_results=10_000)
    records = [PromotionRecord(
        model_name=model_name, version=r.data.tags[VERSION_TAG],
        previous=r.data.tags.get(PREVIOUS_CHAMPION_TAG) or None,
        action=r.data.tags[ACTION_TAG], promoted_by=r.data.tags[PROMOTED_BY_TAG], reason=r.data.tags[REASON_TAG],
        forced=r.data.tags.get(FORCED_TAG) == "true", at=r.data.tags[PROMOTED_AT_TAG],
        seq=int(r.data.tags[PROMOTION_SEQ_TAG]), record_run_id=r.info.run_id) for r in runs
        if r.data.tags.get(STATE_TAG, "done") in states]
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


_ANY = object()


def promote_version(tracker: Tracker, model_name: str, version: str | int, promoted_by: str, reason: str,
                    lock_path: Path, force: bool = False, action: str = "promote",
                    tags: dict[str, str] | None = None, expect=_ANY, forced_past: str = "") -> PromotionRecord:
    """Point `champion` at `version`. Refuses a version whose gate failed or is missing unless forced with a reason.
    With `expect` (a version, or None for no champion): only if the champion is still that one (ChampionMoved).
    `forced_past`: what else `force` overrode (a worse comparison with today's champion): recorded as forced."""
    version = str(version).strip()
    for field, value in (("promoted_by", promoted_by), ("reason", reason)):
        if not str(value or "").strip():
            raise PromotionRefused(f"{model_name}: field '{field}' = {value!r}: required (who promotes, and why)")
    with registry_lock(lock_path):
        recover_history(tracker, model_name)
        mv = get_version(tracker, model_name, version)
        _refuse_unless_promotable(model_name, mv, version, force, reason,
                                  [str(v.version) for v in versions(tracker, model_name)] if mv is None else [])
        current = champion(tracker, model_name)
        now = str(current.version) if current is not None else None
        if expect is not _ANY and now != expect:
            raise ChampionMoved(f"{model_name}: the champion is {_v(now)}, not {_v(expect)} as when v{version} was "
                                "gated")
        if now == str(mv.version):
            raise PromotionRefused(f"{model_name}: field 'version' = {version!r}: already the champion")
        return _move_champion(tracker, model_name, str(mv.version), now, action, promoted_by, reason,
                              force and (mv.tags.get(GATE_TAG) != "passed" or bool(forced_past)), tags or {})


def _v(version: str | None) -> str:
    return f"v{version}" if version else "none"


def _move_champion(tracker: Tracker, model_name: str, version: str, previous: str | None, action: str, who: str,
                   reason: str, forced: bool, extra: dict[str, str]) -> PromotionRecord:
    """Under the registry lock: record the move as pending, move the alias, tag the version, mark the record done.
    A kill anywhere in between leaves a pending record that recover_history completes or abandons."""
    record = _record(tracker, model_name, version, previous, action, who, reason, forced, extra)
    faults.point("history-pending", model_name)
    tracker.client.set_registered_model_alias(model_name, CHAMPION, version)
    faults.point("alias-moved", model_name)
    _finish_move(tracker, record)
    faults.point("history-done", model_name)
    return record


def _finish_move(tracker: Tracker, record: PromotionRecord) -> None:
    """After the alias moved: the challenger alias leaves the new champion, the version says who/why/when, and
    the record is done. Every step is idempotent (recovery may repeat them)."""
    name, version = record.model_name, record.version
    waiting = version_by_alias(tracker, name, CHALLENGER)
    if waiting is not None and str(waiting.version) == version:
        tracker.client.delete_registered_model_alias(name, CHALLENGER)
    for k, v in {PROMOTED_BY_TAG: record.promoted_by, PROMOTED_AT_TAG: record.at, PROMOTION_REASON_TAG: record.reason,
                 PREVIOUS_CHAMPION_TAG: record.previous or "", FORCED_TAG: str(record.forced).lower(),
                 PROMOTION_RUN_TAG: record.record_run_id}.items():
        tracker.client.set_model_version_tag(name, version, k, v)
    tracker.client.set_tag(record.record_run_id, STATE_TAG, "done")
    tracker.client.set_terminated(record.record_run_id)


def _record(tracker: Tracker, model_name: str, version: str, previous: str | None, action: str, who: str,
            reason: str, forced: bool, extra: dict[str, str]) -> PromotionRecord:
    seq = len(history(tracker, model_name, ("done", "pending", "abandoned"))) + 1  # under the lock: a total order
    at = datetime.now(UTC).isoformat(timespec="seconds")
    tags = {MODEL_NAME_TAG: model_name, VERSION_TAG: version, PREVIOUS_CHAMPION_TAG: previous or "",
            ACTION_TAG: action, PROMOTED_BY_TAG: who, REASON_TAG: reason, FORCED_TAG: str(forced).lower(),
            PROMOTED_AT_TAG: at, PROMOTION_SEQ_TAG: str(seq), STATE_TAG: "pending", **extra}
    run = tracker.client.create_run(_history_experiment(tracker), run_name=f"{action} {model_name} v{version}",
                                    tags=tags)
    return PromotionRecord(model_name, version, previous, action, who, reason, forced, at, seq, run.info.run_id)


def recover_history(tracker: Tracker, model_name: str) -> list[str]:
    """Under the registry lock: finish each pending move whose alias did move (a kill after the alias), abandon
    each whose alias did not (a kill before it). Returns what was done."""
    notes = []
    for record in history(tracker, model_name, ("pending",)):
        current = champion(tracker, model_name)
        if current is not None and str(current.version) == record.version:
            _finish_move(tracker, record)
            notes.append(f"{model_name}: finished the interrupted move of champion to v{record.version}")
        else:
            why = f"interrupted before the alias moved; the champion stayed {_v(record.previous)}"
            tracker.client.set_tag(record.record_run_id, STATE_TAG, "abandoned")
            tracker.client.set_tag(record.record_run_id, ABANDONED_REASON_TAG, why)
            tracker.client.set_terminated(record.record_run_id, "KILLED")
            notes.append(f"{model_name}: abandoned the move of champion to v{record.version}: {why}")
    return notes


def release(tracker: Tracker, model_name: str, version: str, policy: str, lock_path: Path, who: str, reason: str,
            tags: dict[str, str] | None = None) -> tuple[str, str, str | None] | None:
    """A passed version's promotion step, once: `auto` makes it champion if the champion is still the version its
    gate compared against (else it waits as challenger, with the reason); `manual` makes it challenger. Marks it
    done. Returns (alias, note, the champion it replaced), or None when its step had already run (or it is not
    pending)."""
    with registry_lock(lock_path):
        recover_history(tracker, model_name)
        mv = get_version(tracker, model_name, version)
        if mv is None or mv.tags.get(RELEASE_TAG) != "pending" or mv.tags.get(GATE_TAG) != "passed":
            return None
        current = champion(tracker, model_name)
        previous = str(current.version) if current is not None else None
        now, compared = _v(previous), mv.tags.get(GATE_CHAMPION_TAG, "none")
        if previous == version:  # its move finished before the kill that stopped this step: only the mark is left
            alias, note = CHAMPION, "champion"
        elif policy == "manual":
            alias, note = CHALLENGER, "waits for a person (promotion: manual)"
        elif now != compared:
            alias, note = CHALLENGER, (f"not made champion: the champion is {now}, but its gate compared it with "
                                       f"{compared}; promote it by hand after comparing")
        else:
            _move_champion(tracker, model_name, version, previous, "auto", who, reason, False, tags or {})
            alias, note = CHAMPION, f"champion (replaced {now})"
        if alias == CHALLENGER:
            set_challenger(tracker, model_name, version)
        tracker.client.set_model_version_tag(model_name, version, RELEASE_NOTE_TAG, note)
        tracker.client.set_model_version_tag(model_name, version, RELEASE_TAG, "done")
        return alias, note, previous if alias == CHAMPION and previous != version else None


def abandon_release(tracker: Tracker, model_name: str, version: str, why: str) -> None:
    tracker.client.set_model_version_tag(model_name, version, RELEASE_NOTE_TAG, f"abandoned: {why}")
    tracker.client.set_model_version_tag(model_name, version, RELEASE_TAG, "abandoned")


def pending_releases(tracker: Tracker) -> list:
    """Every passed version whose promotion step has not run (a run killed or failed between its registration
    and its promotion), oldest first."""
    found = tracker.client.search_model_versions(f"tags.`{RELEASE_TAG}` = 'pending'")
    return sorted(found, key=lambda v: (v.name, int(v.version)))


def pending_moves(tracker: Tracker) -> set[str]:
    """The models with a history record still pending."""
    runs = tracker.client.search_runs([_history_experiment(tracker)], f"tags.`{STATE_TAG}` = 'pending'",
                                      max_results=10_000)
    return {r.data.tags[MODEL_NAME_TAG] for r in runs}


def previous_champion(tracker: Tracker, model_name: str) -> str:
    """The version that was champion before the current one took over (walking back past earlier rollbacks)."""
    current = champion(tracker, model_name)
    if current is None:
        raise PromotionRefused(f"{model_name}: no champion to roll back from")
    records = [r for r in history(tracker, model_name) if r.version == str(current.version) and r.action != "rollback"]
    previous = records[-1].previous if records else current.tags.get(PREVIOUS_CHAMPION_TAG)
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
