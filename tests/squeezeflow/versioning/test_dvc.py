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
