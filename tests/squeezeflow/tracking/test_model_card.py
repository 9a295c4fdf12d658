"""Model cards on a real MLflow store written as the lifecycle writes it (tests/squeezeflow/tracking/test_lineage.py's
`pipeline`): published as an artifact and as the version's description, linked from the lineage, and written again
when the promotion history changes."""

from squeezeflow.tracking.lineage import build_lineage
from squeezeflow.tracking.model_card import MARKER, card_for, load, publish, summary_of
from tests.squeezeflow.tracking.test_lineage import MODEL, auto_promote, md5s, pipeline


def test_a_card_is_published_linked_and_rewritten_when_its_history_changes(tracker, tmp_path):
    v1, kids, gate1 = pipeline(tracker, tmp_path, "run-one", md5s("a"))
    assert build_lineage(tracker, f"models:/{MODEL}/1").link("model-card").run_id is None  # nothing published yet
    auto_promote(tracker, tmp_path, v1, "run-one")
    card, uri = publish(tracker, MODEL, v1)
    assert uri == f"runs:/{gate1}/model_card.md" and load(tracker, MODEL, v1) == (card, uri)
    assert card.startswith(f"# Model card: {MODEL} v1\n")
    for section in ("## Data", "## Teacher", "## Compression", "## Target and runtime",
                    "## Metrics on the target's runtime (test split)", "## Gate report", "## Promotion history"):
        assert f"\n{section}\n" in card, section
    assert "- source: npz: /data/data.npz" in card and "dataset-a-md5" in card
    assert "| 88.50 |" in card and "### Gate PASSED: cpu-fp32" in card
    assert "| auto: became champion | squeezeflow (auto) | gate passed in Dagster run run-one |" in card
    description = tracker.client.get_model_version(MODEL, v1).description
    summary = summary_of(description)
    assert summary.startswith("cpu-fp32: accuracy 88.50%") and description.count(summary) == 1  # shown once
    assert description == summary + MARKER + card.replace(f"\n\n{summary}\n", "\n", 1)
    assert build_lineage(tracker, f"models:/{MODEL}/1").link("model-card").details["uri"] == uri

    v2, _, _ = pipeline(tracker, tmp_path, "run-two", md5s("b"), champion=v1)
    auto_promote(tracker, tmp_path, v2, "run-two")
    assert "replaced by v2" not in load(tracker, MODEL, v1)[0]  # as published before the move
    publish(tracker, MODEL, v1)
    history = load(tracker, MODEL, v1)[0].split("## Promotion history")[1]
    assert "auto: became champion" in history and "replaced by v2 (auto)" in history
    v2_card = card_for(tracker, MODEL, v2)[0]
    assert "auto: became champion (replacing v1)" in v2_card and "PASSED against v1" in v2_card
