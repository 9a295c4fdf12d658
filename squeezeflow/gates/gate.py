from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from squeezeflow.targets import Budgets


@dataclass(frozen=True)
class GateVerdict:
    passed: bool
    checks: list[dict] = field(default_factory=list)

    def reasons(self) -> list[str]:
        return [c["message"] for c in self.checks if not c["passed"]]

    def to_dict(self) -> dict:
        return asdict(self)


def _check(name: str, value, budget, ok: bool, unit: str) -> dict:
    verb = "within" if ok else "exceeds"
    return {"name": name, "value": value, "budget": budget, "passed": ok,
            "message": f"{name} {value:.4g}{unit} {verb} budget {budget:.4g}{unit}" if _finite(value)
            else f"{name} is missing or not a number ({value!r}): fail closed"}


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def evaluate_gate(metrics: dict, teacher_accuracy: float, budgets: Budgets) -> GateVerdict:
    """Every value must be present and finite, and within its budget; anything else fails."""
    acc, p95, size = metrics.get("accuracy"), metrics.get("latency_p95_ms"), metrics.get("model_bytes")
    drop = teacher_accuracy - acc if _finite(acc) and _finite(teacher_accuracy) else float("nan")
    checks = [
        _check("accuracy_drop", drop, budgets.max_accuracy_drop, _finite(drop) and drop <= budgets.max_accuracy_drop, " pts"),
        _check("latency_p95_ms", p95, budgets.max_latency_p95_ms, _finite(p95) and p95 <= budgets.max_latency_p95_ms, " ms"),
        _check("model_bytes", size, budgets.max_model_bytes, _finite(size) and size <= budgets.max_model_bytes, " B"),
    ]
    return GateVerdict(all(c["passed"] for c in checks), checks)
