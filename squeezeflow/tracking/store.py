"""A new SQLite tracking store, started as a copy of an empty one.

MLflow makes a SQLite store's tables by running every one of its schema migrations: about a second, paid by the
first run on every fresh workspace (and by every test that makes one). The first empty store this MLflow version
makes is kept in the user's cache folder, and a new store starts as a copy of it. If that fails (no cache folder, a
full disk), MLflow makes the store itself, as before."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
from pathlib import Path

from squeezeflow.io import atomic_path


def seed_sqlite_store(db: Path) -> bool:
    """Start the store at `db` (absent) as a copy of the empty one; False: left to MLflow."""
    if db.exists():
        return False
    try:
        template = _empty_store()
        with atomic_path(db) as tmp:
            shutil.copyfile(template, tmp)
            with contextlib.closing(sqlite3.connect(tmp)) as conn, conn:
                # where MLflow would have put the Default experiment's artifacts, had it made this store here
                conn.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
                             (str(Path.cwd() / "mlruns" / "0"),))
    except (OSError, sqlite3.Error):
        return False
    return True


def _empty_store() -> Path:
    import mlflow
    from mlflow import MlflowClient

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "squeezeflow"
    path = cache / f"mlflow-{mlflow.__version__}-empty.db"
    if not path.exists():
        with atomic_path(path) as tmp:
            MlflowClient(tracking_uri=f"sqlite:///{tmp}").search_experiments()
    return path
