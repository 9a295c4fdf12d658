"""The gate report: every value, interval, threshold and verdict, and which champion it was compared with."""

from __future__ import annotations

from datetime import UTC, datetime


def gate_report(target: str, model_name: str, candidate: dict, champion: dict | None, checks: list[dict],
                comparison: dict | None, run_key: str, notes: list[str] | None = None) -> dict:
    notes = list(notes or [])
    if champion is None:
        notes.append("no champion yet: only the absolute budgets apply")
    return {
        "target": target,
        "model_name": model_name,
        "verdict": "passed" if checks and all(c["passed"] for c in checks) else "failed",
        "candidate": candidate,
        "champion": champion,
        "checks": checks,
        "comparison": comparison,
        "notes": notes,
        "dagster_run_id": run_key,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _num(v, fmt: str = "{:.4g}") -> str:
    return "-" if v is None else fmt.format(v) if isinstance(v, (int, float)) else str(v)


def report_markdown(report: dict) -> str:
    champ = report["champion"]
    against = f"champion v{champ['version']} of `{report['model_name']}`" if champ else "no champion (first candidate)"
    lines = [f"### Gate {report['verdict'].upper()}: {report['target']}",
             f"Candidate `{report['candidate']['sha256'][:12]}` against {against}.", "",
             "| check | value | interval | threshold | verdict |", "|---|---|---|---|---|"]
    for c in report["checks"]:
        interval = f"{_num(c.get('low'))} .. {_num(c.get('high'))}" if "low" in c else ""
        threshold = c.get("threshold", c.get("budget"))
        lines.append(f"| {c['name']} | {_num(c.get('value'))} | {interval} | {_num(threshold)} | "
                     f"{'pass' if c['passed'] else '**FAIL**'} |")
    lines += ["", *[f"- {c['message']}" for c in report["checks"]], *[f"- note: {n}" for n in report["notes"]]]
    cmp = report.get("comparison")
    if cmp:
        acc, lat = cmp["accuracy"], cmp["latency"]
        lines += ["", f"Side by side on {acc['n']} test samples: champion {acc['champion_accuracy']:.2f}%, challenger "
                  f"{acc['challenger_accuracy']:.2f}% ({acc['challenger_only_correct']} right only by the challenger, "
                  f"{acc['champion_only_correct']} only by the champion); median latency {lat['champion_p50_ms']:.4f} "
                  f"ms vs {lat['challenger_p50_ms']:.4f} ms over {lat['pairs']} interleaved pairs."]
    return "\n".join(lines) + "\n"


def version_description(report: dict, metrics: dict, lineage: dict[str, str]) -> str:
    """The short human-readable summary shown on the model version in MLflow."""
    champ = report["champion"]
    regress = {c["name"]: c for c in report["checks"] if c["name"].endswith("_vs_champion")}
    parts = [f"{report['target']}: accuracy {_num(metrics.get('accuracy'), '{:.2f}')}%, "
             f"{_num(metrics.get('model_bytes'), '{:,}')} bytes, "
             f"p50 {_num(metrics.get('latency_p50_ms'), '{:.4f}')} ms.",
             f"Gate {report['verdict'].upper()}" + (f" vs champion v{champ['version']}" if champ
                                                   else " (no champion yet: absolute budgets only)")]
    shown = {"accuracy_vs_champion": ("accuracy ", "{:+.2f}", " pts"),
             "latency_vs_champion": ("latency x", "{:.3f}", "")}
    details = [f"{label}{_num(c.get('value'), fmt)}{unit} [{_num(c.get('low'), fmt)}, {_num(c.get('high'), fmt)}]"
               for key, (label, fmt, unit) in shown.items() if (c := regress.get(key))]
    if details:
        parts[-1] += ": " + ", ".join(details)
    parts[-1] += "."
    failed = [c["message"] for c in report["checks"] if not c["passed"]]
    if failed:
        parts.append("Failed: " + "; ".join(failed) + ".")
    parts.append("Lineage: " + ", ".join(f"{k} {v}" for k, v in lineage.items()) + ".")
    return " ".join(parts)
