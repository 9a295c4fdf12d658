"""The names squeezeflow writes into MLflow (tags and params), in one place: every writer and reader uses these."""

CHAIN_TAG = "squeezeflow.chain"  # on a version: the stages that made its file, in order: [[stage, template], ...]
