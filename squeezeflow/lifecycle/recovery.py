"""One run per workspace (squeezeflow.runlock) and what the next run does after one was killed: its temp folders go,
its MLflow runs are marked FAILED, and what it left pending in the registry is finished or abandoned."""

from __future__ import annotations

from squeezeflow.lifecycle.releases import Releases


class Recovery(Releases):
    """The workspace lock, and recovery once it is held."""

    def hold(self, command: str, wait: bool = True, say=print):
        """The workspace lock (squeezeflow.runlock): every entry point that runs stages takes it."""
        from squeezeflow.runlock import workspace_lock

        return workspace_lock(self.ws.state_dir / "locks", command, wait=wait, say=say)

    def recover(self, held) -> list[str]:
        """Once the workspace is held: clean up after a run that was killed while it held it. Its temp folders
        go; its MLflow runs are marked FAILED; what it left pending in the registry is finished or abandoned
        (recover_registry; also after a run that failed without being killed). Returns what was done."""
        from squeezeflow.runlock import describe, remove_temp_files

        if held.recovered:
            return []
        held.recovered = True
        notes = []
        removed = remove_temp_files(self.ws.root, self.ws.artifacts_dir, self.ws.state_dir)
        if removed:
            notes.append(f"removed {len(removed)} half-written temp path(s): {', '.join(removed[:6])}")
        crashed = held.crashed or {}
        if crashed.get("dagster_run_id"):
            why = f"killed while running ({describe(crashed)}); marked FAILED by the next run"
            failed = self.tracker.fail_runs_of(crashed["dagster_run_id"], why)
            notes.append(f"{describe(crashed)} was killed: marked {len(failed)} of its MLflow run(s) FAILED")
        elif held.crashed is not None:
            notes.append(f"{describe(crashed)} was killed before it started a pipeline run")
        if self.fanout:  # other workers may be mid-release: the registry is recovered inside its pool
            return notes
        try:
            self.ws.targets, self.params  # noqa: B018 - unreadable targets or params: the run's steps report them
        except Exception:  # noqa: BLE001
            return notes
        return notes + self.recover_registry()

    def recover_shared_registry(self, alive) -> list[str]:
        """On a step workspace, from a step in the registry pool (one at a time on the shared instance): what a
        killed worker left pending in the registry, finished or abandoned. `alive(dagster_run_id)`: whether that
        run is still going (its versions wait for their own promotion steps, which run in parallel chains)."""
        return self.recover_registry(alive) if self.fanout else []
