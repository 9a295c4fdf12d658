"""Distributed teacher training started through Dagster Pipes. When a stage trains in several processes
(`teacher.train.processes: N`), its asset starts torchrun with `PipesSubprocessClient` instead of a bare subprocess:
rank 0 opens the Pipes channel, its log lines appear in the step's Dagster log, and it reports the stage's metrics
and the files it wrote (the checkpoint) to the asset as a Pipes message. The stage's output folder stays what DVC
records. On Kubernetes, `dagster_k8s.PipesK8sClient` runs the same command in a pod (docs/scaling.md).

This module is both sides: `pipes_starter` (in the asset's process) and, as `python -m assets.pipes`, torchrun's
entry point in every rank."""

from __future__ import annotations

import json
import os
import pickle
import sys
from pathlib import Path

from squeezeflow.training import distributed

ENTRY = "assets.pipes"


def pipes_starter(context):
    """A `distributed.Starter` that runs torchrun under Dagster Pipes in this asset's step."""

    def start(argv: list[str], env: dict) -> tuple[int, str]:
        from dagster import PipesSubprocessClient
        from dagster._core.errors import DagsterPipesExecutionError  # not exported at the top level in 1.13

        argv = [ENTRY if a == distributed.ENTRY else a for a in argv]
        try:
            invocation = PipesSubprocessClient().run(command=argv, context=context, env=env)
        except DagsterPipesExecutionError as exc:
            return 1, f"{exc} (the ranks' output is in the step's stderr)"
        for message in invocation.get_custom_messages():
            context.log.info(f"[pipes] rank 0 reported: {json.dumps(message)[:2000]}")
        return 0, ""

    return start


def main(tmp: Path) -> None:
    if int(os.environ.get("RANK", "0")) != 0:
        distributed.worker(tmp)
        return
    from dagster_pipes import open_dagster_pipes

    with open_dagster_pipes() as pipes:
        world = os.environ.get("WORLD_SIZE", "1")
        pipes.log.info(f"torchrun rank 0 of {world}: training")
        distributed.worker(tmp)
        with open(tmp / "request.pkl", "rb") as f:  # written by our own process (distributed.launch)
            out = pickle.load(f)["ctx"].out
        metrics = json.loads((tmp / "result.json").read_text())
        pipes.report_custom_message({"processes": int(world), "metrics": metrics,
                                     "files": sorted(p.name for p in Path(out).iterdir())})


if __name__ == "__main__":
    main(Path(sys.argv[1]))
