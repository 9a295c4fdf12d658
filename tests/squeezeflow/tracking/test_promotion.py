"""Promotion by a person against a real MLflow registry (SQLite): approve, refuse, force, roll back, race."""

import multiprocessing as mp

import pytest

from squeezeflow.tracking import CHALLENGER, champion, get_version, version_by_alias
from squeezeflow.tracking.promotion import PromotionRefused, history, promote_version, rollback, set_challenger
from squeezeflow.tracking.registry import GATE_TAG

NAME = "sf-digits-cpu-fp32"


def add_versions(tracker, tmp_path, gates) -> list[str]:
    """Versions with the given gate verdicts (None: never gated), as the pipeline registers them."""
    from mlflow.exceptions import MlflowException

    try:
        tracker.client.create_registered_model(NAME)
    except MlflowException:
        pass
    out = []
    for gate in gates:
        tags = {} if gate is None else {GATE_TAG: gate}
        mv = tracker.client.create_model_version(NAME, source=(tmp_path / "model").as_uri(), tags=tags)
        out.append(str(mv.version))
    return out


@pytest.fixture
def lock(tmp_path):
    return tmp_path / "locks" / "registry.lock"


def test_a_person_promotes_a_passing_version_and_it_is_recorded(tracker, tmp_path, lock):
    v1, v2 = add_versions(tracker, tmp_path, ["passed", "passed"])
    promote_version(tracker, NAME, v1, "squeezeflow (auto)", "gate passed", lock, action="auto")
    set_challenger(tracker, NAME, v2)
    rec = promote_version(tracker, NAME, v2, "alice", "reviewed the gate report", lock)
    assert str(champion(tracker, NAME).version) == v2 and rec.previous == v1
    assert version_by_alias(tracker, NAME, CHALLENGER) is None  # the challenger became champion
    tags = get_version(tracker, NAME, v2).tags
    assert tags["squeezeflow.promoted_by"] == "alice"
    assert tags["squeezeflow.promotion_reason"] == "reviewed the gate report"
    assert tags["squeezeflow.previous_champion"] == v1 and tags["squeezeflow.forced"] == "false"
    assert tags["squeezeflow.promoted_at"].endswith("+00:00")
    assert [(r.version, r.previous, r.action, r.promoted_by) for r in history(tracker, NAME)] == [
        (v1, None, "auto", "squeezeflow (auto)"), (v2, v1, "promote", "alice")]


@pytest.mark.parametrize("gate, word", [("failed", "failed its gate"), (None, "has no gate verdict")])
def test_a_failed_or_ungated_version_is_refused_unless_forced_with_a_reason(tracker, tmp_path, lock, gate, word):
    v1, v2 = add_versions(tracker, tmp_path, ["passed", gate])
    promote_version(tracker, NAME, v1, "alice", "first", lock)
    with pytest.raises(PromotionRefused, match=f"field 'version' = '{v2}': the version {word}; set force: true"):
        promote_version(tracker, NAME, v2, "bob", "looks fine to me", lock)
    with pytest.raises(PromotionRefused, match="field 'reason' = '  ': required"):
        promote_version(tracker, NAME, v2, "bob", "  ", lock, force=True)
    assert str(champion(tracker, NAME).version) == v1 and len(history(tracker, NAME)) == 1
    rec = promote_version(tracker, NAME, v2, "bob", "CI too wide on 360 samples; checked by hand", lock, force=True)
    assert rec.forced and str(champion(tracker, NAME).version) == v2
    assert get_version(tracker, NAME, v2).tags["squeezeflow.forced"] == "true"


@pytest.mark.parametrize("version, who, needle", [
    ("9", "alice", "field 'version' = '9': no such version; known: ['1']"),
    ("1", "", "field 'promoted_by' = '': required"),
])
def test_bad_promotion_input_is_one_clear_error(tracker, tmp_path, lock, version, who, needle):
    add_versions(tracker, tmp_path, ["passed"])
    with pytest.raises(PromotionRefused, match=needle.replace("[", r"\[").replace("]", r"\]")):
        promote_version(tracker, NAME, version, who, "why", lock)
    assert champion(tracker, NAME) is None


def test_rollback_walks_back_through_the_champions(tracker, tmp_path, lock):
    v1, v2, v3 = add_versions(tracker, tmp_path, ["passed"] * 3)
    for v in (v1, v2, v3):
        promote_version(tracker, NAME, v, "ci", f"gate passed ({v})", lock, action="auto")
    assert rollback(tracker, NAME, "carol", "v3 misbehaves on the device", lock).version == v2
    assert rollback(tracker, NAME, "carol", "v2 too", lock).version == v1  # not back to v3
    assert str(champion(tracker, NAME).version) == v1
    with pytest.raises(PromotionRefused, match="has no previous champion"):
        rollback(tracker, NAME, "carol", "again", lock)
    assert [r.action for r in history(tracker, NAME)] == ["auto", "auto", "auto", "rollback", "rollback"]


def _promote_in_another_process(uri, version, lock, barrier, errors):
    from squeezeflow.tracking import Tracker

    tracker = Tracker(uri)
    barrier.wait()
    try:
        promote_version(tracker, NAME, version, f"person-{version}", "at the same moment", lock)
    except Exception as exc:  # noqa: BLE001 - reported to the test
        errors.put(repr(exc))


def test_two_promotions_at_once_leave_one_alias_and_a_complete_history(tracker, tmp_path, lock):
    versions = add_versions(tracker, tmp_path, ["passed"] * 3)
    promote_version(tracker, NAME, versions[0], "ci", "first", lock)
    ctx = mp.get_context("spawn")  # fresh processes: no SQLite connection shared through fork
    errors, barrier = ctx.Queue(), ctx.Barrier(2)
    procs = [ctx.Process(target=_promote_in_another_process, args=(tracker.tracking_uri, v, lock, barrier, errors))
             for v in versions[1:]]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert errors.empty(), errors.get()
    records = history(tracker, NAME)
    assert [r.seq for r in records] == [1, 2, 3]
    assert sorted(r.version for r in records) == sorted(versions)
    for before, after in zip(records, records[1:], strict=False):  # each move saw the one before it: no lost update
        assert after.previous == before.version
    assert str(champion(tracker, NAME).version) == records[-1].version
