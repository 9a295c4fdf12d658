"""The one resource: a configured squeezeflow Lifecycle (workspace, parameter overrides, MLflow, DVC).

For every run that materializes stages it also holds the workspace (one run at a time, squeezeflow.runlock) and,
when it takes over from a run that was killed, marks that run failed in Dagster and MLflow and removes its temp
folders."""

from contextlib import ExitStack

from dagster import ConfigurableResource, DagsterRunStatus, InitResourceContext
from pydantic import Field, PrivateAttr

from squeezeflow.config import parse_override
from squeezeflow.fanout import checkout, multiprocess, run_remote, step_root, step_slot
from squeezeflow.lifecycle import Lifecycle, Registry
from squeezeflow.workspace import Workspace

# These only move registry aliases (under their own lock): they need not wait for a training run.
REGISTRY_JOBS = {"promote", "rollback"}
UNFINISHED = {DagsterRunStatus.STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.CANCELING}


class SqueezeflowResource(ConfigurableResource):
    root: str | None = Field(None, description="workspace (DVC repo) folder; default: $SQUEEZEFLOW_ROOT or the project")
    overrides: list[str] = Field(default_factory=list, description="params.yaml overrides, e.g. dataset.name=mnist1d")
    recipe: str | None = Field(None, description="compression recipe: a name in recipes/ or a .yaml path; "
                                  "default: params.yaml's compress.recipe")
    tracking_uri: str | None = Field(None, description="MLflow tracking URI; default: $MLFLOW_TRACKING_URI or SQLite "
                                     "in the workspace")
    push: bool = Field(True, description="push each checkpoint to the DVC remote")

    _lifecycle: Lifecycle | None = PrivateAttr(default=None)
    _held: ExitStack | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        overrides = dict(parse_override(item) for item in self.overrides)
        if self.recipe:
            overrides["compress.recipe"] = self.recipe
        run = getattr(context, "dagster_run", None) if context is not None else None
        self._held = ExitStack()
        # the graph of this run (its recipe chain, its sweep points) from the first step on
        step, remote = step_root(), None
        if step is None and multiprocess() and run is not None:  # one step process: a slot of the run's workspace
            source = Workspace(self.root).root
            step = self._held.enter_context(step_slot(source))
            remote = run_remote(source)
        if step is None:
            ws = Workspace(self.root, overrides=overrides)
        else:  # a step in a workspace of its own (squeezeflow.fanout)
            source = Workspace(self.root).root
            checkout(source, step)
            ws = Workspace(step, overrides=overrides, files_root=source)
        self._lifecycle = Lifecycle(ws, overrides, self.tracking_uri, self.push, fanout=step is not None, remote=remote)
        if run is not None and run.job_name not in REGISTRY_JOBS:
            self._hold(context, run)

    def _hold(self, context: InitResourceContext, run) -> None:
        def say(line: str) -> None:
            context.log.info(line)
            print(line, flush=True)

        held = self._held.enter_context(self._lifecycle.hold(f"dagster job {run.job_name}", say=say))
        held.update(dagster_run_id=run.run_id, job=run.job_name)
        crashed = held.crashed or {}
        dead = crashed.get("dagster_run_id")
        if dead and dead != run.run_id and context.instance is not None and not held.recovered:
            old = context.instance.get_run_by_id(dead)
            if old is not None and old.status in UNFINISHED:
                context.instance.report_run_failed(old, f"killed (pid {crashed.get('pid')}); marked failed by run "
                                                        f"{run.run_id}, which took over the workspace")
        for note in self._lifecycle.recover(held):
            say(f"[squeezeflow] recovered: {note}")

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        if self._held is not None:
            self._held.close()
            self._held = None

    @property
    def lifecycle(self) -> Lifecycle:
        if self._lifecycle is None:  # used outside a run (direct invocation in tests)
            self.setup_for_execution(None)  # type: ignore[arg-type]
        return self._lifecycle

    @property
    def registry(self) -> Registry:
        return Registry(self.lifecycle)
