"""The audit chain of a model version, on a real MLflow store holding runs, tags and versions written the way
squeezeflow/lifecycle writes them (small: no training)."""

import json

import numpy as np
import pytest
import yaml

from squeezeflow.errors import SqueezeflowInputError
from squeezeflow.gates.report import gate_report, report_markdown, version_description
from squeezeflow.tracking.lineage import build_lineage, parse_model_uri, recipe_summary, render_text
from squeezeflow.tracking.promotion import HISTORY_EXPERIMENT, promote_version, set_challenger

MODEL, TARGET = "squeezeflow-data-cpu-fp32", "cpu-fp32"
CORE = ["dataset", "teacher", "compressed", "finetuned", "exported"]
STAGES = CORE + [f"build-{TARGET}", f"validate-{TARGET}"]
DEPS = {"teacher": ["dataset"], "compressed": ["dataset", "teacher"], "finetuned": ["dataset", "teacher", "compressed"],
        "exported": ["dataset", "finetuned"], f"build-{TARGET}": ["dataset", "exported"],
        f"validate-{TARGET}": ["dataset", f"build-{TARGET}"]}
RECIPE = {"name": "tiny", "description": "",
          "steps": [{"technique": "distill", "student": {"arch": "mlp", "hidden": [16]}, "train": {"epochs": 6}},
                    {"technique": "prune-magnitude", "sparsity": 0.5}]}
UI = "http://ui.test:5000"


def pipeline(tracker, tmp_path, run_key: str, md5: dict[str, str], reused=(), champion=None, verdict="passed",
             data=None, commit="c0ffee", stages=tuple(STAGES), version_tags=None):
    """One pipeline run as the lifecycle logs it: parent, a child per stage, gate run, registered version.
    Returns (version, {stage: child run id}, gate run id)."""
    c = tracker.client
    lineage = {"squeezeflow.dagster_run_id": run_key, "mlflow.source.git.commit": commit,
               **{f"squeezeflow.dvc.{s}": m for s, m in md5.items()}}
    params = {"seed": 0, "dataset": {"name": "npz", "path": "/data/data.npz"}, "compress": {"recipe": "tiny"}}
    parent = tracker.parent_run(run_key, params, lineage)
    rng = np.random.default_rng(len(run_key) if data is None else data)
    for split in ("train", "val", "test"):
        tracker.log_dataset(parent, f"npz-{split}", "/data/data.npz", rng.random((8, 4)), rng.integers(0, 3, 8), split)
    tracker.set_tags(parent, {"squeezeflow.data_check": "passed (15 expectations)",
                              "squeezeflow.data_check.engine": "great_expectations"})
    kids = {}
    for stage in stages:
        tags = {"squeezeflow.reused": str(stage in reused).lower(), f"squeezeflow.dvc.{stage}": md5[stage],
                **{f"squeezeflow.dvc.{d}": md5[d] for d in DEPS.get(stage, [])}}
        metrics = {"teacher": {"test_accuracy": 90.0 + len(kids)}, f"validate-{TARGET}": {
            "accuracy": 88.5, "latency_p50_ms": 0.02, "latency_p95_ms": 0.04, "model_bytes": 5623}}.get(stage, {})
        sections = {"recipe.main.name": "tiny", "recipe.main.steps": RECIPE["steps"]} if stage == "compressed" else {}
        kids[stage] = tracker.stage_run(parent, run_key, stage, metrics, tags, sections)
        if stage == "compressed":
            f = tmp_path / run_key / "recipe.yaml"
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(yaml.safe_dump(RECIPE, sort_keys=False))
            c.log_artifact(kids[stage], str(f))
        if stage == "finetuned":
            f = tmp_path / run_key / "recipe-finetune.yaml"
            f.write_text(yaml.safe_dump({"train": {"epochs": 2, "patience": 2}}))
            c.log_artifact(kids[stage], str(f))
        tracker.end(kids[stage])
    checks = [{"name": "accuracy_drop", "value": 1.0, "threshold": 100.0, "passed": verdict == "passed",
               "message": "accuracy drop 1.0 pts" + ("" if verdict == "passed" else " exceeds 0.5")}]
    champ = None if champion is None else {"model_name": MODEL, "version": champion, "sha256": "ab" * 32}
    report = gate_report(TARGET, MODEL, {"path": "model.onnx", "sha256": "cd" * 32, "metrics": {}}, champ, checks,
                         None, run_key)
    (tmp_path / run_key / "gate_report.json").write_text(json.dumps(report))
    (tmp_path / run_key / "gate_report.md").write_text(report_markdown(report))
    gate = tracker.stage_run(parent, run_key, f"gate-{TARGET}", {"gate_passed": float(verdict == "passed")},
                             {"squeezeflow.gate": verdict, "squeezeflow.target": TARGET,
                              "squeezeflow.gate_champion": f"v{champion}" if champion else "none"})
    for f in ("gate_report.json", "gate_report.md"):
        c.log_artifact(gate, str(tmp_path / run_key / f))
    tracker.end(gate)
    tags = {**lineage, "squeezeflow.target": TARGET, "squeezeflow.gate": verdict, "squeezeflow.gate_run_id": gate,
            "squeezeflow.gate_report": f"runs:/{gate}/gate_report.md",
            "squeezeflow.gate_champion": f"v{champion}" if champion else "none", "squeezeflow.onnx_sha256": "cd" * 32,
            **(version_tags or {})}
    if not c.search_registered_models(f"name = '{MODEL}'"):
        c.create_registered_model(MODEL)
    mv = c.create_model_version(MODEL, source=f"{c.get_run(gate).info.artifact_uri}/model", run_id=gate, tags=tags,
                                description=version_description(report, {"accuracy": 88.5}, {"recipe": "tiny"}))
    tracker.end(parent)
    return str(mv.version), kids, gate


def md5s(tag: str, same=()) -> dict[str, str]:
    """Per stage md5: shared ones (`same`) identical across generations, the others tagged with `tag`."""
    return {s: (f"{s}-md5" if s in same else f"{s}-{tag}-md5") for s in STAGES}


def auto_promote(tracker, tmp_path, version, run_key):
    return promote_version(tracker, MODEL, version, "squeezeflow (auto)", f"gate passed in Dagster run {run_key}",
                           tmp_path / "registry.lock", action="auto", tags={"squeezeflow.dagster_run_id": run_key})


def test_every_link_names_the_run_that_produced_it(tracker, tmp_path):
    v, kids, gate = pipeline(tracker, tmp_path, "run-one", md5s("a"))
    auto_promote(tracker, tmp_path, v, "run-one")
    lin = build_lineage(tracker, f"models:/{MODEL}@champion", UI)
    assert (lin.version, lin.aliases) == ("1", ["champion"])
    assert lin.url == f"{UI}/#/models/{MODEL}/versions/1"
    assert lin.description.startswith("cpu-fp32: accuracy 88.50%") and "Gate PASSED" in lin.description
    assert [x.step for x in lin.chain] == [
        "pipeline", "data-source", "data-fingerprint", "data-check", "dataset", "teacher", "recipe", "compressed",
        "finetuned", "exported", "selection", "build", "validation", "gate", "model-card", "promotion", "git-commit"]
    exp = tracker.experiment_id
    for step, stage in [("dataset", "dataset"), ("teacher", "teacher"), ("compressed", "compressed"),
                        ("finetuned", "finetuned"), ("exported", "exported"), ("build", f"build-{TARGET}"),
                        ("validation", f"validate-{TARGET}")]:
        link = lin.link(step)
        assert link.run_id == kids[stage] and link.reused_in_run_id is None and not link.problems, (step, link)
        assert link.url == f"{UI}/#/experiments/{exp}/runs/{kids[stage]}"
        assert link.details["dvc_md5"] == f"{stage}-a-md5"
    assert lin.link("teacher").details["metrics"]["test_accuracy"] == 91.0
    assert lin.link("data-source").summary == "npz: /data/data.npz"
    fp = lin.link("data-fingerprint")
    assert fp.details["dvc_md5"] == "dataset-a-md5" and set(fp.details["mlflow_digests"]) == {"npz-train", "npz-val",
                                                                                           "npz-test"}
    assert lin.link("data-check").summary == "passed (15 expectations) (great_expectations)"
    recipe = lin.link("recipe")
    assert recipe.summary == ("tiny: distill(student=mlp[16]) -> prune-magnitude(sparsity=0.5); "
                              "recovery fine-tuning 2 epochs")
    assert recipe.details["from"] == "recipe.yaml" and recipe.run_id == kids["compressed"]
    g = lin.link("gate")
    assert (g.run_id, g.details["verdict"], g.details["champion"]) == (gate, "passed", None)
    assert g.details["report_uri"] == f"runs:/{gate}/gate_report.md" and g.details["failed_checks"] == []
    p = lin.link("promotion")
    assert p.details["promoted_by"] == "squeezeflow (auto)" and p.details["previous_champion"] is None
    assert p.details["action"] == "auto" and p.details["forced"] is False and p.details["replaced_by"] is None
    history_exp = tracker.client.get_experiment_by_name(HISTORY_EXPERIMENT).experiment_id
    assert p.url == f"{UI}/#/experiments/{history_exp}/runs/{p.run_id}"
    assert lin.link("git-commit").summary == "c0ffee"
    text = render_text(lin)
    assert text.startswith(f"models:/{MODEL}@champion -> {MODEL} version 1 (aliases: champion)\n")
    assert lin.description in text and f"run {kids['teacher']}  {UI}/#/experiments/{exp}/runs/{kids['teacher']}" in text
    assert "!" not in text  # no problems
    assert json.loads(json.dumps(lin.to_dict()))["chain"][5]["run_id"] == kids["teacher"]


def test_the_chain_is_the_one_its_registration_recorded_from_the_stage_registry(tracker, tmp_path):
    """A version names the stages that made its file (CHAIN_TAG, written from the stage registry): a stage lineage
    has never heard of is a link of its own, in its place, with its run."""
    from squeezeflow.tracking.schema import CHAIN_TAG

    stages = [*STAGES, f"profile-{TARGET}"]
    chain = [[s, s.removesuffix(f"-{TARGET}")] for s in stages]
    md5 = {s: f"{s}-md5" for s in stages}
    v, kids, _ = pipeline(tracker, tmp_path, "run-one", md5, stages=stages,
                          version_tags={CHAIN_TAG: json.dumps(chain)})
    lin = build_lineage(tracker, f"models:/{MODEL}/{v}", UI)
    steps = [x.step for x in lin.chain]
    assert steps[steps.index("validation") + 1] == "profile" and "selection" not in steps  # none in this chain
    link = lin.link("profile")
    assert link.label == f"profile {TARGET}" and link.run_id == kids[f"profile-{TARGET}"] and not link.problems


def test_a_reused_stage_points_at_the_earlier_run_that_built_it(tracker, tmp_path):
    same = ("dataset", "teacher")
    v1, kids1, _ = pipeline(tracker, tmp_path, "gen-one", md5s("a", same))
    auto_promote(tracker, tmp_path, v1, "gen-one")
    # a decoy: another run that only reused the teacher with that md5 (never the producer)
    pipeline(tracker, tmp_path, "decoy", md5s("d", same), reused=same, verdict="failed", champion="1")
    v2, kids2, _ = pipeline(tracker, tmp_path, "gen-two", md5s("b", same), reused=same, champion="1", verdict="failed")
    # a run that built the same md5 again, later: not what gen-two reused
    c = tracker.client
    later = c.create_run(tracker.experiment_id, start_time=c.get_run(kids2["teacher"]).info.start_time + 60_000,
                         tags={"squeezeflow.stage": "teacher", "squeezeflow.dvc.teacher": "teacher-md5",
                               "squeezeflow.reused": "false", "squeezeflow.run_key": "later"})
    c.set_terminated(later.info.run_id)
    lin = build_lineage(tracker, f"models:/{MODEL}/{v2}", UI)
    t = lin.link("teacher")
    assert t.run_id == kids1["teacher"] and t.reused_in_run_id == kids2["teacher"], t
    assert t.details["dagster_run_id"] == "gen-one" and "reused in this pipeline run" in t.summary
    assert t.details["metrics"]["test_accuracy"] == 91.0 and not t.problems
    assert lin.link("dataset").run_id == kids1["dataset"]
    for step, stage in [("compressed", "compressed"), ("build", f"build-{TARGET}")]:  # rebuilt in gen-two
        assert lin.link(step).run_id == kids2[stage] and lin.link(step).reused_in_run_id is None
    text = render_text(lin)
    assert f"reused in run {kids2['teacher']}" in text
    assert lin.link("gate").details["champion"] == "v1" and "against champion v1" in lin.link("gate").summary
    assert lin.link("gate").details["failed_checks"] == ["accuracy drop 1.0 pts exceeds 0.5"]
    assert lin.link("promotion").summary == "not promoted" and lin.link("promotion").run_id is None


def test_a_reused_stage_whose_builder_is_gone_is_reported_not_guessed(tracker, tmp_path):
    v, kids, _ = pipeline(tracker, tmp_path, "only", md5s("a"), reused=("teacher",))
    lin = build_lineage(tracker, f"models:/{MODEL}/{v}", UI)
    t = lin.link("teacher")
    assert t.run_id is None and t.reused_in_run_id == kids["teacher"]
    assert t.problems == ["no run that built teacher (md5 teacher-a-md5) in this store"]
    assert "! no run that built teacher" in render_text(lin)


def test_promotions_by_a_person_forced_and_replaced(tracker, tmp_path):
    v1, _, _ = pipeline(tracker, tmp_path, "r1", md5s("a"))
    auto_promote(tracker, tmp_path, v1, "r1")
    v2, _, _ = pipeline(tracker, tmp_path, "r2", md5s("b"), champion="1", verdict="failed")
    promote_version(tracker, MODEL, v2, "alice", "hotfix for customer X", tmp_path / "lock", force=True)
    v3, _, _ = pipeline(tracker, tmp_path, "r3", md5s("c"), champion="2")
    set_challenger(tracker, MODEL, v3)
    one, two = build_lineage(tracker, f"models:/{MODEL}/1"), build_lineage(tracker, f"models:/{MODEL}@champion")
    assert one.link("promotion").details["replaced_by"] == "2" and "replaced by v2" in one.link("promotion").summary
    p = two.link("promotion").details
    assert two.version == "2" and (p["promoted_by"], p["reason"], p["forced"], p["previous_champion"]) == (
        "alice", "hotfix for customer X", True, "1")
    assert "previous champion v1; forced true" in two.link("promotion").summary
    three = build_lineage(tracker, f"models:/{MODEL}@challenger")
    assert three.version == "3" and three.link("promotion").summary == "not promoted (aliases: challenger)"
    assert three.link("gate").details["champion"] == "v2"
    assert one.link("teacher").run_id != two.link("teacher").run_id != three.link("teacher").run_id


def test_reading_a_lineage_writes_nothing(tracker, tmp_path):
    v, _, _ = pipeline(tracker, tmp_path, "ro", md5s("a"))
    c = tracker.client
    before = [e.name for e in c.search_experiments()]
    runs = len(c.search_runs([tracker.experiment_id]))
    lin = build_lineage(tracker.client, f"models:/{MODEL}/latest")  # a bare MlflowClient works too
    assert lin.version == v and lin.link("promotion").summary == "not promoted"
    assert [e.name for e in c.search_experiments()] == before and HISTORY_EXPERIMENT not in before
    assert len(c.search_runs([tracker.experiment_id])) == runs


@pytest.mark.parametrize("uri, field, value", [
    ("squeezeflow-x/1", "uri", "squeezeflow-x/1"),
    ("runs:/abc/model", "uri", "runs:/abc/model"),
    ("models:/", "name", ""),
    ("models:/x", "version", ""),
    ("models:/x/", "version", ""),
    ("models:/x/0", "version", "0"),
    ("models:/x/v2", "version", "v2"),
    ("models:/x/1/2", "version", "1/2"),
    ("models:/x@", "alias", ""),
    ("models:/x@champ ion", "alias", "champ ion"),
    ("models:/@champion", "name", ""),
])
def test_a_malformed_uri_names_the_field_and_value(uri, field, value):
    with pytest.raises(SqueezeflowInputError) as err:
        parse_model_uri(uri)
    assert (err.value.field, err.value.value) == (field, value)
    assert str(err.value).startswith(f"{uri}: field '{field}' = {value!r}: ")


def test_good_uris_parse():
    assert parse_model_uri("models:/m-1.a/12") == parse_model_uri("models:/m-1.a/12")
    assert (parse_model_uri("models:/m/12").name, parse_model_uri("models:/m/12").version) == ("m", "12")
    assert parse_model_uri("models:/m@champion").alias == "champion"


def test_unknown_model_version_and_alias(tracker, tmp_path):
    with pytest.raises(SqueezeflowInputError, match=r"^models:/x@champion: field 'name' = 'x': no such registered "
                                                    r"model; known: \[\]$"):
        build_lineage(tracker, "models:/x@champion")
    pipeline(tracker, tmp_path, "r", md5s("a"))
    with pytest.raises(SqueezeflowInputError) as err:
        build_lineage(tracker, f"models:/{MODEL}@champion")
    assert str(err.value) == (f"models:/{MODEL}@champion: field 'alias' = 'champion': no such alias on model "
                              f"'{MODEL}' (it has no aliases)")
    with pytest.raises(SqueezeflowInputError) as err:
        build_lineage(tracker, f"models:/{MODEL}/2")
    assert str(err.value) == f"models:/{MODEL}/2: field 'version' = '2': no such version of model '{MODEL}'; known: [1]"


def test_the_recipe_falls_back_to_the_params_of_the_compressed_run(tracker, tmp_path):
    v, kids, _ = pipeline(tracker, tmp_path, "p", md5s("a"))
    import shutil
    from urllib.parse import urlparse

    shutil.rmtree(urlparse(tracker.client.get_run(kids["compressed"]).info.artifact_uri).path)
    recipe = build_lineage(tracker, f"models:/{MODEL}/{v}").link("recipe")
    assert recipe.details["from"] == "params"
    assert recipe.summary.startswith("tiny: distill(student=mlp[16]) -> prune-magnitude(sparsity=0.5)")
    assert recipe_summary({"name": "none", "steps": []}) == "none: (no steps)"
    # a user model's students: the factory with other kwargs, or the teacher itself made smaller
    student = {"arch": None, "factory": None, "kwargs": {"layers": 1}, "hidden": None, "width": 0.125}
    assert recipe_summary({"name": "s", "steps": [{"technique": "distill", "student": student}]}) == \
        "s: distill(student=teacher(layers=1))"
    pruned = {**student, "kwargs": {}, "channels": 0.25}
    assert recipe_summary({"name": "d", "steps": [{"technique": "distill", "student": pruned}]}) == \
        "d: distill(student=teacher(width=0.125,channels=0.25))"


def test_cli_exit_2_names_field_and_value(tracker, tmp_path, capsys, monkeypatch):
    from pipelines.cli import main

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = tracker.tracking_uri
    assert main(["--root", str(tmp_path), "lineage", "--tracking-uri", uri, "models:/x@champion"]) == 2
    assert capsys.readouterr().err == ("error: models:/x@champion: field 'name' = 'x': no such registered model; "
                                       "known: []\n")
    assert main(["lineage", "models:x", "--root", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: command line: field 'tracking_uri' = 'sqlite:///") and "no MLflow store" in err
    assert not (tmp_path / "nowhere").exists()
    v, _, _ = pipeline(tracker, tmp_path, "cli", md5s("a"))
    assert main(["lineage", "--tracking-uri", uri, "--ui-url", UI, "--json", f"models:/{MODEL}/{v}"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["version"] == v and got["chain"][-1] == {**got["chain"][-1], "step": "git-commit", "summary": "c0ffee"}
