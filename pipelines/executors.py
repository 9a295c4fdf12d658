"""The lifecycle job's executor, chosen by the environment of the code location (never by a code edit):
`SQUEEZEFLOW_EXECUTOR` = `in_process` (default: one process, one workspace), `multiprocess` (one machine: each
step a process in a slot folder of the run's workspace, `.squeezeflow/steps/<n>`, at most `max_concurrent` at once,
set in run config; squeezeflow.fanout), `celery` (each step a Celery task on
a worker with a step workspace of its own, squeezeflow.fanout; broker and result backend from
`SQUEEZEFLOW_CELERY_BROKER` / `SQUEEZEFLOW_CELERY_BACKEND`, never written into run config) or `k8s` (each step a
Kubernetes Job: `dagster_k8s.k8s_job_executor`, configured in infra/helm/values.yaml; dagster-k8s is not
installed here). `squeezeflow run` always runs in process."""

from __future__ import annotations

import os

from dagster import ExecutorDefinition, Field, Int, Noneable, in_process_executor, multiprocess_executor

from assets._adapter import POOL_TAG
from squeezeflow.fanout import EXECUTOR_ENV

BROKER_ENV, BACKEND_ENV = "SQUEEZEFLOW_CELERY_BROKER", "SQUEEZEFLOW_CELERY_BACKEND"
EXECUTORS = ("in_process", "multiprocess", "celery", "k8s")


def lifecycle_executor() -> ExecutorDefinition:
    name = os.environ.get(EXECUTOR_ENV, "").strip() or "in_process"
    if name == "in_process":
        return in_process_executor
    if name == "multiprocess":
        return _multiprocess
    if name == "celery":
        from dagster_celery import celery_executor

        # {"env": ...}: Dagster reads the URLs where the step runs; run config and the UI show only the names.
        return celery_executor.configured({"broker": {"env": BROKER_ENV}, "backend": {"env": BACKEND_ENV}},
                                          name="celery")
    if name == "k8s":
        try:
            from dagster_k8s import k8s_job_executor
        except ImportError:
            raise RuntimeError(f"{EXECUTOR_ENV}=k8s: unavailable: dagster-k8s is not installed (the user-code image "
                               "of infra/Dockerfile installs it)") from None
        return k8s_job_executor
    raise ValueError(f"environment variable {EXECUTOR_ENV}: unknown executor {name!r} (known: {', '.join(EXECUTORS)})")


# torch._dynamo: every torch optimizer imports it on first use (1.1 s of a training step's start, measured here)
PRELOAD = ("dagster", "pipelines.definitions", "torch", "torch._dynamo", "mlflow", "dvc.repo", "onnxruntime")


def _one_per_pool(config: dict) -> dict:
    # A pool's steps (one device's measurements, the registry) one at a time, whatever the instance's pool limits.
    # forkserver with the heavy imports done once: a step starts in about a second, not five
    return {"max_concurrent": config["max_concurrent"],
            "start_method": {"forkserver": {"preload_modules": list(PRELOAD)}},
            "tag_concurrency_limits": [{"key": POOL_TAG, "value": {"applyLimitPerUniqueValue": True}, "limit": 1}]}


_multiprocess = multiprocess_executor.configured(
    _one_per_pool, name="multiprocess", config_schema={"max_concurrent": Field(
        Noneable(Int), default_value=None, description="steps at once (default: the machine's cores)")})
