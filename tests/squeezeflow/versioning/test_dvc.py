import shutil
import subprocess
from pathlib import Path

import pytest

from squeezeflow.versioning import DvcStore

PROJECT = Path(__file__).resolve().parents[3]


def _stage(root: Path, value: int) -> None:
    (root / "params.yaml").write_text(f"value: {value}\n")
    (root / "dvc.yaml").write_text("stages:\n  make:\n    cmd: 'true'\n    params: [value]\n    outs: [out]\n")


@pytest.mark.parametrize("scm", ["git", "none"])
def test_commit_records_detects_changes_and_pushes_to_the_remote(isolated_env, scm):
    root = isolated_env / "repo"
    root.mkdir()
    if scm == "git":  # as in the project checkout, with its .gitignore (DVC refuses a git-ignored dvc.lock)
        subprocess.run(["git", "init", "-q", str(root)], check=True)
        shutil.copy(PROJECT / ".gitignore", root / ".gitignore")
    store = DvcStore(root, root / ".state")
    store.ensure()
    _stage(root, 1)
    assert not store.up_to_date("make")
    (root / "out").mkdir()
    (root / "out" / "a.txt").write_text("hello")
    store.commit("make")
    assert store.up_to_date("make")
    md5 = store.hashes()["make"]
    assert md5.endswith(".dir")
    store.push("make")
    remote = root / ".state" / "dvc-remote"
    assert any(p.is_file() for p in remote.rglob("*"))
    _stage(root, 2)  # a param change makes the stage stale
    assert not store.up_to_date("make")
    _stage(root, 1)
    (root / "out" / "a.txt").write_text("changed")  # so does an edited output
    assert not store.up_to_date("make")


def test_push_repairs_what_the_remote_lacks_though_dvc_push_sees_nothing_to_do(isolated_env):
    """A push cut short leaves a directory's manifest without all its files (or a file was lost on the remote):
    `dvc push` trusts the manifest; our push asks the remote for every object and uploads what is missing."""
    root = isolated_env / "repo"
    root.mkdir()
    store = DvcStore(root, root / ".state")
    store.ensure()
    _stage(root, 1)
    (root / "out").mkdir()
    for name in ("a.txt", "b.txt", "c.txt"):
        (root / "out" / name).write_text(name * 100)
    store.commit("make")
    assert len(store.missing_on_remote("make")) == 4  # three files and the manifest
    assert store.push("make") == 4 and store.missing_on_remote("make") == []
    remote = root / ".state" / "dvc-remote"
    lost = next(p for p in remote.rglob("*") if p.is_file() and not p.name.endswith(".dir"))
    lost.unlink()
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        repo.push()  # DVC's own push: the manifest is there, so it uploads nothing
    assert not lost.exists() and len(store.missing_on_remote("make")) == 1
    assert store.push("make") == 1 and lost.exists() and store.push("make") == 0


def test_a_dep_moved_by_a_commit_is_seen_from_dvc_lock_as_dvc_status_sees_it(isolated_env):
    """The stage runner asks dvc.lock, not `dvc status`, whether a stage downstream of one it just committed must
    rerun; both must agree. And what our commit hands DVC's parser is what parsing the written file gives."""
    import yaml
    from ruamel.yaml import YAML

    root = isolated_env / "repo"
    root.mkdir()
    store = DvcStore(root, root / ".state")
    store.ensure()
    (root / "params.yaml").write_text("value: 1\n")
    (root / "dvc.yaml").write_text("stages:\n  a:\n    cmd: 'true'\n    params: [value]\n    outs: [a]\n"
                                   "  b:\n    cmd: 'true'\n    deps: [a]\n    outs: [b]\n")
    assert store.deps_moved("b")  # never committed
    for name in ("a", "b"):
        (root / name).mkdir()
        (root / name / "f.txt").write_text(name)
        store.commit(name)
    assert not store.deps_moved("b") and store.up_to_date("b")
    (root / "a" / "f.txt").write_text("a, made again differently")
    store.commit("a")
    assert store.deps_moved("b") and not store.up_to_date("b")
    (root / "a" / "f.txt").write_text("a")  # made again as before: the same hash b read
    store.commit("a")
    assert not store.deps_moved("b") and store.up_to_date("b")

    text = (root / "dvc.lock").read_text()
    assert store.lock() == yaml.safe_load(text)["stages"]
    handed = store._parsed[str(root / "dvc.lock")]
    assert handed[0] == text and handed[1] == YAML(typ="safe").load(text)
