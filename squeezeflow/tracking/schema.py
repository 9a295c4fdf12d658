"""Every name squeezeflow writes into MLflow, in one place: the tags of runs, model versions and promotion records,
and the prefixes of the params it logs. Writers and readers (lineage, model cards, retention, recovery) import them
from here; `tests/squeezeflow/tracking/test_schema.py` fails on a tag name spelled out anywhere else."""

P = "squeezeflow."  # squeezeflow's own tags

# --- MLflow's own tags that squeezeflow sets or reads ------------------------------------------------------------
PARENT_TAG = "mlflow.parentRunId"
GIT_TAG = "mlflow.source.git.commit"
DATASET_CONTEXT_TAG = "mlflow.data.context"

# --- every run of the pipeline experiment ------------------------------------------------------------------------
RUN_KEY_TAG = P + "run_key"  # the Dagster run id: joins MLflow runs to the Dagster run
STAGE_TAG = P + "stage"  # `pipeline` (the parent), a stage's name, gate-<target>, promote-<target>
DAGSTER_RUN_TAG = P + "dagster_run_id"  # on the parent, versions and promotion runs
DVC_TAG = P + "dvc."  # + stage name: the DVC md5 of that stage's output
REUSED_TAG = P + "reused"  # true: DVC found the stage's output up to date, nothing ran
ERROR_TAG = P + "error"  # why a stage run failed
HOST_TAG = P + "host"  # the machine that ran (or reused) the stage
PID_TAG = P + "pid"  # the process that ran it (a Celery worker's child on a fanned-out run)
DATA_CHECK_TAG = P + "data_check"  # on the parent: the data check's verdict (`<tag>.engine`: which engine)
UNAVAILABLE_TAG = P + "unavailable"  # on a gate run: why the target's runtime cannot run here
MODEL_URI_TAG = P + "model_uri"  # on a promote run
PROMOTION_POLICY_TAG = P + "promotion"  # on a promote run: auto | manual

# --- a registered model version ------------------------------------------------------------------------------------
TARGET_TAG = P + "target"
GATE_TAG = P + "gate"  # passed | failed; a version without it was never gated
GATE_CHAMPION_TAG = P + "gate_champion"  # the champion its gate compared against (v3 | none)
GATE_RUN_TAG = P + "gate_run_id"
GATE_REPORT_TAG = P + "gate_report"  # runs:/<gate run>/gate_report.md
SHA_TAG = P + "onnx_sha256"
COMPANIONS_TAG = P + "companions"  # JSON: file name -> {uri, sha256} of the files its engine loads beside it
RELEASE_TAG = P + "release"  # on a passed version: pending (its promotion step has not run) | done | abandoned
RELEASE_NOTE_TAG = P + "release_note"  # what its promotion step did, or why it was abandoned
RECOVERED_TAG = P + "recovered"  # released by recovery after the run that registered it stopped
RECIPE_TAG = P + "recipe"  # the recipe its target selected
RECIPE_SELECTION_TAG = P + "recipe_selection"  # why
CHAIN_TAG = P + "chain"  # the stages that made its file, in order: [[stage, template], ...]
RUNTIME_TAG = P + "runtime"
RUNTIME_CONFIG_TAG = P + "runtime_config"  # JSON: how the runtime loaded it when it was validated
BUILD_CONFIG_TAG = P + "build_config"  # JSON: the target's build section
COMPARISON_TAG = P + "promotion_comparison"  # what a person's promotion compared it with
# written on the version when it becomes champion (also on its promotion record)
PROMOTED_BY_TAG = P + "promoted_by"
PROMOTED_AT_TAG = P + "promoted_at"
PROMOTION_REASON_TAG = P + "promotion_reason"
PREVIOUS_CHAMPION_TAG = P + "previous_champion"
FORCED_TAG = P + "forced"
PROMOTION_RUN_TAG = P + "promotion_run_id"  # its promotion record

# --- a promotion record (a run of the squeezeflow-promotions experiment) --------------------------------------------
MODEL_NAME_TAG = P + "model_name"
VERSION_TAG = P + "version"
ACTION_TAG = P + "action"  # auto | promote | force | rollback | challenger
REASON_TAG = P + "reason"
PROMOTION_SEQ_TAG = P + "promotion_seq"  # the total order of the model's moves
STATE_TAG = P + "state"  # pending (the alias may not have moved yet) | done | abandoned
ABANDONED_REASON_TAG = P + "abandoned_reason"

# --- params of a stage run: the sections it reads --------------------------------------------------------------------
RECIPE_PARAMS = "recipe."  # + the resolved recipe's dotted path (recipes.<key>.steps)
TARGET_PARAMS = "target."  # + the target profile's fields
INPUTS_PARAMS = "inputs."  # + the user's files by content hash (inputs.model.factory_sha256)


def dvc_tag(stage: str) -> str:
    return DVC_TAG + stage


def engine_tag(check_tag: str) -> str:
    """Beside a check's verdict tag: the engine that checked (great_expectations, pandas)."""
    return check_tag + ".engine"
