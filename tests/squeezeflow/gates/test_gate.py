import numpy as np
import pytest
from pydantic import ValidationError

from squeezeflow.gates import evaluate_gate
from squeezeflow.gates.gate import majority_baseline
from squeezeflow.gates.report import gate_report, report_markdown
from squeezeflow.targets import Budgets

BUDGETS = Budgets(max_accuracy_drop=1.0, max_latency_p95_ms=2.0, max_model_bytes=1000)
GOOD = {"accuracy": 95.5, "latency_p95_ms": 1.0, "model_bytes": 800}
BASE = 10.0  # 10 balanced classes


def test_within_budgets_passes():
    assert evaluate_gate(GOOD, 96.0, BUDGETS, BASE).passed


@pytest.mark.parametrize("change, failing", [
    ({"accuracy": 94.0}, "accuracy_drop"),
    ({"latency_p95_ms": 2.5}, "latency_p95_ms"),
    ({"model_bytes": 1001}, "model_bytes"),
])
def test_each_budget_can_fail(change, failing):
    v = evaluate_gate({**GOOD, **change}, 96.0, BUDGETS, BASE)
    assert not v.passed and [c["name"] for c in v.checks if not c["passed"]] == [failing]


@pytest.mark.parametrize("metrics, teacher", [({}, 96.0), ({**GOOD, "accuracy": float("nan")}, 96.0),
                                              (GOOD, float("nan")), ({**GOOD, "model_bytes": None}, 96.0)])
def test_missing_or_invalid_numbers_fail_closed(metrics, teacher):
    v = evaluate_gate(metrics, teacher, BUDGETS, BASE)
    assert not v.passed and v.reasons()


# --- the majority-class baseline: a chance-level model is never promoted, even when its teacher is as bad -------
def failing(v):
    return [c["name"] for c in v.checks if not c["passed"]]


def test_majority_baseline_is_the_test_accuracy_of_the_train_majority():
    y_train = np.array([0, 1, 1, 1, 2])  # majority: class 1
    y_test = np.array([1, 0, 1, 2, 2, 2, 2, 1])  # 3 of 8 are class 1
    assert majority_baseline(y_train, y_test) == 37.5
    assert np.isnan(majority_baseline(y_train, y_test[:0]))


def test_chance_level_fails_even_with_a_chance_level_teacher():
    # 10 balanced classes: base 10%, required 10 + 0.1 * 90 = 19%.
    v = evaluate_gate({**GOOD, "accuracy": 9.0}, 9.0, BUDGETS, BASE)
    assert not v.passed and failing(v) == ["accuracy_over_baseline"]
    assert "9% is below the required 19%" in v.reasons()[0]
    assert evaluate_gate({**GOOD, "accuracy": 95.5}, 96.0, BUDGETS, BASE).passed


def test_imbalanced_data_needs_a_margin_over_the_majority_class():
    base = majority_baseline(np.array([0] * 90 + [1] * 10), np.array([0] * 900 + [1] * 100))
    assert base == 90.0
    budgets = Budgets(max_accuracy_drop=100.0, max_latency_p95_ms=2.0, max_model_bytes=1000)
    # required: 90 + 0.1 * (100 - 90) = 91%, inclusive
    for acc, ok in [(90.0, False), (90.9, False), (91.0, True), (99.0, True)]:
        v = evaluate_gate({**GOOD, "accuracy": acc}, 99.0, budgets, base)
        assert v.passed is ok and failing(v) == ([] if ok else ["accuracy_over_baseline"]), acc


def test_a_zero_margin_only_asks_to_match_the_baseline():
    budgets = Budgets(max_accuracy_drop=100.0, max_latency_p95_ms=2.0, max_model_bytes=1000, min_gain_over_baseline=0.0)
    assert evaluate_gate({**GOOD, "accuracy": 10.0}, 10.0, budgets, BASE).passed
    assert not evaluate_gate({**GOOD, "accuracy": 9.9}, 10.0, budgets, BASE).passed


@pytest.mark.parametrize("baseline", [None, float("nan")])
def test_missing_baseline_fails_closed(baseline):
    v = evaluate_gate(GOOD, 96.0, BUDGETS, baseline)
    assert not v.passed and failing(v) == ["accuracy_over_baseline"] and "fail closed" in v.reasons()[0]


@pytest.mark.parametrize("gain", [-0.1, 1.5])
def test_margin_must_be_a_fraction(gain):
    with pytest.raises(ValidationError):
        Budgets(max_accuracy_drop=1.0, max_latency_p95_ms=2.0, max_model_bytes=1000, min_gain_over_baseline=gain)


def test_baseline_check_renders_in_the_report():
    v = evaluate_gate({**GOOD, "accuracy": 9.0}, 9.0, BUDGETS, BASE)
    md = report_markdown(gate_report("cpu-fp32", "m", {"sha256": "ab" * 32}, None, v.checks, None, "r"))
    assert "| accuracy_over_baseline | 9 |  | 19 | **FAIL** |" in md


@pytest.mark.parametrize("n, lost, passes", [
    (25, 1, True),     # 4 pts: the budget (1 pt) plus one sample of 25
    (25, 2, False),    # 8 pts: a second sample is a regression
    (1000, 11, True),  # 1.1 pts: 1000 samples resolve the budget, 0.1 pt of slack
    (1000, 12, False),  # 1.2 pts > 1.1
])
def test_the_drop_budget_allows_one_test_sample_beyond_it(n, lost, passes):
    teacher = 100.0 * (n - 1) / n
    # teacher and student on the same n samples: the student misses `lost` more
    student = 100.0 * (n - 1 - lost) / n
    v = evaluate_gate({**GOOD, "accuracy": student, "test_samples": n}, teacher, BUDGETS, BASE)
    drop = next(c for c in v.checks if c["name"] == "accuracy_drop")
    assert drop["passed"] is passes and drop["budget_configured"] == 1.0
    assert drop["resolution"] == pytest.approx(100.0 / n)
    assert f"one test sample of {n}" in drop["message"]
