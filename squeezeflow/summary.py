"""The end-of-run table per target, and the same summary as JSON for scripts."""

from __future__ import annotations

from pathlib import Path

from squeezeflow.io import read_json, write_json
from squeezeflow.naming import stage_name
from squeezeflow.workspace import Workspace

COLUMNS = [("target", "{}"), ("accuracy", "{:.2f}"), ("95% CI", "{}"), ("teacher", "{:.2f}"), ("bytes", "{:,}"),
           ("p50 ms", "{:.3f}"), ("p95 ms", "{:.3f}"), ("p99 ms", "{:.3f}"), ("thrpt/s", "{:,.0f}"),
           ("load ms", "{:.1f}"), ("RSS MB", "{:.0f}"), ("gate", "{}"), ("promoted", "{}"), ("model URI", "{}")]


def target_rows(ws: Workspace, targets: list[str], gates: dict[str, dict], promotions: dict[str, dict]) -> list[dict]:
    teacher_path = ws.stage_dir("teacher") / "metrics.json"
    teacher = read_json(teacher_path)["test_accuracy"] if teacher_path.exists() else None
    rows = []
    for t in targets:
        path = ws.stage_dir(stage_name("validate", t)) / "metrics.json"
        m = ws.stage_metrics(stage_name("validate", t)) if path.exists() else {}
        gate = gates.get(t)
        promo = promotions.get(t)
        rows.append({
            "target": t, "accuracy": m.get("accuracy"), "95% CI": _interval(m), "teacher": teacher,
            "bytes": m.get("model_bytes"), "test_samples": m.get("test_samples"),
            "p50 ms": m.get("latency_p50_ms"), "p95 ms": m.get("latency_p95_ms"), "p99 ms": m.get("latency_p99_ms"),
            "thrpt/s": m.get("throughput_per_s"), "load ms": m.get("load_ms"), "RSS MB": m.get("peak_rss_mb"),
            "gate": "not run" if gate is None else ("pass" if gate["passed"] else
                                                    "unavailable" if gate.get("unavailable") else "FAIL"),
            "gate_reasons": [] if gate is None else gate.get("reasons", []),
            "promoted": _promoted(promo), "model URI": promo["model_uri"] if promo else "-",
        })
    return rows


def _interval(m: dict) -> str | None:
    low, high = m.get("accuracy_ci95_low"), m.get("accuracy_ci95_high")
    return f"[{low:.1f}, {high:.1f}]" if low is not None and high is not None else None


def _promoted(promo: dict | None) -> str:
    """champion / challenger (waits for a person) / unchanged (nothing new) / no (not gated or gate failed)."""
    if not promo:
        return "no"
    alias = promo.get("alias", "")
    if not promo.get("new_version", True):
        return "unchanged"
    return alias if alias in ("champion", "challenger") else "unchanged"


def format_table(rows: list[dict]) -> str:
    def cell(fmt: str, v) -> str:
        return "-" if v is None else fmt.format(v)

    cells = [[name for name, _ in COLUMNS]] + [[cell(fmt, r.get(name)) for name, fmt in COLUMNS] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for r in rows:
        for reason in r.get("gate_reasons", []):
            lines.append(f"  {r['target']}: {reason}")
    return "\n".join(lines)


def write_summary(path: Path, summary: dict) -> Path:
    write_json(path, summary)
    return path
