"""Retention on a real MLflow registry (SQLite) and real DVC object folders: what gc removes, and what it never
removes (the champion, the challenger, every version a rollback can reach, the newest N, anything a kept version's
lineage or the workspace names)."""

import json

import numpy as np

from squeezeflow.retention import Removed, delete_versions, doomed_versions, lineage_md5s, named_objects, sweep_objects
from squeezeflow.tracking import champion, get_version
from squeezeflow.tracking.promotion import promote_version, rollback, set_challenger
from squeezeflow.tracking.registry import register
from tests.squeezeflow.tracking.test_registry import onnx_file

NAME = "sf-gc-cpu"


def registered(tracker, tmp_path, n: int, with_files: set[int]) -> list[str]:
    """n versions; those in `with_files` logged as MLflow models (files on disk), the others registry entries only."""
    out = []
    for i in range(n):
        tags = {"squeezeflow.gate": "passed", "squeezeflow.dvc.teacher": f"{i:032x}"}
        if i in with_files:
            run = tracker.stage_run(tracker.parent_run(f"r{i}", {}, {}), f"r{i}", "gate", {}, {})
            mv = register(tracker, run, NAME, onnx_file(tmp_path / f"m{i}.onnx", seed=i),
                          np.zeros((2, 4), np.float32), tags)
        else:
            mv = tracker.client.create_model_version(NAME, source=(tmp_path / "model").as_uri(), tags=tags)
        out.append(str(mv.version))
    return out


def test_gc_keeps_champion_challenger_rollback_chain_and_the_newest(tracker, tmp_path):
    lock = tmp_path / "registry.lock"
    v = registered(tracker, tmp_path, 8, with_files={0, 2, 6})
    promote_version(tracker, NAME, v[1], "a", "first", lock)
    promote_version(tracker, NAME, v[3], "a", "second", lock)
    promote_version(tracker, NAME, v[4], "a", "third", lock)
    rollback(tracker, NAME, "b", "regressed", lock)  # champion v3 again; v4 stays reachable in the history
    set_challenger(tracker, NAME, v[5])
    gone, kept = doomed_versions(tracker, NAME, keep=1)
    assert [str(m.version) for m in gone] == [v[0], v[2], v[6]]  # never promoted, not waiting, not the newest
    assert {str(m.version) for m in kept} == {v[1], v[3], v[4], v[5], v[7]}
    files = [tracker.client.get_logged_model(m.source.removeprefix("models:/")).artifact_location for m in gone]
    removed = Removed()
    delete_versions(tracker, gone, dry_run=False, removed=removed)
    assert removed.versions == [f"{NAME} v{x}" for x in (v[0], v[2], v[6])] and removed.model_bytes > 0
    assert all(get_version(tracker, NAME, x) is None for x in (v[0], v[2], v[6]))
    assert not any((tmp_path / f.removeprefix("file://")).exists() for f in files)
    assert str(champion(tracker, NAME).version) == v[3]
    assert rollback(tracker, NAME, "c", "back again", lock).version == v[1]  # the chain still walks back
    assert lineage_md5s(kept) == {f"{int(x) - 1:032x}" for x in (v[1], v[3], v[4], v[5], v[7])}


def test_dvc_objects_nothing_names_are_swept_and_named_directories_keep_their_files(tmp_path):
    store = tmp_path / "files" / "md5"

    def put(md5: str, data: bytes) -> None:
        (store / md5[:2]).mkdir(parents=True, exist_ok=True)
        (store / md5[:2] / md5[2:]).write_bytes(data)

    keep_file, lost_file, dir_file = "a" * 32, "b" * 32, "c" * 32
    manifest = "d" * 32 + ".dir"
    for md5 in (keep_file, lost_file, dir_file):
        put(md5, b"x" * 1000)
    put(manifest, json.dumps([{"md5": dir_file, "relpath": "model.pt"}]).encode())
    timings = tmp_path / "squeezeflow" / "timings" / "teacher"  # a fanned-out stage's timings, by its output
    timings.mkdir(parents=True)
    (timings / f"{manifest}.json").write_text("{}")
    (timings / f"{lost_file}.json").write_text("{}")
    keep = named_objects({keep_file, manifest}, [store])
    assert keep == {keep_file, manifest, dir_file}
    assert sweep_objects(store, keep, dry_run=True) == (2, 1002) and (store / "bb").exists()
    assert sweep_objects(store, keep, dry_run=False) == (2, 1002)
    assert sorted(p.parent.name + p.name for p in store.rglob("*") if p.is_file()) == sorted(keep)
    assert [p.name for p in timings.iterdir()] == [f"{manifest}.json"]
