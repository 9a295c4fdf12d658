"""`squeezeflow lineage` on two real generations of one model (real Dagster, MLflow, DVC, GX, ONNX Runtime):
trained on a .npz file, then retrained on changed data. The two chains must differ exactly where they should."""

import json

import numpy as np
import pytest
from mlflow import MlflowClient

from pipelines.cli import main
from pipelines.runner import run_lifecycle
from squeezeflow.tracking.model_card import MARKER, summary_of
from squeezeflow.workspace import Workspace
from tests.conftest import lifecycle_env, make_workspace

pytestmark = pytest.mark.slow
MODEL = "squeezeflow-data-cpu-fp32"
UI = "http://127.0.0.1:5000"
STAGE_STEPS = ["dataset", "teacher", "compressed", "finetuned", "exported", "build", "validation"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("lineage")
    with lifecycle_env(base):
        yield base


@pytest.fixture(scope="module")
def two_generations(env):
    from sklearn.datasets import load_digits

    root = make_workspace(env / "ws", targets=("cpu-fp32",))
    d = load_digits()
    x, y = (d.images / 16.0).astype(np.float32), d.target.astype(np.int64)
    first = env / "data.npz"
    np.savez(first, x=x, y=y)
    rc1 = run_lifecycle(Workspace(root), ["dataset.name=npz", f"dataset.path={first}"], ["cpu-fp32"])
    # The retrain on changed data: the same file, overwritten with 100 samples dropped (same registered model).
    second = first
    np.savez(second, x=x[100:], y=y[100:])
    rc2 = run_lifecycle(Workspace(root), ["dataset.name=npz", f"dataset.path={second}"], ["cpu-fp32"])
    uri = f"sqlite:///{root / '.squeezeflow' / 'mlflow.db'}"
    return root, (rc1, rc2), MlflowClient(tracking_uri=uri, registry_uri=uri), (first, second)


def lineage(root, capsys, *args) -> dict:
    capsys.readouterr()
    assert main(["--root", str(root), "lineage", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def links(chain: dict) -> dict[str, dict]:
    return {x["step"]: x for x in chain["chain"]}


def test_two_generations_differ_where_they_should(two_generations, capsys):
    root, (rc1, rc2), client, (first, second) = two_generations
    v2_gate = client.get_model_version(MODEL, "2").tags["squeezeflow.gate"]
    assert rc1 == 0 and rc2 == (0 if v2_gate == "passed" else 3)
    one, two = links(lineage(root, capsys, f"models:/{MODEL}/1")), links(lineage(root, capsys, f"models:/{MODEL}/2"))
    for chain in (one, two):  # a consistent store: every link found, nothing reused in these cold runs
        assert all(not x["problems"] for x in chain.values()), [x["problems"] for x in chain.values()]
        assert all(x["reused_in_run_id"] is None for x in chain.values())
    # data: same kind of source, another file, another fingerprint, both checked by Great Expectations
    assert one["data-source"]["summary"] == f"npz: {first}" and two["data-source"]["summary"] == f"npz: {second}"
    fp1, fp2 = one["data-fingerprint"]["details"], two["data-fingerprint"]["details"]
    assert fp1["dvc_md5"] and fp2["dvc_md5"] and fp1["dvc_md5"] != fp2["dvc_md5"]
    assert set(fp1["mlflow_digests"]) == set(fp2["mlflow_digests"]) == {"npz-train", "npz-val", "npz-test"}
    assert all(fp1["mlflow_digests"][k] != fp2["mlflow_digests"][k] for k in fp1["mlflow_digests"])
    assert one["data-check"]["details"]["verdict"].startswith("passed (")
    assert two["data-check"]["details"]["verdict"].startswith("passed (")
    # every run that produced something is another run, from the version's own Dagster run
    runs1 = {s: one[s]["run_id"] for s in STAGE_STEPS + ["pipeline", "gate"]}
    runs2 = {s: two[s]["run_id"] for s in STAGE_STEPS + ["pipeline", "gate"]}
    assert all(runs1.values()) and all(runs2.values()) and not set(runs1.values()) & set(runs2.values())
    for chain, v in ((one, "1"), (two, "2")):
        dagster_run = client.get_model_version(MODEL, v).tags["squeezeflow.dagster_run_id"]
        assert chain["pipeline"]["details"]["dagster_run_id"] == dagster_run
        assert all(chain[s]["details"]["dagster_run_id"] == dagster_run for s in STAGE_STEPS)
        assert chain["gate"]["run_id"] == client.get_model_version(MODEL, v).run_id
        teacher = client.get_run(chain["teacher"]["run_id"])
        tt, info = teacher.data.tags, teacher.info
        assert tt["squeezeflow.stage"] == "teacher" and tt["squeezeflow.reused"] == "false"
        assert chain["teacher"]["url"] == f"{UI}/#/experiments/{info.experiment_id}/runs/{info.run_id}"
    m1, m2 = one["validation"]["details"]["metrics"], two["validation"]["details"]["metrics"]
    assert m1["test_samples"] == 360 and m2["test_samples"] == 340  # validated on its own data's test split
    # the same recipe and code
    assert one["recipe"]["summary"] == two["recipe"]["summary"]
    assert one["recipe"]["summary"].startswith("tiny: distill(student=mlp[16]") and \
        "-> prune-magnitude(sparsity=0.5" in one["recipe"]["summary"]
    assert one["git-commit"]["summary"] == two["git-commit"]["summary"]
    # the gate: v1 against no champion, v2 against v1; each its own report
    assert one["gate"]["details"]["champion"] is None and one["gate"]["details"]["verdict"] == "passed"
    assert two["gate"]["details"]["champion"] == "v1" and two["gate"]["details"]["verdict"] == v2_gate
    assert one["gate"]["details"]["report_uri"] == f"runs:/{runs1['gate']}/gate_report.md"
    assert two["gate"]["details"]["report_uri"] == f"runs:/{runs2['gate']}/gate_report.md"
    assert any("data (or its split) changed" in n for n in two["gate"]["notes"])
    # promotion: v1 by the pipeline; v2 only if its gate passed
    p1, p2 = one["promotion"]["details"], two["promotion"]["details"]
    assert (p1["promoted_by"], p1["action"], p1["previous_champion"], p1["forced"]) == ("squeezeflow (auto)", "auto",
                                                                                      None, False)
    if v2_gate == "passed":
        assert (p2["promoted_by"], p2["previous_champion"]) == ("squeezeflow (auto)", "1") and p1["replaced_by"] == "2"
    else:
        assert two["promotion"]["summary"] == "not promoted" and p1["replaced_by"] is None


def test_champion_alias_and_text_output(two_generations, capsys):
    root, _, client, _ = two_generations
    expected = "2" if client.get_model_version(MODEL, "2").tags["squeezeflow.gate"] == "passed" else "1"
    assert lineage(root, capsys, f"models:/{MODEL}@champion")["version"] == expected
    capsys.readouterr()
    assert main(["--root", str(root), "lineage", f"models:/{MODEL}@champion"]) == 0
    text = capsys.readouterr().out
    mv = client.get_model_version(MODEL, expected)
    assert text.startswith(f"models:/{MODEL}@champion -> {MODEL} version {expected} (aliases: champion)\n"
                           f"  {UI}/#/models/{MODEL}/versions/{expected}\n  {summary_of(mv.description)}\n")
    for label in ("pipeline run", "data source", "data fingerprint", "data check", "teacher", "recipe", "compressed",
                  "finetuned", "export (ONNX)", "build cpu-fp32", "validation cpu-fp32", "gate", "model card",
                  "promotion", "git commit"):
        assert f"\n  {label} " in text, label
    assert f"run {mv.run_id}  {UI}/#/experiments/" in text
    assert not [line for line in text.splitlines() if line.strip().startswith("! ")]  # no problem reported


def card(root, capsys, uri: str) -> str:
    capsys.readouterr()
    assert main(["--root", str(root), "lineage", "--card", uri]) == 0
    return capsys.readouterr().out


def test_every_version_has_a_model_card_in_mlflow_and_dagster(two_generations, capsys):
    from dagster import AssetKey, DagsterInstance

    root, _, client, (first, _) = two_generations
    v2_passed = client.get_model_version(MODEL, "2").tags["squeezeflow.gate"] == "passed"
    for v in ("1", "2"):
        chain = links(lineage(root, capsys, f"models:/{MODEL}/{v}"))
        text = card(root, capsys, f"models:/{MODEL}/{v}")
        assert text.startswith(f"# Model card: {MODEL} v{v}\n")
        assert chain["model-card"]["details"]["uri"] == f"runs:/{chain['gate']['run_id']}/model_card.md"
        # the data and its fingerprint, what each compression step did, the target, metrics with intervals
        assert f"- source: npz: {first}" in text and chain["data-fingerprint"]["details"]["dvc_md5"] in text
        steps = [line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| ")]
        assert steps[steps.index("teacher"):steps.index("teacher") + 4] == ["teacher", "1. distill",
                                                                          "2. prune-magnitude",
                                                                          "recovery fine-tuning"]
        assert "builder: ort-fp32" in text and '"runtime": "onnxruntime"' in text
        metrics = chain["validation"]["details"]["metrics"]
        assert f"| {metrics['accuracy']:.2f} | {metrics['accuracy_ci95_low']:.2f} .. " in text
        verdict = client.get_model_version(MODEL, v).tags["squeezeflow.gate"]
        assert f"### Gate {verdict.upper()}: cpu-fp32" in text
        # the version's description: its summary, then the same card
        description = client.get_model_version(MODEL, v).description
        summary, body = description.split(MARKER)
        assert summary == summary_of(description) and f"\n\n{summary}\n" in text
        assert body == text.replace(f"\n\n{summary}\n", "\n", 1)  # the card, its summary shown once above it
    v1 = card(root, capsys, f"models:/{MODEL}/1")
    assert "| auto: became champion | squeezeflow (auto) |" in v1
    assert ("replaced by v2 (auto)" in v1) == v2_passed  # the history changed: v1's card was written again
    # in Dagster: the promoted asset's last materialization carries v2's card (promoted, or held back by its gate)
    with DagsterInstance.get() as instance:
        [mat] = instance.fetch_materializations(AssetKey(["cpu_fp32", "promoted"]), limit=1).records
    meta = mat.asset_materialization.metadata
    assert meta["model_card"].value.startswith(f"# Model card: {MODEL} v2\n")


def test_bad_references_exit_2_naming_the_field(two_generations, capsys):
    root, _, client, _ = two_generations
    has_challenger = "challenger" in (client.get_registered_model(MODEL).aliases or {})
    cases = [(f"models:/{MODEL}/3", f"field 'version' = '3': no such version of model '{MODEL}'; known: [1, 2]"),
             (f"models:/{MODEL}@stable", "field 'alias' = 'stable': no such alias on model"),
             ("models:/squeezeflow-digits-cpu-fp32@champion", "field 'name' = 'squeezeflow-digits-cpu-fp32': no such "
                                                              f"registered model; known: ['{MODEL}']"),
             (f"{MODEL}/1", f"field 'uri' = '{MODEL}/1': expected models:/NAME/VERSION")]
    assert not has_challenger  # promotion is automatic for cpu-fp32: nothing waits for a person
    for uri, message in cases:
        capsys.readouterr()
        assert main(["--root", str(root), "lineage", uri]) == 2, uri
        err = capsys.readouterr().err
        assert err.startswith(f"error: {uri}: {message}") and err.count("\n") == 1, err
