from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

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


def majority_baseline(y_train: np.ndarray, y_test: np.ndarray) -> float:
    """Test accuracy in points of always predicting the train split's most frequent class; NaN if a split is empty."""
    if not len(y_train) or not len(y_test):
        return float("nan")
    labels, counts = np.unique(y_train, return_counts=True)
    hits = int(np.sum(np.asarray(y_test) == labels[counts.argmax()]))
    return hits * 100.0 / len(y_test)  # not mean() * 100: 0.9 * 100 != 90.0 in floats


def _baseline_check(acc, base, gain: float) -> dict:
    # Teacher and student can both sit at chance (e.g. unscaled data): only the baseline tells.
    need = base + gain * (100.0 - base) if _finite(base) else float("nan")
    ok = _finite(acc) and _finite(need) and acc >= need
    if _finite(acc) and _finite(need):
        message = (f"accuracy_over_baseline {acc:.4g}% {'reaches' if ok else 'is below'} the required {need:.4g}% "
                   f"(majority-class baseline {base:.4g}% plus {gain * 100:.3g}% of its error)")
    else:
        message = (f"accuracy_over_baseline: accuracy {acc!r} or majority-class baseline {base!r} is missing or not "
                   "a number: fail closed")
    return {"name": "accuracy_over_baseline", "value": acc, "budget": need, "baseline": base, "passed": ok,
            "message": message}


def _drop_check(drop: float, budget: float, n) -> dict:
    """Accuracy on n test samples moves in steps of 100/n points: a drop is counted from the first whole sample
    beyond the budget, so on 25 samples (4 points each) one sample more or less than the teacher is not read as a
    regression, while two are (measured: benchmarks/RESULTS.md, external data)."""
    step = 100.0 / n if _finite(n) and n > 0 else 0.0
    allowed = budget + step
    ok = _finite(drop) and drop <= allowed + 1e-9
    check = _check("accuracy_drop", drop, allowed, ok, " pts")
    check.update(budget_configured=budget, resolution=step)
    if step and _finite(drop):
        check["message"] += f" ({budget:g} pts plus one test sample of {int(n)}: {step:.3g} pts)"
    return check


def evaluate_gate(metrics: dict, teacher_accuracy: float, budgets: Budgets,
                  baseline_accuracy: float | None = None) -> GateVerdict:
    """Every value must be present and finite, and within its budget; anything else fails. `baseline_accuracy`:
    the majority-class baseline in points (see `majority_baseline`); None fails the baseline check. The teacher
    is measured on the same `test_samples` test samples as the model: the accuracy drop may reach the budget plus
    one sample's worth."""
    acc, p95, size = metrics.get("accuracy"), metrics.get("latency_p95_ms"), metrics.get("model_bytes")
    drop = teacher_accuracy - acc if _finite(acc) and _finite(teacher_accuracy) else float("nan")
    checks = [
        _drop_check(drop, budgets.max_accuracy_drop, metrics.get("test_samples")),
        _check("latency_p95_ms", p95, budgets.max_latency_p95_ms,
               _finite(p95) and p95 <= budgets.max_latency_p95_ms, " ms"),
        _check("model_bytes", size, budgets.max_model_bytes, _finite(size) and size <= budgets.max_model_bytes, " B"),
        _baseline_check(acc, baseline_accuracy, budgets.min_gain_over_baseline),
    ]
    if metrics.get("error"):  # validation could not run the model (crash, memory cap, timeout): the reason first
        checks.insert(0, {"name": "validation", "value": None, "budget": None, "passed": False,
                          "message": f"validation failed: {metrics['error']}"})
    return GateVerdict(all(c["passed"] for c in checks), checks)


def failed_reasons(checks: list[dict]) -> list[str]:
    """The failed checks' messages; when validation itself failed, only its reason (the budgets then all fail
    closed for want of numbers: saying so for each is noise)."""
    failed = [c for c in checks if not c["passed"]]
    first = [c for c in failed if c["name"] == "validation"]
    return [c["message"] for c in (first or failed)]
