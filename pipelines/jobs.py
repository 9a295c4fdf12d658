from __future__ import annotations

from dagster import AssetSelection, define_asset_job, in_process_executor

from pipelines.executors import lifecycle_executor
from pipelines.notifications import notify_failure

# In process by default: one workspace, and one process saves a torch import per step. SQUEEZEFLOW_EXECUTOR=celery
# fans the steps out over workers with workspaces of their own (pipelines.executors, squeezeflow.fanout).
lifecycle_job = define_asset_job(
    "lifecycle",
    selection=AssetSelection.all() - AssetSelection.groups("sweep"),
    executor_def=lifecycle_executor(),
    description="The whole lifecycle: dataset -> teacher -> compressed -> finetuned -> exported -> per-target "
    "build -> validated (gate) -> promoted.",
    tags={"dagster/max_retries": 0},
    hooks={notify_failure},  # the webhook's `failed` message (params.yaml notify)
)

sweep_job = define_asset_job(
    "sweep",
    selection=AssetSelection.assets("pareto_sweep").upstream(),
    executor_def=in_process_executor,
    description="Train big, then compress: teacher sizes x recipes, measured on one target; the Pareto front as a "
    "plot. Off the main line because it trains many models.",
    tags={"dagster/max_retries": 0},
)
