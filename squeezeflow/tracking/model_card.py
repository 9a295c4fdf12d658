"""A model card per registered version: Markdown rendered from what MLflow holds about it (its lineage chain, the
compression steps, the target's configuration, the gate report, the promotion history), so the card says what the
store says. Published as the artifact `model_card.md` of the version's run and as the version's description (after
its one-line summary); re-published when the version's promotion history changes.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import yaml

from squeezeflow.tracking.lineage import DEFAULT_UI, Lineage, StoreReader, build_lineage, literal_value
from squeezeflow.tracking.promotion import PromotionRecord, history
from squeezeflow.tracking.registry import SHA_TAG
from squeezeflow.tracking.schema import GATE_RUN_TAG, RUNTIME_CONFIG_TAG, RUNTIME_TAG, TARGET_PARAMS, TARGET_TAG

CARD = "model_card.md"
MARKER = "\n\n<!-- model card -->\n"  # the version's description: its summary, then the card


def summary_of(description: str) -> str:
    return (description or "").split(MARKER)[0].strip()


def _num(value, fmt: str = "{:.4g}") -> str:
    if value is None or value == "":
        return "-"
    try:
        return fmt.format(float(value))
    except (TypeError, ValueError):
        return str(value)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    clean = [[str(c).replace("|", "\\|").replace("\n", " ") for c in row] for row in rows]
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *["| " + " | ".join(r) + " |" for r in clean]]


def _steps_rows(lineage: Lineage, steps: list[dict]) -> list[list[str]]:
    """What each step did to size and accuracy: the teacher, each recipe step, fine-tuning, export and build."""
    def metrics(step: str) -> dict:
        try:
            return lineage.link(step).details.get("metrics") or {}
        except KeyError:
            return {}

    teacher = metrics("teacher")
    rows = [["teacher", "", _num(teacher.get("parameters"), "{:,.0f}"), "", _num(teacher.get("test_accuracy"),
                                                                                     "{:.2f}")]]
    for s in steps:
        rows.append([f"{s.get('step')}. {s.get('technique')}", "",
                     _num(s.get("nonzero_parameters", s.get("parameters")), "{:,.0f}"),
                     _num(s.get("sparsity"), "{:.2f}") if s.get("sparsity") is not None else "",
                     _num(s.get("test_accuracy"), "{:.2f}")])
    fine = metrics("finetuned")
    if fine:
        rows.append(["recovery fine-tuning", "", _num(fine.get("nonzero_parameters"), "{:,.0f}"),
                     _num(fine.get("sparsity"), "{:.2f}"), _num(fine.get("test_accuracy"), "{:.2f}")])
    exported, built = metrics("exported"), metrics("build")
    if exported:
        rows.append(["exported (ONNX)", _num(exported.get("model_bytes"), "{:,.0f}"), "", "", ""])
    if built:
        rows.append(["target build", _num(built.get("model_bytes"), "{:,.0f}"), "", "", ""])
    return rows


def _history_rows(records: list[PromotionRecord], version: str) -> list[list[str]]:
    rows = []
    for r in records:
        if r.version == version:
            what = f"{r.action}: became champion" + (f" (replacing v{r.previous})" if r.previous else "")
        elif r.previous == version:
            what = f"replaced by v{r.version} ({r.action})"
        else:
            continue
        rows.append([r.at, what, r.promoted_by, r.reason + (" (forced)" if r.forced else "")])
    return rows


def render(lineage: Lineage, tags: dict, steps: list[dict], target_params: dict, gate_md: str,
           records: list[PromotionRecord]) -> str:
    name, version = lineage.model_name, lineage.version
    target = tags.get(TARGET_TAG, "?")
    gate = lineage.link("gate").details
    validation = lineage.link("validation").details.get("metrics") or {}
    data = lineage.link("data-source").summary
    out = [f"# Model card: {name} v{version}", "", summary_of(lineage.description) or "", "",
           *_table(["", ""], [
               ["target", f"{target} (runtime {tags.get(RUNTIME_TAG, 'onnxruntime')})"],
               ["gate", f"{(gate.get('verdict') or '?').upper()} against "
                        f"{gate.get('champion') or 'no champion (absolute budgets only)'}"],
               ["aliases now", ", ".join(lineage.aliases) or "none"],
               ["file", f"ONNX, sha256 `{tags.get(SHA_TAG, '?')}`"],
               ["registered by", f"Dagster run {lineage.link('pipeline').details.get('dagster_run_id') or '?'}, "
                                 f"git {lineage.link('git-commit').details.get('commit') or '?'}"],
               ["lineage", f"`squeezeflow lineage models:/{name}/{version}`"]]), "",
           "## Data", "",
           f"- source: {data}",
           f"- fingerprint: {lineage.link('data-fingerprint').summary}",
           f"- check: {lineage.link('data-check').summary}",
           f"- splits: {lineage.link('dataset').summary}", "",
           "## Teacher", "", f"- {lineage.link('teacher').summary}", "",
           "## Compression", "",
           f"- recipe: {lineage.link('recipe').summary}",
           f"- selection: {lineage.link('selection').summary}", "",
           *_table(["step", "bytes", "parameters (nonzero)", "sparsity", "test accuracy %"],
                   _steps_rows(lineage, steps)), "",
           "## Target and runtime", "",
           f"The runtime's session as validated (and as MLflow's pyfunc loads it): "
           f"`{tags.get(RUNTIME_CONFIG_TAG, '{}')}`. The target's profile:", "",
           "```yaml", yaml.safe_dump(target_params, sort_keys=True, default_flow_style=None, width=80).rstrip(), "```",
           "",
           "## Metrics on the target's runtime (test split)", "",
           *_table(["accuracy %", "95% interval", "p50 ms", "p95 ms", "p99 ms", "throughput /s", "bytes",
                    "peak RSS MB"],
                   [[_num(validation.get("accuracy"), "{:.2f}"),
                     f"{_num(validation.get('accuracy_ci95_low'), '{:.2f}')} .. "
                     f"{_num(validation.get('accuracy_ci95_high'), '{:.2f}')}",
                     _num(validation.get("latency_p50_ms")), _num(validation.get("latency_p95_ms")),
                     _num(validation.get("latency_p99_ms")), _num(validation.get("throughput_per_s"), "{:,.0f}"),
                     _num(validation.get("model_bytes"), "{:,.0f}"), _num(validation.get("peak_rss_mb"), "{:.1f}")]]),
           "", "## Gate report", "", gate_md or "(no gate report in the store)", "",
           "## Promotion history", ""]
    rows = _history_rows(records, version)
    out += _table(["when (UTC)", "what", "by", "why"], rows) if rows else ["Never champion."]
    return "\n".join(out).rstrip() + "\n"


def card_for(tracker, model_name: str, version: str, ui_url: str = DEFAULT_UI) -> tuple[str, str]:
    """(the card's Markdown, the run id it belongs to) for a registered version, from the store."""
    lineage = build_lineage(tracker, f"models:/{model_name}/{version}", ui_url)
    mv = tracker.client.get_model_version(model_name, str(version))
    tags = dict(mv.tags or {})
    reader = StoreReader(tracker.client, ui_url)
    compressed = lineage.link("compressed").run_id
    steps = json.loads(reader.artifact_text(compressed, "steps.json") or "[]") if compressed else []
    validation_run = reader.run(lineage.link("validation").run_id)
    params = dict(validation_run.data.params) if validation_run is not None else {}
    target_params: dict[str, dict] = {}  # the validation run's params: target.<section>.<field>
    for key, value in sorted(params.items()):
        section, _, field = key.removeprefix(TARGET_PARAMS).partition(".")
        if key.startswith(TARGET_PARAMS) and section in ("build", "measure", "budgets", "regression", "promotion"):
            if field:
                target_params.setdefault(section, {})[field] = literal_value(value)
            else:
                target_params[section] = value
    gate_run = lineage.link("gate").run_id or mv.run_id
    gate_md = reader.artifact_text(gate_run, "gate_report.md") or ""
    return render(lineage, tags, steps, target_params, gate_md, history(tracker, model_name)), gate_run


def read_card(client, lineage: Lineage) -> str | None:
    """The published card of the version a lineage describes, or None."""
    run_id = lineage.link("model-card").run_id
    return StoreReader(client, DEFAULT_UI).artifact_text(run_id, CARD) if run_id else None


def load(tracker, model_name: str, version: str) -> tuple[str, str] | None:
    """The card as last published for a version (Markdown, URI), or None."""
    mv = tracker.client.get_model_version(model_name, str(version))
    run_id = (mv.tags or {}).get(GATE_RUN_TAG) or mv.run_id
    text = StoreReader(tracker.client, DEFAULT_UI).artifact_text(run_id, CARD)
    return (text, f"runs:/{run_id}/{CARD}") if text is not None else None


def publish(tracker, model_name: str, version: str) -> tuple[str, str]:
    """Write the card as the artifact `model_card.md` of the version's run and into its description. Returns (the
    Markdown, the artifact's URI)."""
    card, run_id = card_for(tracker, model_name, str(version))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / CARD
        path.write_text(card)
        tracker.client.log_artifact(run_id, str(path))
    mv = tracker.client.get_model_version(model_name, str(version))
    summary = summary_of(mv.description)
    body = card.replace(f"\n\n{summary}\n", "\n", 1) if summary else card  # the description shows it above
    tracker.client.update_model_version(model_name, str(version), description=summary + MARKER + body)
    return card, f"runs:/{run_id}/{CARD}"
