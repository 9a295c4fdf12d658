"""A new SQLite tracking store starts as a copy of an empty one, and is a store like any MLflow makes."""

from __future__ import annotations

import sqlite3

from squeezeflow.tracking.store import seed_sqlite_store
from squeezeflow.tracking.tracker import Tracker


def _experiments(db):
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT name, artifact_location FROM experiments").fetchall())


def test_a_seeded_store_is_the_one_mlflow_makes_here(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert seed_sqlite_store(tmp_path / "first.db")  # the empty store is made while in another folder
    monkeypatch.chdir(tmp_path)
    seeded, made = tmp_path / "seeded.db", tmp_path / "made.db"
    assert seed_sqlite_store(seeded)
    assert list((tmp_path / "cache" / "squeezeflow").glob("mlflow-*-empty.db"))  # kept for the next store
    from mlflow import MlflowClient

    MlflowClient(tracking_uri=f"sqlite:///{made}").search_experiments()  # MLflow's own, from its migrations
    assert _experiments(seeded) == _experiments(made)  # Default, where MLflow puts it for this folder
    with sqlite3.connect(seeded) as a, sqlite3.connect(made) as b:
        tables = "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
        assert a.execute(tables).fetchall() == b.execute(tables).fetchall()
        assert a.execute("SELECT * FROM alembic_version").fetchall() == \
            b.execute("SELECT * FROM alembic_version").fetchall()
    tracker = Tracker(f"sqlite:///{seeded}")
    run = tracker.client.create_run(tracker.experiment_id)
    tracker.client.log_metric(run.info.run_id, "accuracy", 0.9)
    tracker.client.create_registered_model("m")
    assert tracker.client.get_run(run.info.run_id).data.metrics == {"accuracy": 0.9}
    assert not seed_sqlite_store(seeded)  # an existing store is never replaced


def test_without_a_cache_folder_mlflow_makes_the_store_as_before(tmp_path, monkeypatch):
    (tmp_path / "not-a-folder").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "not-a-folder"))
    db = tmp_path / "mlflow.db"
    assert not seed_sqlite_store(db) and not db.exists()
    tracker = Tracker(f"sqlite:///{db}")
    assert tracker.client.get_experiment(tracker.experiment_id).name == "squeezeflow"
