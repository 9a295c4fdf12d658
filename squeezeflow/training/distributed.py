"""Data-parallel training (torch DDP) for a stage that trains big: `teacher.train.processes: N` runs the stage in N
processes started by `torchrun` (gloo on CPU, NCCL where there are GPUs). Every rank runs the same stage code;
`fit` (the one training loop) sees the process group, gives each rank its share of every batch and averages the
gradients. Rank 0 writes the stage's output and reports its metrics; the others work in a scratch folder.

The result is deterministic for a given N and seed: every rank draws the same permutation each epoch and takes
every N-th sample of it, and the batch each rank sees is the global batch split N ways."""

from __future__ import annotations

import importlib
import json
import os
import pickle
import subprocess
import sys
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import replace
from pathlib import Path

import torch
import torch.distributed as dist


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank_and_world() -> tuple[int, int]:
    return (dist.get_rank(), dist.get_world_size()) if active() else (0, 1)


def shard(order: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """This rank's share of an epoch's sample order (the same order on every rank): every world-th sample, the
    shares equal in length (up to world - 1 samples left out per epoch, a different few each time), so every rank
    takes the same number of steps and none waits on another's gradients."""
    return order[: len(order) - len(order) % world][rank::world]


# How the torchrun processes are started: (argv, env) -> (exit code, what it said). By default a plain subprocess;
# an orchestrator sets its own for the duration of a step (the Dagster teacher asset: Dagster Pipes, whose entry
# module replaces ENTRY in argv and has rank 0 report to the asset).
Starter = Callable[[list[str], dict], tuple[int, str]]
ENTRY = "squeezeflow.training.distributed"
_STARTER: ContextVar[Starter | None] = ContextVar("squeezeflow_ddp_starter", default=None)


@contextmanager
def started_by(starter: Starter):
    token = _STARTER.set(starter)
    try:
        yield
    finally:
        _STARTER.reset(token)


def _subprocess(argv: list[str], env: dict) -> tuple[int, str]:
    proc = subprocess.run(argv, env=env, stderr=subprocess.PIPE, text=True)
    return proc.returncode, proc.stderr


def launch(fn: str, ctx, processes: int) -> dict:
    """Run `fn` ("module:function", a stage's run) on `ctx` in `processes` processes; returns rank 0's metrics."""
    with tempfile.TemporaryDirectory(prefix="sf-ddp-") as tmp:
        with open(Path(tmp) / "request.pkl", "wb") as f:  # between our own processes only
            pickle.dump({"fn": fn, "ctx": ctx}, f)
        argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
                "-m", ENTRY, tmp]
        # each rank gets its share of the cores (torchrun would otherwise set 1 thread, with a warning)
        threads = str(max(1, (os.cpu_count() or 1) // processes))
        code, said = (_STARTER.get() or _subprocess)(argv, {**os.environ, "OMP_NUM_THREADS": threads})
        result = Path(tmp) / "result.json"
        if code != 0 or not result.exists():
            raise RuntimeError(f"distributed training ({processes} processes, torchrun) failed with exit code "
                               f"{code}: {said.strip()[-3000:]}")
        return json.loads(result.read_text())


def worker(tmp: Path) -> None:
    """One rank (torchrun's entry point): the stage's run in the process group; rank 0 writes result.json."""
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    try:
        rank, _ = rank_and_world()
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        with open(tmp / "request.pkl", "rb") as f:
            request = pickle.load(f)
        module, name = request["fn"].split(":")
        ctx = request["ctx"]
        with tempfile.TemporaryDirectory(prefix=f"sf-ddp-rank{rank}-") as scratch:
            if rank != 0:  # the same work, its files thrown away
                ctx = replace(ctx, out=Path(scratch) / "out", measured=Path(scratch) / "measured")
                ctx.out.mkdir()
                ctx.measured.mkdir()
            metrics = getattr(importlib.import_module(module), name)(ctx)
        if rank == 0:
            (tmp / "result.json").write_text(json.dumps(metrics))
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    worker(Path(sys.argv[1]))
