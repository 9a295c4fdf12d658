"""Retention for years of scheduled runs: `squeezeflow gc` (and the `gc` job, on the params.yaml `retention:`
block) deletes registered versions nobody can deploy again, with their model files, and DVC objects nothing
names any more. Never the champion, the challenger, a version a rollback can reach (every earlier champion), or
the newest `keep` versions of a model; never an object the workspace's dvc.lock or a kept version's lineage names.
It says what it removed (or, with `dry_run`, would remove)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from squeezeflow.tracking.promotion import history
from squeezeflow.tracking.registry import CHALLENGER, CHAMPION, version_by_alias, versions
from squeezeflow.tracking.schema import DVC_TAG
from squeezeflow.tracking.tracker import Tracker


@dataclass
class Removed:
    versions: list[str] = field(default_factory=list)  # "<model> v<N>"
    model_bytes: int = 0
    objects: dict[str, int] = field(default_factory=dict)  # DVC object store (cache, remote) -> objects removed
    object_bytes: dict[str, int] = field(default_factory=dict)

    def lines(self, dry_run: bool) -> list[str]:
        verb = "would remove" if dry_run else "removed"
        out = [f"{verb} {len(self.versions)} model version(s) ({_mb(self.model_bytes)} of model files)"
               + (f": {', '.join(self.versions[:20])}" + (" ..." if len(self.versions) > 20 else "")
                  if self.versions else "")]
        for store, count in self.objects.items():
            out.append(f"{verb} {count} DVC object(s) from the {store} ({_mb(self.object_bytes[store])})")
        return out


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB"


def protected(tracker: Tracker, model_name: str) -> dict[str, str]:
    """version -> why it is kept: champion, challenger, or reachable by rollback (an earlier champion)."""
    keep = {}
    for record in history(tracker, model_name):
        keep[record.version] = "an earlier champion (rollback can reach it)"
        if record.previous:
            keep[record.previous] = "an earlier champion (rollback can reach it)"
    for alias in (CHALLENGER, CHAMPION):
        mv = version_by_alias(tracker, model_name, alias)
        if mv is not None:
            keep[str(mv.version)] = alias
    return keep


def doomed_versions(tracker: Tracker, model_name: str, keep: int) -> tuple[list, list]:
    """(versions to delete, versions kept), oldest first."""
    all_versions = versions(tracker, model_name)
    safe = protected(tracker, model_name)
    newest = {str(v.version) for v in all_versions[-keep:]} if keep > 0 else set()
    gone = [v for v in all_versions if str(v.version) not in safe and str(v.version) not in newest]
    kept = [v for v in all_versions if v not in gone]
    return gone, kept


def _model_files(tracker: Tracker, mv) -> Path | None:
    """The folder of the logged model a version was registered from, when it is on this machine."""
    from urllib.parse import urlparse

    source = str(mv.source or "")
    if not source.startswith("models:/m-"):
        return None
    try:
        location = tracker.client.get_logged_model(source.removeprefix("models:/")).artifact_location
    except Exception:  # noqa: BLE001 - already gone
        return None
    parsed = urlparse(location)
    path = Path(parsed.path) if parsed.scheme in ("file", "") else None
    return path.parent if path is not None and path.name == "artifacts" else path


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def delete_versions(tracker: Tracker, doomed: list, dry_run: bool, removed: Removed) -> None:
    for mv in doomed:
        files = _model_files(tracker, mv)
        removed.versions.append(f"{mv.name} v{mv.version}")
        removed.model_bytes += _size(files) if files else 0
        if dry_run:
            continue
        tracker.client.delete_model_version(mv.name, str(mv.version))
        if str(mv.source or "").startswith("models:/m-"):
            try:
                tracker.client.delete_logged_model(str(mv.source).removeprefix("models:/"))
            except Exception:  # noqa: BLE001 - the registry entry is gone; its files go below
                pass
        if files is not None:
            shutil.rmtree(files, ignore_errors=True)


def named_objects(md5s: set[str], manifests: list[Path]) -> set[str]:
    """The md5s and, for each directory manifest found in one of the object stores, the files it lists."""
    out = set(md5s)
    for md5 in md5s:
        if not md5.endswith(".dir"):
            continue
        for store in manifests:
            path = store / md5[:2] / md5[2:]
            if path.is_file():
                out |= {e["md5"] for e in json.loads(path.read_text())}
                break
    return out


def sweep_objects(store: Path, keep: set[str], dry_run: bool) -> tuple[int, int]:
    """Remove the objects of a DVC object store (`.../files/md5`) that `keep` does not name, and the stage timings
    kept beside a shared remote's objects for outputs no longer kept (`squeezeflow/timings/<stage>/<md5>.json`,
    squeezeflow.fanout)."""
    if not store.is_dir():
        return 0, 0
    objects = [(obj, prefix.name + obj.name) for prefix in store.iterdir() if prefix.is_dir()
               for obj in prefix.iterdir()]
    side = store.parent.parent / "squeezeflow"
    timings = [(f, f.name.removesuffix(".json")) for f in side.glob("timings/*/*.json")]
    count = size = 0
    for path, md5 in objects + timings:
        if path.is_file() and md5 not in keep:
            count, size = count + 1, size + path.stat().st_size
            if not dry_run:
                path.unlink()
    return count, size


def lineage_md5s(kept: list) -> set[str]:
    return {value for mv in kept for key, value in mv.tags.items() if key.startswith(DVC_TAG) and value}


def collect(tracker: Tracker, model_prefix: str, keep: int, stores: dict[str, Path], workspace_md5s: set[str],
            lock_path: Path, dry_run: bool = False) -> Removed:
    """Every registered model named `<model_prefix>-...`: its doomed versions deleted (under the registry lock),
    then each DVC object store swept of what neither the workspace nor a kept version names."""
    from squeezeflow.tracking.promotion import registry_lock

    removed, kept_all = Removed(), []
    with registry_lock(lock_path):
        for model in tracker.client.search_registered_models(f"name LIKE '{model_prefix}-%'"):
            gone, kept = doomed_versions(tracker, model.name, keep)
            delete_versions(tracker, gone, dry_run, removed)
            kept_all += kept
    wanted = named_objects(workspace_md5s | lineage_md5s(kept_all), list(stores.values()))
    for name, store in stores.items():
        removed.objects[name], removed.object_bytes[name] = sweep_objects(store, wanted, dry_run)
    return removed
