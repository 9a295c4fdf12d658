from squeezeflow.gates.report import gate_report, report_markdown, version_description

BUDGET = {"name": "accuracy_drop", "value": 1.2, "budget": 2.0, "passed": True,
          "message": "accuracy_drop 1.2 pts within budget 2 pts"}
REGRESS = {"name": "latency_vs_champion", "value": 1.31, "low": 1.25, "high": 1.38, "threshold": 1.1, "passed": False,
           "message": "latency vs champion x1.31 (95% CI 1.25..1.38) reaches above x1.10"}
CANDIDATE = {"path": "b/model.onnx", "sha256": "ab" * 32, "metrics": {}}


def test_first_candidate_report_says_only_budgets_apply():
    r = gate_report("cpu-fp32", "m", CANDIDATE, None, [BUDGET], None, "run1")
    assert r["verdict"] == "passed" and r["notes"] == ["no champion yet: only the absolute budgets apply"]
    md = report_markdown(r)
    assert "Gate PASSED: cpu-fp32" in md and "no champion (first candidate)" in md


def test_report_names_the_champion_and_every_failed_value():
    champ = {"model_name": "m", "version": "3", "sha256": "cd" * 32}
    r = gate_report("cpu-fp32", "m", CANDIDATE, champ, [BUDGET, REGRESS], None, "run2")
    assert r["verdict"] == "failed"
    md = report_markdown(r)
    assert "against champion v3 of `m`" in md
    assert "| latency_vs_champion | 1.31 | 1.25 .. 1.38 | 1.1 | **FAIL** |" in md
    text = version_description(r, {"accuracy": 97.5, "model_bytes": 1234, "latency_p50_ms": 0.02},
                               {"recipe": "default"})
    assert text.startswith("cpu-fp32: accuracy 97.50%, 1,234 bytes")
    assert "Gate FAILED vs champion v3: latency x1.310 [1.250, 1.380]" in text
    assert "reaches above x1.10" in text and "recipe default" in text


def test_no_checks_is_a_failed_gate():
    assert gate_report("t", "m", CANDIDATE, None, [], None, "r")["verdict"] == "failed"
