"""Run-or-reuse a stage (DVC decides), log it to MLflow with its lineage, and run its blocking check (the verdict kept
per check code, DVC hashes and params)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import time
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

import yaml

from squeezeflow import faults
from squeezeflow.cores import use_cores
from squeezeflow.data import Splits
from squeezeflow.errors import SqueezeflowInputError
from squeezeflow.fanout import timings_key
from squeezeflow.io import atomic_dir, read_json, sha256_tree, write_json
from squeezeflow.lifecycle.base import METRICS, LifecycleBase, git_commit
from squeezeflow.memory import StagePeak, heap_frozen, release_freed, trim_free_memory
from squeezeflow.stages import Verdict, stage_name
from squeezeflow.tracking.schema import (
    DAGSTER_RUN_TAG,
    ERROR_TAG,
    GIT_TAG,
    HOST_TAG,
    INPUTS_PARAMS,
    PID_TAG,
    RECIPE_PARAMS,
    REUSED_TAG,
    TARGET_PARAMS,
    dvc_tag,
    engine_tag,
)
from squeezeflow.versioning.resolved import RESOLVED_INPUTS
from squeezeflow.workspace import Workspace


@dataclass(frozen=True)
class StageOutcome:
    stage: str
    path: Path
    metrics: dict
    reused: bool
    md5: str | None
    seconds: float
    mlflow_run_id: str | None = None

    def to_dict(self) -> dict:
        return {**asdict(self), "path": str(self.path)}


STAGE_SECONDS, STAGE_PEAK_RSS, STAGE_START_RSS = "stage_seconds", "stage_peak_rss_mb", "stage_start_rss_mb"


def run_stage_locally(ws: Workspace, name: str, params) -> dict:
    """Run one stage into a temp folder and swap it into place; returns its metrics."""
    stage = ws.stages[name]
    shutil.rmtree(ws.measured_dir(name), ignore_errors=True)
    ws.measured_dir(name).mkdir(parents=True)
    use_cores(params.machine.threads)
    trim_free_memory()  # what the steps between stages freed (the data check, DVC, MLflow): the stage starts lower
    with atomic_dir(ws.stage_dir(name)) as out:
        t0 = time.perf_counter()
        with StagePeak() as mem, heap_frozen():
            try:
                metrics = stage.run(ws.context(name, params, out))
            finally:  # the next stage in this process starts from what this one kept, not from what it freed
                release_freed()
        # Timings vary run to run: outside the output, so identical inputs give identical DVC hashes.
        write_json(out / METRICS, {k: v for k, v in metrics.items() if not stage.is_timing(k)})
        timings = {k: v for k, v in metrics.items() if stage.is_timing(k)}
        # what the stage cost this process (not its subprocesses: the measuring worker, DDP ranks)
        cost = {STAGE_SECONDS: round(time.perf_counter() - t0, 3), STAGE_PEAK_RSS: round(mem.peak_mb, 1),
                STAGE_START_RSS: round(mem.start_mb, 1)}
        write_json(ws.timings_path(name), {"output_sha256": sha256_tree(out), "values": {**timings, **cost}})
    return {**metrics, **cost}


class StageRunner(LifecycleBase):
    """The stages of a run, each run or reused, logged as a child of the run's MLflow parent."""

    def lineage_tags(self, run_key: str, target: str | None = None) -> dict[str, str]:
        """Dagster run, git commit and the DVC hash of every stage output (for a target: only its own chain's)."""
        def relevant(stage: str) -> bool:
            return target is None or stage in chain

        chain = set(self.chain(target)) if target else set()

        tags = {DAGSTER_RUN_TAG: run_key, GIT_TAG: self.git_commit}
        tags.update({dvc_tag(stage): md5 for stage, md5 in self.run_hashes(run_key).items()
                     if stage in self.ws.stages and relevant(stage)})
        return tags

    def run_hashes(self, run_key: str) -> dict[str, str]:
        """stage -> the DVC md5 of its output in this run: dvc.lock's, or on a worker's step workspace (which holds
        only what its steps pulled) what each stage's own step recorded on the run's MLflow parent."""
        if not self.fanout:
            return self.dvc.hashes()
        tags = self.tracker.client.get_run(self.parent_run(run_key)).data.tags
        return {k.removeprefix(dvc_tag("")): v for k, v in tags.items() if k.startswith(dvc_tag("")) and v}

    def pull_inputs(self, stages, run_key: str) -> None:
        """On a worker's step workspace: the outputs (and timings) of these stages as this run made them, from the
        shared DVC remote (squeezeflow.fanout). A stage this run has not recorded is an error, not a guess."""
        wanted = self.run_hashes(run_key)
        for dep in stages:
            md5 = wanted.get(dep)
            if not md5:
                raise RuntimeError(f"{dep}: this run (Dagster run {run_key}) recorded no output for it on its MLflow "
                                   "parent run: its step has not run, so its output cannot be pulled")
            if self.dvc.hashes().get(dep) != md5 or not self.ws.stage_dir(dep).is_dir():
                self.dvc.fetch_output(dep, md5, self.ws.stage_dir(dep))
            self.dvc.get_file(timings_key(dep, md5), self.ws.timings_path(dep))

    def _restored(self, name: str) -> bool:
        """On a step workspace: the stage's output from DVC's run cache (any worker's, via the remote)."""
        if not self.dvc.restore(name):
            return False
        self.dvc.commit(name)
        md5 = self.dvc.hashes().get(name)
        self.dvc.get_file(timings_key(name, md5), self.ws.timings_path(name))
        return not self.ws.stages[name].needs_timings or self.ws.stage_timings(name) is not None

    def _share(self, name: str) -> None:
        """On a step workspace, before the step ends: the run-cache entry and the timings on the remote."""
        self.dvc.push_run_cache(name)
        md5, timings = self.dvc.hashes().get(name), self.ws.timings_path(name)
        if md5 and timings.exists():
            self.dvc.put_file(timings_key(name, md5), timings)

    def chain(self, target: str) -> list[str]:
        """The stages that made the target's deployed file, in order: the shared ones, the chain of the recipe its
        select stage chose, and its own."""
        chosen = self.ws.stage_dir(stage_name("select", target)) / "selection.json"
        key = (read_json(chosen).get("recipe_key") if chosen.exists() else None) or self.ws.run_key
        return [name for name, s in self.ws.stages.items() if s.group == "lifecycle"
                and (s.target.name == target if s.target else s.recipe == key if s.recipe else True)]

    def up_to_date(self, name: str) -> bool:
        """DVC's word on the stage. One `dvc status` of every stage answers for all of them at the first ask. Within a
        run only stage outputs change (each by our own commit): a stage committed since is up to date, and one
        downstream of such a stage has changed if dvc.lock shows a dep moved from what the stage last read, and
        otherwise keeps the first answer."""
        if self.fanout:  # a step workspace holds a few stages' files: ask about this one
            return self.dvc.up_to_date(name)
        if self._changed is None:
            self._changed = self.dvc.changed_stages()
            self._asked_after = set(self.committed)
        if name in self.committed - self._asked_after:
            return True
        todo, upstream = list(self.ws.stages[name].deps), set()
        while todo:
            dep = todo.pop()
            if dep not in upstream and dep in self.ws.stages:
                upstream.add(dep)
                todo += self.ws.stages[dep].deps
        if upstream & (self.committed - self._asked_after) and self.dvc.deps_moved(name):
            return False
        return name not in self._changed

    @cached_property
    def git_commit(self) -> str:
        return git_commit(self.ws.root)

    def parent_run(self, run_key: str) -> str:
        """The pipeline run's MLflow parent: found (or created by the first stage) once per run."""
        if run_key not in self._parents:
            tags = {DAGSTER_RUN_TAG: run_key, GIT_TAG: self.git_commit} if self.fanout else \
                self.lineage_tags(run_key)  # a step workspace's dvc.lock is not this run's: each stage tags its own
            self._parents[run_key] = self.tracker.parent_run(run_key, self.params.model_dump(mode="json"), tags)
        return self._parents[run_key]

    def run_stage(self, name: str, run_key: str, ensure_deps: bool = False, say=None) -> StageOutcome:
        """Run or reuse one stage. `ensure_deps`: first run (or reuse) each dep not yet done in this run (an asset
        graph loaded for another recipe has no asset for some of them)."""
        params = self.params
        if name not in self.ws.stages:  # an asset graph loaded for other parameters than this run's
            raise SqueezeflowInputError("run config", "overrides", sorted(self.overrides.items()),
                                        f"this run has no stage {name} (its recipe and sweep differ from those the "
                                        "asset graph was loaded with): set them in params.yaml and reload the code "
                                        "location, or run `squeezeflow run --recipe ...`")
        stage = self.ws.stages[name]
        for dep in stage.deps if ensure_deps else ():
            if dep not in self.done:
                made = self.run_stage(dep, run_key, ensure_deps=True, say=say)
                if say is not None:
                    say(f"[squeezeflow] {dep:<22} {'reused' if made.reused else 'built'} for {name} (this asset "
                        "graph has no asset for it)")
        t0 = time.perf_counter()
        out = self.ws.stage_dir(name)
        if self.fanout:
            self.pull_inputs(stage.deps, run_key)
        reused = ((out / METRICS).exists() and self.up_to_date(name)
                  and (not stage.needs_timings or self.ws.stage_timings(name) is not None))
        parent = self.parent_run(run_key)
        try:
            reused = reused or (self.fanout and self._restored(name))
            if reused:
                metrics = self.ws.stage_metrics(name)
            else:
                metrics = run_stage_locally(self.ws, name, params)
                self.dvc.commit(name)
                self.committed.add(name)
                faults.point("dvc-committed", name)
            if self.push or self.fanout:  # reused too: what an earlier run committed may never have reached it
                self.dvc.push(name)
            if self.fanout:
                self._share(name)
        except Exception as exc:
            failed = self.tracker.stage_run(parent, run_key, name, {}, {ERROR_TAG: str(exc)[:5000]})
            self.tracker.end(failed, failed=True)
            self.tracker.end(parent, failed=True)
            raise
        md5 = self.dvc.hashes().get(name)
        sections = {k: params.model_dump(mode="json")[k] for k in stage.params}
        if stage.target:
            sections[TARGET_PARAMS.rstrip(".")] = stage.target.model_dump(mode="json")
        if stage.recipe_params:
            resolved = self.ws.recorded_recipes()
            for dotted in stage.recipe_params:
                node = resolved
                for part in dotted.split("."):
                    node = node[part]
                sections[RECIPE_PARAMS + dotted] = node
        if stage.input_params:  # the user's files by content hash: the model's factory file, its checkpoint
            recorded = yaml.safe_load((self.ws.root / RESOLVED_INPUTS).read_text()) or {}
            sections |= {INPUTS_PARAMS + key: recorded.get(key) for key in stage.input_params}
        made = self.run_hashes(run_key)
        tags = {REUSED_TAG: str(reused).lower(), dvc_tag(name): md5 or "", HOST_TAG: socket.gethostname(),
                PID_TAG: str(os.getpid()), **{dvc_tag(d): made.get(d, "") for d in stage.deps}}
        child = self.tracker.stage_run(parent, run_key, name, metrics, tags, sections)
        if stage.logs_data:
            self._log_dataset_input(parent, child, out, metrics)
        for artifact in stage.artifacts:
            for where in (out, self.ws.measured_dir(name)):
                if (where / artifact).exists():
                    self.tracker.client.log_artifact(child, str(where / artifact))
                    break
        self.tracker.end(child)
        self.tracker.set_tags(parent, {dvc_tag(name): md5 or ""})  # the others were set when the parent was made
        self.tracker.end(parent)
        self.done.add(name)
        return StageOutcome(name, out, metrics, reused, md5, time.perf_counter() - t0, child)

    def _log_dataset_input(self, parent: str, child: str, out: Path, meta: dict) -> None:
        splits = Splits.load(out, self.params.machine.data_memory_mb)
        for run_id in (parent, child):
            for split in ("train", "val", "test"):
                self.tracker.log_dataset(run_id, f"{meta['name']}-{split}", meta["source"], splits.x[split],
                                         splits.y[split], context=split)

    def run_check(self, stage: str, run_key: str | None = None) -> Verdict:
        """The stage's blocking check, on the files on disk. Its verdict is kept per (check code, DVC hashes of the
        stage and its deps, the stage's params): unchanged data is not re-validated, which spares the warm re-run
        GX's import and run. A check that declares a tag records its verdict on the pipeline's MLflow run."""
        st = self.ws.stages[stage]
        check = st.check
        hashes = self.dvc.hashes()
        key_parts = [check.code_version(), *(hashes.get(d, "") for d in (stage, *st.deps)),
                     json.dumps({k: v for k, v in self.params.model_dump(mode="json").items() if k in st.params},
                                sort_keys=True)]  # the params its stage reads: another recipe re-checks no data
        key = hashlib.sha256("|".join(key_parts).encode()).hexdigest()[:24]
        cached = self.ws.state_dir / "checks" / f"{check.name}-{key}.json"
        if all(hashes.get(d) for d in (stage, *st.deps)) and self.up_to_date(stage) and cached.exists():
            verdict = Verdict(**read_json(cached))
        else:
            verdict = check.run(self.ws.check_inputs(stage), self.params)
            write_json(cached, asdict(verdict))
        if run_key and check.tag:
            shown = verdict.metadata.get("tag_value") or ("passed" if verdict.passed else f"failed: {verdict.message}")
            tags = {check.tag: str(shown)[:5000]}
            if verdict.metadata.get("engine"):
                tags[engine_tag(check.tag)] = str(verdict.metadata["engine"])
            self.tracker.set_tags(self.parent_run(run_key), tags)
        return verdict
