from __future__ import annotations

import copy
import os
from contextlib import chdir, contextmanager
from pathlib import Path

import yaml

from squeezeflow.shims import swapped

DEFAULT_REMOTE = "local"
SHARED_REMOTE = "shared"
REMOTE_ENV = "SQUEEZEFLOW_DVC_REMOTE"  # a remote shared by every worker (a folder, s3://...): set, it is the default


class DvcStore:
    """A thin layer over `dvc.repo.Repo`. DVC holds a repo-wide lock: callers keep these calls serial."""

    def __init__(self, root: Path, state_dir: Path, remote_url: str | None = None):
        self.root = Path(root)
        url = remote_url or os.environ.get(REMOTE_ENV) or None
        # A local folder given relative is the caller's, not the repo's: DVC would read it against .dvc/.
        self.remote_url = str(Path(url).resolve()) if url and "://" not in url else url
        os.environ.setdefault("DVC_NO_ANALYTICS", "1")
        os.environ.setdefault("DVC_SITE_CACHE_DIR", str(Path(state_dir) / "dvc-site"))
        self.default_remote_dir = Path(state_dir) / "dvc-remote"
        self._lock_cache: tuple[tuple, dict] | None = None  # (dvc.lock's stat, its stages), read-only
        self._parsed: dict[str, tuple[str, object]] = {}  # path -> (text, DVC's parse of it): see _memo_yaml

    @contextmanager
    def _repo(self):
        import logging

        import dvc.utils.serialize._yaml as dvc_yaml
        import dvc.utils.strictyaml as dvc_strictyaml
        from dvc.repo import Repo

        logging.getLogger("dvc").setLevel(logging.WARNING)  # no "Updating lock file" chatter per stage

        memo = _memo_yaml(dvc_yaml.parse_yaml, self._parsed)
        # DVC resolves some paths against the current directory: work from the repo root.
        shared = {"core": {"remote": SHARED_REMOTE}, "remote": {SHARED_REMOTE: {"url": self.remote_url}}} \
            if self.remote_url else None  # over the repo's own config, never written into it
        with (chdir(self.root), Repo(str(self.root), config=shared) as repo,
              swapped(dvc_strictyaml, "parse_yaml", memo), swapped(dvc_yaml, "parse_yaml", memo)):
            yield repo

    def ensure(self) -> None:
        """`dvc init` (without git if the folder is not a git repo) and a local default remote if none is set."""
        from dvc.repo import Repo

        if not (self.root / ".dvc").is_dir():
            with chdir(self.root):
                Repo.init(str(self.root), no_scm=not (self.root / ".git").exists())
        with self._repo() as repo:
            if not repo.config["core"].get("remote"):
                with repo.config.edit() as conf:
                    # DVC reads a relative path here against the current directory and stores it relative to
                    # .dvc/: the committed config then stays valid wherever the repo is cloned.
                    url = os.path.relpath(self.default_remote_dir, self.root)
                    conf["remote"][DEFAULT_REMOTE] = {"url": url}
                    conf["core"]["remote"] = DEFAULT_REMOTE

    def remote(self) -> str | None:
        """The URL of the remote this repo pushes to (its configured default, or the shared one), absolute."""
        if self.remote_url:
            return self.remote_url
        if not (self.root / ".dvc").is_dir():
            return None
        with self._repo() as repo:
            name = repo.config["core"].get("remote")
            return str(repo.config["remote"][name]["url"]) if name else None

    def _target(self, stage: str) -> str:
        # DVC resolves targets against the current directory, not the repo: name dvc.yaml absolutely.
        return f"{self.root / 'dvc.yaml'}:{stage}"

    def changed_stages(self) -> set[str]:
        """Every stage `dvc status` reports changed, in one pass (DVC loads dvc.yaml once for all of them)."""
        with self._repo() as repo:
            return {key.rsplit(":", 1)[-1] for key in repo.status()}

    def up_to_date(self, stage: str) -> bool:
        """True when dvc.lock records this stage with the current deps, params and outs."""
        with self._repo() as repo:
            return not repo.status(targets=[self._target(stage)])

    def commit(self, stage: str) -> None:
        """Record the outputs we just produced in dvc.lock and the DVC cache (the stage ran in-process). dvc.lock is
        rewritten with libyaml rather than DVC's round-trip YAML (a generated file: no comments to keep), the same
        data, written to a temp file and renamed: ~9x less time per commit on a 40-stage graph."""
        import dvc.dvcfile

        with self._repo() as repo, swapped(dvc.dvcfile, "modify_yaml", _modify_lock(dvc.dvcfile.modify_yaml, self)):
            repo.commit(self._target(stage), force=True)

    def deps_moved(self, stage: str) -> bool:
        """Whether a dep of the stage that is another stage's output now differs from what dvc.lock recorded the
        stage reading (or dvc.lock records no such stage), from dvc.lock alone: no `dvc status`."""
        stages = self._lock_stages()
        if stage not in stages:
            return True
        outs = {o["path"]: o.get("md5") for entry in stages.values() for o in entry.get("outs", [])}
        return any(d["path"] in outs and outs[d["path"]] != d.get("md5") for d in stages[stage].get("deps", []))

    def push(self, stage: str) -> int:
        """Upload every object of the stage's recorded outputs that the remote lacks, each directory's manifest
        after its files; returns how many. Asks the remote itself, on every run (reused stages too): `dvc push`
        takes a directory manifest on the remote to mean its files are there, so a push cut short (a kill, a
        lost connection) or a file lost on the remote would never be repaired."""
        from squeezeflow import faults

        with self._repo() as repo:
            remote, local = repo.cloud.get_remote_odb(None, "push"), repo.cache.local
            missing = self._missing(remote, local, stage)
            for i, oid in enumerate(missing):
                remote.add(local.oid_to_path(oid), local.fs, oid)
                if i == 0 and len(missing) > 1:
                    faults.point("dvc-pushing", stage)
            return len(missing)

    def fetch_output(self, stage: str, md5: str, dest: Path) -> None:
        """Make `dest` the output recorded as `md5` (a file or a `.dir` manifest), from the local cache or else the
        remote (a worker's step pulling an input another worker made); swapped in whole (squeezeflow.io)."""
        import json
        import shutil

        from squeezeflow.io import atomic_dir

        with self._repo() as repo:
            remote, local = repo.cloud.get_remote_odb(None, "pull"), repo.cache.local

            def have(oids: list[str]) -> None:
                missing = [o for o in oids if not local.exists(o)]
                absent = set(missing) - set(remote.oids_exist(missing)) if missing else set()
                if absent:
                    raise FileNotFoundError(f"{stage}: output {md5} is not on the DVC remote {self.remote_url} "
                                            f"(missing {sorted(absent)[:3]}): was its step's push cut short?")
                for oid in missing:
                    local.add(remote.oid_to_path(oid), remote.fs, oid)

            have([md5])
            entries = json.loads(Path(local.oid_to_path(md5)).read_text()) if md5.endswith(".dir") else None
            if entries is None:
                raise ValueError(f"{stage}: output {md5} is a file; stage outputs are folders")
            have([e["md5"] for e in entries])
            with atomic_dir(dest) as tmp:
                for e in entries:
                    (tmp / e["relpath"]).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(local.oid_to_path(e["md5"]), tmp / e["relpath"])

    def restore(self, stage: str) -> bool:
        """Restore the stage's output from DVC's run cache (this repo's, or the remote's entry for the same
        command, deps and params): True when it was there (outputs checked out, dvc.lock not yet written: commit)."""
        from dvc.repo import lock_repo
        from dvc.stage.cache import RunCacheNotFoundError

        with self._repo() as repo, lock_repo(repo):  # checking out writes the workspace: DVC's repo lock
            st = repo.stage.get_target(self._target(stage))
            key = self._run_key(st)
            if key is None:
                return False
            self._copy_runs(repo, key, to_remote=False)
            try:
                repo.stage_cache.restore(st, pull=True)
            except RunCacheNotFoundError:
                return False
            return True

    def push_run_cache(self, stage: str) -> int:
        """Upload the stage's run-cache entry (command, deps and params -> outputs) to the remote: what one
        worker computed, every other restores."""
        with self._repo() as repo:
            key = self._run_key(repo.stage.get_target(self._target(stage)))
            return self._copy_runs(repo, key, to_remote=True) if key else 0

    @staticmethod
    def _run_key(st) -> str | None:
        from dvc.stage.cache import _can_hash, _get_stage_hash

        st.save_deps()  # hashes of the deps as they are in this workspace
        return _get_stage_hash(st) if _can_hash(st) else None

    def _copy_runs(self, repo, key: str, to_remote: bool) -> int:
        """Copy the run-cache entries of one key between the local cache and the remote (DVC's `push --run-cache`
        copies every entry of every stage)."""
        from dvc_objects.fs.generic import copy

        local = repo.cache.legacy
        remote = repo.cloud.get_remote_odb(None, "push --run-cache", hash_name="md5-dos2unix")
        src, dst = (local, remote) if to_remote else (remote, local)
        folder = src.fs.join(src.path, "runs", key[:2], key)
        if not src.fs.exists(folder):
            return 0
        done = 0
        for f in src.fs.find(folder):
            target = dst.fs.join(dst.path, "runs", key[:2], key, src.fs.name(f))
            if not dst.fs.exists(target):
                dst.fs.makedirs(dst.fs.parent(target), exist_ok=True)
                copy(src.fs, f, dst.fs, target)
                done += 1
        return done

    def put_file(self, rel: str, path: Path) -> None:
        """A small file beside the remote's objects (`squeezeflow/<rel>`): a stage's timings, keyed by its output."""
        with self._repo() as repo:
            remote = repo.cloud.get_remote(None, "push")
            target = remote.fs.join(remote.path, "squeezeflow", *rel.split("/"))
            remote.fs.makedirs(remote.fs.parent(target), exist_ok=True)
            remote.fs.put_file(str(path), target)

    def get_file(self, rel: str, path: Path) -> bool:
        with self._repo() as repo:
            remote = repo.cloud.get_remote(None, "pull")
            source = remote.fs.join(remote.path, "squeezeflow", *rel.split("/"))
            if not remote.fs.exists(source):
                return False
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            remote.fs.get_file(source, str(tmp))
            os.replace(tmp, path)
            return True

    def object_stores(self) -> dict[str, Path]:
        """The object folders on this machine: the cache, and the default remote when it is a local folder (a
        cloud remote's retention is its own bucket policy)."""
        with self._repo() as repo:
            stores = {"DVC cache": Path(repo.cache.local.path)}
            try:
                remote = repo.cloud.get_remote_odb(None, "push")
            except Exception:  # noqa: BLE001 - no remote configured
                return stores
            if remote.fs.protocol in ("local", "file"):
                stores["DVC remote"] = Path(remote.path)
            return stores

    def missing_on_remote(self, stage: str) -> list[str]:
        """The objects of the stage's recorded outputs that the remote does not hold (asked of the remote)."""
        with self._repo() as repo:
            return self._missing(repo.cloud.get_remote_odb(None, "push"), repo.cache.local, stage)

    def _missing(self, remote, local, stage: str) -> list[str]:
        import json

        oids: list[str] = []
        for out in self._lock_stages().get(stage, {}).get("outs", []):
            md5 = out.get("md5")
            if not md5:
                continue
            if md5.endswith(".dir"):
                oids += [entry["md5"] for entry in json.loads(Path(local.oid_to_path(md5)).read_text())]
            oids.append(md5)  # a directory's manifest last: its presence must mean its files are there
        present = set(remote.oids_exist(oids)) if oids else set()
        return [oid for oid in oids if oid not in present]

    def lock(self) -> dict:
        """dvc.lock's stages (a copy: the caller may change it)."""
        return copy.deepcopy(self._lock_stages())

    def _lock_stages(self) -> dict:
        """dvc.lock's stages, not to be changed. Read many times per stage (lineage tags, metrics): parsed again only
        when the file changed on disk, and not after our own commit wrote it (`_wrote_lock`)."""
        path = self.root / "dvc.lock"
        try:
            key = _stat_key(path)
        except FileNotFoundError:
            return {}
        if self._lock_cache is None or self._lock_cache[0] != key:
            loaded = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
            self._lock_cache = (key, loaded.get("stages", {}))
        return self._lock_cache[1]

    def _wrote_lock(self, path: Path, text: str, data: dict) -> None:
        """Our commit just wrote dvc.lock: what it wrote is what anyone reading it would parse."""
        self._lock_cache = (_stat_key(path), copy.deepcopy(data.get("stages", {})))
        self._parsed[os.path.abspath(path)] = (text, copy.deepcopy(data))

    def hashes(self) -> dict[str, str]:
        """stage -> md5 of its output, as recorded in dvc.lock."""
        return {name: entry["outs"][0]["md5"] for name, entry in self._lock_stages().items() if entry.get("outs")}


def _stat_key(path: Path) -> tuple:
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


def _memo_yaml(parse, parsed: dict):
    """DVC's `parse_yaml`, remembering the last parse of each file by its text: DVC parses dvc.yaml, dvc.lock and
    every params file again in each status and commit (pure-Python YAML, ~40% of DVC's time in a run); within a
    run only dvc.lock changes, and our own commit hands over what it wrote. Round-trip parses (kept for editing)
    are DVC's own."""
    def parse_yaml(text, path, typ="safe"):
        if typ != "safe":
            return parse(text, path, typ=typ)
        key = os.path.abspath(os.fspath(path))
        if key not in parsed or parsed[key][0] != text:
            parsed[key] = (text, parse(text, path, typ=typ))
        return copy.deepcopy(parsed[key][1])

    return parse_yaml


def _modify_lock(original, store: DvcStore):
    """DVC's `modify_yaml`, for dvc.lock through ruamel's safe YAML on libyaml (YAML 1.2, as DVC reads it: the same
    values and quoting) and an atomic rename, not its round-trip YAML; any other file as DVC does. The lock as
    last parsed or written is reused, and what is written is handed to the store's caches."""
    import io

    from ruamel.yaml import YAML

    @contextmanager
    def modify(path, fs=None):
        if Path(path).name != "dvc.lock":
            with original(path, fs=fs) as data:
                yield data
            return
        path, yml = Path(path), YAML(typ="safe", pure=False)
        yml.default_flow_style = False
        data = {}
        if path.exists():
            text = path.read_text()
            known = store._parsed.get(os.path.abspath(path))
            data = copy.deepcopy(known[1]) if known and known[0] == text else (yml.load(text) or {})
        yield data
        data, out = _plain(data), io.StringIO()
        yml.dump(data, out)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(out.getvalue())
        os.replace(tmp, path)
        store._wrote_lock(path, out.getvalue(), data)

    return modify


def _plain(value):
    """DVC's lock entries hold OrderedDicts: plain dicts (insertion-ordered) dump as plain YAML mappings."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
