"""The lifecycle job's executor, chosen by the environment of the code location (never by a code edit):
`SQUEEZEFLOW_EXECUTOR` = `in_process` (default: one process, one workspace), `celery` (each step a Celery task on
a worker with a step workspace of its own, squeezeflow.fanout; broker and result backend from
`SQUEEZEFLOW_CELERY_BROKER` / `SQUEEZEFLOW_CELERY_BACKEND`, never written into run config) or `k8s` (each step a
Kubernetes Job: `dagster_k8s.k8s_job_executor`, configured in infra/helm/values.yaml; dagster-k8s is not
installed here). `squeezeflow run` always runs in process."""

from __future__ import annotations

import os

from dagster import ExecutorDefinition, in_process_executor

EXECUTOR_ENV = "SQUEEZEFLOW_EXECUTOR"
BROKER_ENV, BACKEND_ENV = "SQUEEZEFLOW_CELERY_BROKER", "SQUEEZEFLOW_CELERY_BACKEND"
EXECUTORS = ("in_process", "celery", "k8s")


def lifecycle_executor() -> ExecutorDefinition:
    name = os.environ.get(EXECUTOR_ENV, "").strip() or "in_process"
    if name == "in_process":
        return in_process_executor
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
