"""The audit chain of a registered model version, read back from MLflow.

`models:/NAME/3` (or `@champion`, `@challenger`) -> data source, data fingerprint, data check -> the teacher run that
trained it -> resolved recipe -> each stage run -> export -> build -> validation -> gate report -> promotion -> git
commit, each link with its MLflow run id and UI link. Read only: nothing is created or changed in the store.

A stage that DVC reused in the pipeline run that registered the version was not rebuilt there: the run that really
built its output is the earlier run of that stage with the same DVC md5 and `squeezeflow.reused` = false.
"""

from __future__ import annotations

import ast
import json
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from squeezeflow.errors import SqueezeflowInputError
from squeezeflow.naming import stage_name
from squeezeflow.tracking.promotion import HISTORY_EXPERIMENT, history
from squeezeflow.tracking.schema import (
    CHAIN_TAG,
    DAGSTER_RUN_TAG,
    DATA_CHECK_TAG,
    DVC_TAG,
    FORCED_TAG,
    GATE_CHAMPION_TAG,
    GATE_REPORT_TAG,
    GATE_RUN_TAG,
    GATE_TAG,
    GIT_TAG,
    INPUTS_PARAMS,
    PARENT_TAG,
    PREVIOUS_CHAMPION_TAG,
    PROMOTED_AT_TAG,
    PROMOTED_BY_TAG,
    PROMOTION_REASON_TAG,
    PROMOTION_RUN_TAG,
    RECIPE_PARAMS,
    RECIPE_SELECTION_TAG,
    RECIPE_TAG,
    REUSED_TAG,
    RUN_KEY_TAG,
    STAGE_TAG,
    TARGET_TAG,
    engine_tag,
)

DEFAULT_UI = "http://127.0.0.1:5000"
DVC = DVC_TAG

_PROGRESS = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"

# each template's link: (step, label); a stage not listed here is shown under its own name
STEPS = {"dataset": ("dataset", "dataset splits"), "exported": ("exported", "export (ONNX)"),
         "validate": ("validation", "validation")}
# metrics worth a line, per stage (all of them are in `details`)
KEY_METRICS = {
    "dataset": ("samples", "num_classes", "train_size", "val_size", "test_size"),
    "teacher": ("test_accuracy", "val_accuracy", "parameters", "epochs"),
    "compressed": ("test_accuracy", "parameters", "nonzero_parameters", "sparsity"),
    "finetuned": ("test_accuracy", "nonzero_parameters", "finetune_epochs"),
    "exported": ("model_bytes", "max_abs_diff", "argmax_agreement"),
    "build": ("model_bytes",),
    "validate": ("accuracy", "latency_p50_ms", "latency_p95_ms", "throughput_per_s", "model_bytes"),
}


@dataclass(frozen=True)
class ModelRef:
    """A parsed `models:/NAME/VERSION` or `models:/NAME@ALIAS`."""

    uri: str
    name: str
    version: str | None = None
    alias: str | None = None


@dataclass
class Link:
    """One link of the chain. `run_id` is the run that produced it; `reused_in_run_id` the run of the version's
    pipeline run that reused that output instead of rebuilding it (None when it was built there)."""

    step: str
    label: str
    summary: str
    run_id: str | None = None
    url: str | None = None
    reused_in_run_id: str | None = None
    reused_in_url: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # what the store lacks or contradicts
    notes: list[str] = field(default_factory=list)  # worth reading (e.g. the gate report's notes)


@dataclass
class Lineage:
    uri: str
    model_name: str
    version: str
    aliases: list[str]
    description: str
    url: str
    chain: list[Link]

    def link(self, step: str) -> Link:
        found = [x for x in self.chain if x.step == step]
        if not found:
            raise KeyError(f"no link {step!r} in the chain of {self.uri}; steps: {[x.step for x in self.chain]}")
        return found[0]

    def to_dict(self) -> dict:
        return asdict(self)


# --- the URI ---------------------------------------------------------------------------------------------------
_NAME = re.compile(r"^[^/@]+$")


def parse_model_uri(uri: str) -> ModelRef:
    """`models:/NAME/VERSION` (a number or `latest`) or `models:/NAME@ALIAS`; anything else raises, naming the field."""
    text = str(uri).strip()
    if not text.startswith("models:/"):
        raise SqueezeflowInputError(uri, "uri", uri, "expected models:/NAME/VERSION or models:/NAME@ALIAS")
    rest = text[len("models:/"):]
    if "@" in rest:
        name, alias = rest.split("@", 1)
        if not _NAME.match(name or "/"):
            raise SqueezeflowInputError(uri, "name", name, "expected a registered model name (no '/' or '@')")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", alias):
            raise SqueezeflowInputError(uri, "alias", alias, "expected an alias such as champion or challenger")
        return ModelRef(text, name, alias=alias)
    name, sep, version = rest.partition("/")
    if not _NAME.match(name or "/"):
        raise SqueezeflowInputError(uri, "name", name, "expected a registered model name (no '/' or '@')")
    if not sep:
        raise SqueezeflowInputError(uri, "version", "", "give a version (models:/NAME/3) or an alias "
                                    "(models:/NAME@champion)")
    if not (version.isdigit() and int(version) > 0) and version != "latest":
        raise SqueezeflowInputError(uri, "version", version, "expected a positive integer or 'latest'")
    return ModelRef(text, name, version=version)


def open_client(tracking_uri: str):
    """A read-only look at a store: an MlflowClient, without creating a SQLite file that is not there."""
    import os

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    if tracking_uri.startswith("sqlite:///"):
        path = Path(tracking_uri.removeprefix("sqlite:///"))
        if not path.is_file():
            raise SqueezeflowInputError("command line", "tracking_uri", tracking_uri,
                                        "no MLflow store there (run the lifecycle first, or give --tracking-uri)")
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def _client(source):
    """An MlflowClient from a Tracker or a client."""
    return getattr(source, "client", source)


def resolve_version(source, uri: str):
    """The model version a URI names; a missing model, version or alias raises SqueezeflowInputError."""
    from mlflow.exceptions import MlflowException

    ref, client = parse_model_uri(uri), _client(source)
    try:
        model = client.get_registered_model(ref.name)
    except MlflowException:
        known = sorted(m.name for m in client.search_registered_models(max_results=1000))
        raise SqueezeflowInputError(ref.uri, "name", ref.name, f"no such registered model; known: {known}") from None
    versions = sorted(client.search_model_versions(f"name = '{ref.name}'"), key=lambda v: int(v.version))
    if ref.alias is not None:
        if ref.alias not in (model.aliases or {}):
            have = sorted(model.aliases or {})
            raise SqueezeflowInputError(ref.uri, "alias", ref.alias, f"no such alias on model '{ref.name}'"
                                        + (f"; aliases: {have}" if have else " (it has no aliases)"))
        return ref, client.get_model_version_by_alias(ref.name, ref.alias)
    if ref.version == "latest":
        if not versions:
            raise SqueezeflowInputError(ref.uri, "version", ref.version, f"model '{ref.name}' has no versions")
        return ref, client.get_model_version(ref.name, versions[-1].version)
    if ref.version not in {str(v.version) for v in versions}:
        raise SqueezeflowInputError(ref.uri, "version", ref.version, f"no such version of model '{ref.name}'; "
                                    f"known: {[int(v.version) for v in versions]}")
    return ref, client.get_model_version(ref.name, ref.version)


# --- reading runs ----------------------------------------------------------------------------------------------
class StoreReader:
    """Read-only access to runs and their artifacts in one MLflow store (a missing run or artifact reads as None)."""

    def __init__(self, client, ui_url: str):
        self.client, self.ui = client, ui_url.rstrip("/")

    def run(self, run_id: str | None):
        from mlflow.exceptions import MlflowException

        if not run_id:
            return None
        try:
            return self.client.get_run(run_id)
        except MlflowException:
            return None

    def run_url(self, run) -> str | None:
        return f"{self.ui}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}" if run is not None else None

    def search(self, experiment_id: str, filter_string: str) -> list:
        return list(self.client.search_runs([experiment_id], filter_string, max_results=1000,
                                            order_by=["attributes.start_time ASC"]))

    def children(self, parent) -> dict[str, Any]:
        """The parent's child runs by stage; of several runs of one stage, the last finished one."""
        out: dict[str, Any] = {}
        for r in self.search(parent.info.experiment_id, f"tags.`{PARENT_TAG}` = '{parent.info.run_id}'"):
            stage = r.data.tags.get(STAGE_TAG)
            if stage and (stage not in out or r.info.status == "FINISHED" or out[stage].info.status != "FINISHED"):
                out[stage] = r
        return out

    def producer(self, experiment_id: str, stage: str, md5: str, before_ms: int | None):
        """The run that built `stage`'s output with this md5: of the runs that did (reused = false), the last one
        started before `before_ms` (else the first one)."""
        if not md5:
            return None
        built = self.search(experiment_id, f"tags.`{STAGE_TAG}` = '{stage}' and tags.`{DVC}{stage}` = '{md5}' "
                                           f"and tags.`{REUSED_TAG}` = 'false'")
        built = [r for r in built if r.info.status == "FINISHED"] or built
        if not built:
            return None
        earlier = [r for r in built if before_ms is None or r.info.start_time <= before_ms]
        return earlier[-1] if earlier else built[0]

    def artifact_text(self, run_id: str, path: str) -> str | None:
        import os

        saved = os.environ.get(_PROGRESS)
        os.environ[_PROGRESS] = "false"  # no progress bar per small file on the terminal
        try:
            with tempfile.TemporaryDirectory() as tmp:
                return Path(self.client.download_artifacts(run_id, path, tmp)).read_text()
        except Exception:  # noqa: BLE001 - a missing or unreadable artifact is reported as missing
            return None
        finally:
            if saved is None:
                os.environ.pop(_PROGRESS, None)
            else:
                os.environ[_PROGRESS] = saved


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}" if abs(v) < 1e6 else f"{v:,.0f}"
    return str(v)


def _metrics_line(metrics: dict, keys: tuple[str, ...]) -> str:
    return ", ".join(f"{k} {_fmt(metrics[k])}" for k in keys if k in metrics)


def literal_value(text: str | None):
    """An MLflow param (always a string) back as the Python value it was logged from, where it is a literal."""
    if text is None:
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _short(value: Any) -> str:
    if isinstance(value, dict):
        if "arch" in value:  # a distill student: a factory with kwargs, an architecture, or the teacher's own
            kwargs = value.get("kwargs") or {}
            if value.get("factory") or kwargs:
                args = ",".join(f"{k}={_fmt(v)}" for k, v in kwargs.items())
                return f"{value.get('factory') or 'teacher'}({args})"
            hidden = value.get("hidden")
            if value["arch"] is None and hidden is None:
                return f"teacher(width={_fmt(value.get('width'))},channels={_fmt(value.get('channels'))})"
            return f"{value['arch'] or 'teacher'}{list(hidden) if hidden is not None else ''}".replace(" ", "")
        return "{" + ", ".join(f"{k}={_short(v)}" for k, v in value.items() if not isinstance(v, dict)) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_short(v) for v in value) + "]"
    return _fmt(value)


def recipe_summary(recipe: dict) -> str:
    """`tiny: distill(student=mlp[16]) -> prune-magnitude(sparsity=0.5)`: each step with its student (first) and
    its scalar settings (training settings left out)."""
    steps = []
    for step in recipe.get("steps") or []:
        kept = [(k, v) for k, v in step.items() if k != "technique" and v is not None and not isinstance(v, list)
                and (not isinstance(v, dict) or "arch" in v)]
        args = [f"{k}={_short(v)}" for k, v in sorted(kept, key=lambda kv: not isinstance(kv[1], dict))]
        steps.append(f"{step.get('technique', '?')}({', '.join(args)})")
    return f"{recipe.get('name', '?')}: " + (" -> ".join(steps) if steps else "(no steps)")


# --- the chain -------------------------------------------------------------------------------------------------
def build_lineage(source, uri: str, ui_url: str = DEFAULT_UI) -> Lineage:
    """The audit chain of the model version `uri` names, from a Tracker or an MlflowClient. Bad input (a malformed
    URI, an unknown model, version or alias) raises SqueezeflowInputError; missing runs become `problems`."""
    ref, mv = resolve_version(source, uri)
    rd = StoreReader(_client(source), ui_url)
    tags = dict(mv.tags or {})
    name, version = mv.name, str(mv.version)
    target = tags.get(TARGET_TAG, "")

    gate_run = rd.run(tags.get(GATE_RUN_TAG) or mv.run_id)
    parent = rd.run(gate_run.data.tags.get(PARENT_TAG)) if gate_run is not None else None
    kids = rd.children(parent) if parent is not None else {}
    exp_id = parent.info.experiment_id if parent is not None else (gate_run.info.experiment_id if gate_run else None)
    chain: list[Link] = []

    # pipeline run
    run_key = tags.get(DAGSTER_RUN_TAG) or (parent.data.tags.get(RUN_KEY_TAG) if parent else None)
    link = Link("pipeline", "pipeline run", f"Dagster run {run_key or '?'}", parent.info.run_id if parent else None,
                rd.run_url(parent), details={"dagster_run_id": run_key})
    if parent is None:
        link.problems.append(f"the version's run {mv.run_id} has no pipeline run in this store")
    chain.append(link)
    pparams = dict(parent.data.params) if parent is not None else {}
    ptags = dict(parent.data.tags) if parent is not None else {}

    # data source, fingerprint, check
    ds_name, ds_path = pparams.get("dataset.name"), pparams.get("dataset.path")
    ds_path = None if ds_path in (None, "", "None") else ds_path
    if ds_path is None and pparams.get("dataset.factory") not in (None, "", "None"):
        ds_path = pparams["dataset.factory"]  # the user's data function
    chain.append(Link("data-source", "data source", f"{ds_name or '?'}" + (f": {ds_path}" if ds_path else ""),
                      details={"dataset.name": ds_name, "dataset.path": ds_path}))
    ds_md5 = tags.get(f"{DVC}dataset") or ptags.get(f"{DVC}dataset", "")
    digests = {}
    for di in (parent.inputs.dataset_inputs if parent is not None and parent.inputs else []):
        digests[di.dataset.name] = di.dataset.digest
    fp = Link("data-fingerprint", "data fingerprint", f"dvc md5 {ds_md5 or '?'}"
              + ("; mlflow digests " + ", ".join(f"{k} {v}" for k, v in sorted(digests.items())) if digests else ""),
              details={"dvc_md5": ds_md5, "mlflow_digests": digests})
    if not digests:
        fp.problems.append("no MLflow dataset inputs logged on the pipeline run")
    chain.append(fp)
    check = ptags.get(DATA_CHECK_TAG)
    engine = ptags.get(engine_tag(DATA_CHECK_TAG), "great_expectations")
    ck = Link("data-check", "data check", f"{check} ({engine})" if check else "not recorded on the pipeline run",
              details={"verdict": check, "engine": engine if check else None})
    if not check:
        ck.problems.append(f"tag {DATA_CHECK_TAG} missing on the pipeline run")
    chain.append(ck)

    def stage_link(stage: str, step: str, label: str, metric_keys: tuple[str, ...]) -> Link:
        md5 = tags.get(f"{DVC}{stage}", "")
        here = kids.get(stage)
        problems = []
        if here is not None and md5 and here.data.tags.get(f"{DVC}{stage}") not in (md5, None):
            problems.append(f"md5 on the stage run ({here.data.tags.get(f'{DVC}{stage}')}) differs from the "
                            f"version's tag ({md5})")
        md5 = md5 or (here.data.tags.get(f"{DVC}{stage}", "") if here is not None else "")
        reused = here is not None and here.data.tags.get(REUSED_TAG) == "true"
        if here is not None and not reused:
            run, reused_in = here, None
        else:
            before = here.info.start_time if here is not None else (parent.info.start_time if parent else None)
            run = rd.producer(exp_id, stage, md5, before) if exp_id else None
            reused_in = here
            if run is None:
                problems.append(f"no run that built {stage} (md5 {md5 or '?'}) in this store"
                                + ("" if here is not None else "; the pipeline run has no run of this stage either"))
        metrics = dict(run.data.metrics) if run is not None else {}
        summary = _metrics_line(metrics, metric_keys or tuple(sorted(metrics))[:4]) or "-"  # a new stage: its first
        if reused_in is not None:
            summary += f" (reused in this pipeline run: built by Dagster run " \
                       f"{run.data.tags.get(RUN_KEY_TAG, '?') if run is not None else '?'})"
        source = model_source(run.data.params if run is not None else {})
        if source:
            summary += f"; {source}"
        details = {"stage": stage, "dvc_md5": md5, "metrics": metrics, "model_source": source or None,
                   "dagster_run_id": run.data.tags.get(RUN_KEY_TAG) if run is not None else None}
        return Link(step, label, summary, run.info.run_id if run is not None else None, rd.run_url(run),
                    reused_in.info.run_id if reused_in is not None else None, rd.run_url(reused_in), details, problems)

    stages = stage_chain(tags, target)
    for stage, base in stages:
        if base == "compressed":  # the recipe the chain's compression ran, as its run recorded it
            chain.append(_recipe_link(rd, kids, stage, next((s for s, b in stages if b == "finetuned"), "")))
        if base == "select":
            chain.append(_selection_link(rd, tags, kids, stage))
            continue
        step, label = STEPS.get(base, (base, base))
        if stage != base and stage.endswith(f"-{target}"):
            label = f"{label} {target}"
        chain.append(stage_link(stage, step, label, KEY_METRICS.get(base, ())))
    chain.append(_gate_link(rd, tags, gate_run))
    chain.append(_card_link(rd, gate_run))
    chain.append(_promotion_link(rd, name, version, tags, list(mv.aliases or [])))
    commit = tags.get(GIT_TAG) or ptags.get(GIT_TAG)
    git = Link("git-commit", "git commit", commit or "not recorded", details={"commit": commit})
    if parent is not None and ptags.get(GIT_TAG) and tags.get(GIT_TAG) and ptags[GIT_TAG] != tags[GIT_TAG]:
        git.problems.append(f"the pipeline run says {ptags[GIT_TAG]}")
    chain.append(git)

    url = f"{rd.ui}/#/models/{quote(name, safe='')}/versions/{version}"
    return Lineage(ref.uri, name, version, sorted(mv.aliases or []), mv.description or "", url, chain)


def stage_chain(tags: dict, target: str) -> list[tuple[str, str]]:
    """The stages that made the version's file, in order, as (stage, template) pairs: as its registration recorded
    them from the stage registry (CHAIN_TAG), else the chain of versions registered before that tag."""
    recorded = tags.get(CHAIN_TAG)
    if recorded:
        return [(stage, base) for stage, base in json.loads(recorded)]
    return [("dataset", "dataset"), ("teacher", "teacher"), ("compressed", "compressed"), ("finetuned", "finetuned"),
            ("exported", "exported"), (stage_name("select", target), "select"), (stage_name("build", target), "build"),
            (stage_name("validate", target), "validate")]


def _selection_link(rd: StoreReader, tags: dict, kids: dict, stage: str) -> Link:
    """Which recipe the target deployed and why (the version's tags, written from its select stage)."""
    run = kids.get(stage)
    chosen = tags.get(RECIPE_TAG)
    summary = (f"{chosen}: {tags.get(RECIPE_SELECTION_TAG, '')}" if chosen
               else "the run's recipe (registered before per-target recipe selection was recorded)")
    return Link("selection", "recipe selection", summary, run.info.run_id if run else None, rd.run_url(run),
                details={"recipe": chosen, "reason": tags.get(RECIPE_SELECTION_TAG)})


def _recipe_link(rd: StoreReader, kids: dict, compressed: str, finetuned: str) -> Link:
    """The resolved recipe as the compressed (and finetuned) stage run recorded it: the artifact, else the params."""
    comp, fine = kids.get(compressed), kids.get(finetuned)
    link = Link("recipe", "recipe", "not recorded", comp.info.run_id if comp else None, rd.run_url(comp))
    if comp is None:
        link.problems.append(f"the pipeline run has no {compressed} stage run")
        return link
    text = rd.artifact_text(comp.info.run_id, "recipe.yaml")
    import yaml

    recipe, source = None, None
    if text is not None:
        recipe, source = yaml.safe_load(text), "recipe.yaml"
    elif _recipe_prefix(comp.data.params, "name"):
        p, pre = comp.data.params, _recipe_prefix(comp.data.params, "name")
        steps = literal_value(p.get(f"{pre}steps")) or []
        recipe, source = {"name": p[f"{pre}name"], "steps": steps}, "params"
    finetune = None
    if fine is not None:
        ft = rd.artifact_text(fine.info.run_id, "recipe-finetune.yaml")
        pre = _recipe_prefix(fine.data.params, "finetune.")
        finetune = yaml.safe_load(ft) if ft is not None else {
            k.removeprefix(f"{pre}finetune."): literal_value(v) for k, v in fine.data.params.items()
            if pre and k.startswith(f"{pre}finetune.")} or None
    if recipe is None:
        link.problems.append("no recipe.yaml artifact or recipe.* params on the compressed run")
        return link
    link.summary = recipe_summary(recipe)
    train = (finetune or {}).get("train") if isinstance(finetune, dict) else None
    if isinstance(finetune, dict) and "finetune" in finetune:  # recipe-finetune.yaml may hold the whole section
        train = (finetune["finetune"] or {}).get("train")
    if isinstance(train, dict) and "epochs" in train:
        link.summary += f"; recovery fine-tuning {train['epochs']} epochs"
    elif fine is not None and finetune is None:
        link.summary += "; no recovery fine-tuning"
    link.details = {"name": recipe.get("name"), "steps": recipe.get("steps"), "finetune": finetune, "from": source}
    return link


def _recipe_prefix(params: dict, field: str) -> str:
    """The prefix of a stage run's recipe params: `recipe.recipes.<key>.` (`recipe.main.` before recipe stages).
    `field`: a param name (`name`) or a section (`finetune.`)."""
    for key in sorted(params):
        if key.startswith(RECIPE_PARAMS) and (f".{field}" in key if field.endswith(".") else key.endswith(f".{field}")):
            return key[:key.index(f".{field}") + 1]
    return ""


def _gate_link(rd: StoreReader, tags: dict, gate_run) -> Link:
    verdict = tags.get(GATE_TAG) or (gate_run.data.tags.get(GATE_TAG) if gate_run else None)
    champ = tags.get(GATE_CHAMPION_TAG) or (gate_run.data.tags.get(GATE_CHAMPION_TAG)
                                                      if gate_run else None)
    report_uri = tags.get(GATE_REPORT_TAG) or (f"runs:/{gate_run.info.run_id}/gate_report.md"
                                                         if gate_run else None)
    against = "no champion (absolute budgets only)" if champ in (None, "", "none") else f"champion {champ}"
    link = Link("gate", "gate", f"{(verdict or 'no verdict').upper()} against {against}; report {report_uri}",
                gate_run.info.run_id if gate_run else None, rd.run_url(gate_run),
                details={"verdict": verdict, "champion": None if champ in (None, "", "none") else champ,
                         "report_uri": report_uri})
    if gate_run is None:
        link.problems.append("the gate run is not in this store")
        return link
    if gate_run.data.tags.get(GATE_TAG) not in (None, verdict):
        link.problems.append(f"the gate run says {gate_run.data.tags.get(GATE_TAG)}, the version {verdict}")
    text = rd.artifact_text(gate_run.info.run_id, "gate_report.json")
    if text is None:
        link.problems.append("gate_report.json missing from the gate run")
        return link
    report = json.loads(text)
    failed = [c.get("message", c.get("name")) for c in report.get("checks", []) if not c.get("passed")]
    notes = [n for n in report.get("notes", []) if not n.startswith("no champion yet")]
    link.notes.extend(notes)
    link.details.update({"failed_checks": failed, "notes": report.get("notes", []),
                         "checks": [c.get("name") for c in report.get("checks", [])],
                         "created_at": report.get("created_at")})
    if failed:
        link.summary += "; failed: " + "; ".join(failed)
    return link


def _card_link(rd: StoreReader, gate_run) -> Link:
    """The version's model card (squeezeflow.tracking.model_card), an artifact of its gate run."""
    names = []
    if gate_run is not None:
        try:
            names = [a.path for a in rd.client.list_artifacts(gate_run.info.run_id)]
        except Exception:  # noqa: BLE001 - an unreadable artifact store reads as no card
            names = []
    if gate_run is None or "model_card.md" not in names:
        return Link("model-card", "model card", "not published (versions registered before model cards)")
    uri = f"runs:/{gate_run.info.run_id}/model_card.md"
    return Link("model-card", "model card", f"{uri} (also the version's description in the MLflow UI; print it: "
                "squeezeflow lineage URI --card)", gate_run.info.run_id, rd.run_url(gate_run), details={"uri": uri})


def _history(client, name: str) -> list:
    """The promotion history without creating its experiment when a store has none (this module only reads)."""
    if client.get_experiment_by_name(HISTORY_EXPERIMENT) is None:
        return []
    return history(type("ReadOnly", (), {"client": client})(), name)


def _promotion_link(rd: StoreReader, name: str, version: str, tags: dict, aliases: list[str]) -> Link:
    records = _history(rd.client, name)
    mine = [r for r in records if r.version == version]
    after = [r for r in records if r.previous == version and r.version != version]
    aliases_text = ", ".join(sorted(aliases)) or "none"
    if not mine and not tags.get(PROMOTED_BY_TAG):
        summary = "not promoted" + (f" (aliases: {aliases_text})" if aliases else "")
        return Link("promotion", "promotion", summary, details={"promoted": False, "aliases": sorted(aliases),
                                                               "history": []})
    last = mine[-1] if mine else None
    who = tags.get(PROMOTED_BY_TAG) or (last.promoted_by if last else "?")
    at = tags.get(PROMOTED_AT_TAG) or (last.at if last else "?")
    why = tags.get(PROMOTION_REASON_TAG) or (last.reason if last else "")
    prev = tags.get(PREVIOUS_CHAMPION_TAG, last.previous if last else "") or None
    forced = tags.get(FORCED_TAG, str(last.forced).lower() if last else "false") == "true"
    record_id = tags.get(PROMOTION_RUN_TAG) or (last.record_run_id if last else None)
    record = rd.run(record_id)
    summary = (f"{last.action if last else 'promote'} by {who} at {at}: {why!r}; previous champion "
               f"{'v' + prev if prev else 'none'}; forced {str(forced).lower()}; aliases now: {aliases_text}")
    later = [r for r in after if r.seq > (last.seq if last else 0)]
    if later:
        summary += f"; replaced by v{later[0].version} at {later[0].at} ({later[0].action} by {later[0].promoted_by})"
    link = Link("promotion", "promotion", summary, record_id, rd.run_url(record), details={
        "promoted": True, "promoted_by": who, "promoted_at": at, "reason": why, "previous_champion": prev,
        "forced": forced, "action": last.action if last else None, "aliases": sorted(aliases),
        "replaced_by": later[0].version if later else None,
        "history": [r.to_dict() for r in mine]})
    if record is None and record_id:
        link.problems.append(f"the promotion record run {record_id} is not in this store")
    return link


# --- text ------------------------------------------------------------------------------------------------------
def render_text(lineage: Lineage) -> str:
    width = max(len(x.label) for x in lineage.chain) + 2
    lines = [f"{lineage.uri} -> {lineage.model_name} version {lineage.version} "
             f"(aliases: {', '.join(lineage.aliases) or 'none'})", f"  {lineage.url}"]
    summary = lineage.description.split("<!-- model card -->")[0].strip()  # the card follows it: --card prints it
    if summary:
        lines.append(f"  {summary}")
    lines.append("")
    pad = " " * (width + 2)
    for x in lineage.chain:
        lines.append(f"  {x.label:<{width}}{x.summary}")
        if x.run_id:
            lines.append(f"{pad}run {x.run_id}  {x.url}")
        if x.reused_in_run_id:
            lines.append(f"{pad}reused in run {x.reused_in_run_id}  {x.reused_in_url}")
        for n in x.notes:
            lines.append(f"{pad}note: {n}")
        for p in x.problems:
            lines.append(f"{pad}! {p}")
    return "\n".join(lines) + "\n"


def model_source(params: dict[str, str]) -> str:
    """The user's model as the teacher run recorded it (params inputs.model.*): factory, kwargs, and the sha256 of
    the factory's file and of the checkpoint. Empty for a built-in model."""
    pre = INPUTS_PARAMS + "model."
    src = {k[len(pre):]: v for k, v in params.items() if k.startswith(pre)}
    if src.get("kind", "builtin") == "builtin":
        return ""
    kwargs = {k[len("kwargs."):]: v for k, v in src.items() if k.startswith("kwargs.")}
    parts = [f"model {src.get('factory', '?')}({', '.join(f'{k}={v}' for k, v in sorted(kwargs.items()))})",
             f"factory sha256 {src.get('factory_sha256', '?')[:12]}"]
    if src.get("checkpoint") not in (None, "None"):
        parts.append(f"checkpoint {src['checkpoint']} sha256 {src.get('checkpoint_sha256', '?')[:12]}")
    return ", ".join(parts)
