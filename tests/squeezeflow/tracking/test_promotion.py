"""Promotion by a person against a real MLflow registry (SQLite): approve, refuse, force, roll back, race."""

import multiprocessing as mp

import pytest

from squeezeflow.tracking import CHALLENGER, champion, get_version, version_by_alias
from squeezeflow.tracking.promotion import (
    RELEASE_TAG,
    ChampionMoved,
    PromotionRefused,
    history,
    promote_version,
    recover_history,
    release,
    rollback,
    set_challenger,
)
from squeezeflow.tracking.schema import GATE_TAG

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


def add_pending(tracker, tmp_path, compared_with: str) -> str:
    """A passed version as the pipeline registers it: its promotion step still to run, its gate's champion named."""
    (v,) = add_versions(tracker, tmp_path, ["passed"])
    for k, value in {RELEASE_TAG: "pending", "squeezeflow.gate_champion": compared_with}.items():
        tracker.client.set_model_version_tag(NAME, v, k, value)
    return v


def test_release_moves_the_champion_only_if_it_is_the_one_the_gate_compared_with(tracker, tmp_path, lock):
    v1 = add_pending(tracker, tmp_path, "none")
    assert release(tracker, NAME, v1, "auto", lock, "squeezeflow (auto)", "gate passed") == (
        "champion", "champion (replaced none)", None)
    assert release(tracker, NAME, v1, "auto", lock, "squeezeflow (auto)", "again") is None  # once only
    v2 = add_pending(tracker, tmp_path, f"v{v1}")
    v3 = add_pending(tracker, tmp_path, f"v{v1}")  # gated against v1 too, but v2 was released first
    assert release(tracker, NAME, v2, "auto", lock, "squeezeflow (auto)", "gate passed")[::2] == ("champion", v1)
    alias, note, _ = release(tracker, NAME, v3, "auto", lock, "squeezeflow (auto)", "gate passed")
    assert alias == CHALLENGER and f"the champion is v{v2}, but its gate compared it with v{v1}" in note
    assert str(champion(tracker, NAME).version) == v2 and str(version_by_alias(tracker, NAME, CHALLENGER).version) == v3
    assert get_version(tracker, NAME, v3).tags[RELEASE_TAG] == "done"
    assert [r.version for r in history(tracker, NAME)] == [v1, v2]
    # a person rolled back meanwhile: the promote job's compare-and-swap refuses too
    with pytest.raises(ChampionMoved, match=f"the champion is v{v2}, not v{v1}"):
        promote_version(tracker, NAME, v3, "alice", "ok", lock, expect=v1)


def test_a_move_interrupted_before_or_after_the_alias_is_abandoned_or_finished(tracker, tmp_path, lock):
    from squeezeflow.tracking.promotion import _record

    v1, v2 = add_versions(tracker, tmp_path, ["passed", "passed"])
    promote_version(tracker, NAME, v1, "alice", "first", lock)
    _record(tracker, NAME, v2, v1, "promote", "bob", "killed before the alias", False, {})  # the alias never moved
    assert [r.version for r in history(tracker, NAME)] == [v1]  # pending: not (yet) what happened
    assert "abandoned" in recover_history(tracker, NAME)[0]
    assert str(champion(tracker, NAME).version) == v1 and [r.version for r in history(tracker, NAME)] == [v1]
    rec = _record(tracker, NAME, v2, v1, "promote", "bob", "killed after the alias", False, {})
    tracker.client.set_registered_model_alias(NAME, "champion", v2)  # ... and the process died here
    assert "finished" in recover_history(tracker, NAME)[0]
    assert [r.version for r in history(tracker, NAME)] == [v1, v2] and history(tracker, NAME)[-1].seq == rec.seq
    assert get_version(tracker, NAME, v2).tags["squeezeflow.promotion_run_id"] == rec.record_run_id
    assert recover_history(tracker, NAME) == []
