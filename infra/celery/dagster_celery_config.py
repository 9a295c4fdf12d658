"""The Celery workers' settings: dagster_celery's app reads a module of this name when it is importable
(`squeezeflow stack up` and infra/docker-compose.yaml put this folder on PYTHONPATH). URLs from the environment."""

import os

broker_url = os.environ["SQUEEZEFLOW_CELERY_BROKER"]
result_backend = os.environ["SQUEEZEFLOW_CELERY_BACKEND"]
worker_prefetch_multiplier = 1  # a busy worker holds no queued step that another worker could run
