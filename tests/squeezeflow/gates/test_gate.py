import pytest

from squeezeflow.gates import evaluate_gate
from squeezeflow.targets import Budgets

BUDGETS = Budgets(max_accuracy_drop=1.0, max_latency_p95_ms=2.0, max_model_bytes=1000)
GOOD = {"accuracy": 95.5, "latency_p95_ms": 1.0, "model_bytes": 800}


def test_within_budgets_passes():
    assert evaluate_gate(GOOD, 96.0, BUDGETS).passed


@pytest.mark.parametrize("change, failing", [
    ({"accuracy": 94.0}, "accuracy_drop"),
    ({"latency_p95_ms": 2.5}, "latency_p95_ms"),
    ({"model_bytes": 1001}, "model_bytes"),
])
def test_each_budget_can_fail(change, failing):
    v = evaluate_gate({**GOOD, **change}, 96.0, BUDGETS)
    assert not v.passed and [c["name"] for c in v.checks if not c["passed"]] == [failing]


@pytest.mark.parametrize("metrics, teacher", [({}, 96.0), ({**GOOD, "accuracy": float("nan")}, 96.0), (GOOD, float("nan")),
                                              ({**GOOD, "model_bytes": None}, 96.0)])
def test_missing_or_invalid_numbers_fail_closed(metrics, teacher):
    v = evaluate_gate(metrics, teacher, BUDGETS)
    assert not v.passed and v.reasons()
