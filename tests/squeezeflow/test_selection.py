"""Choosing a target's recipe among candidates measured on the validation split."""


from squeezeflow.selection import choose, judge
from squeezeflow.targets import Budgets

BUDGETS = Budgets(max_accuracy_drop=2.0, max_latency_p95_ms=1.0, max_model_bytes=100_000,
                  min_gain_over_baseline=0.1)
TEACHER, BASE = 95.0, 10.0


def cand(name, acc, size, p95):
    return judge(name, {"accuracy": acc, "model_bytes": size, "latency_p95_ms": p95, "test_samples": 1000},
                 TEACHER, BUDGETS, BASE)


def test_only_the_candidate_within_the_latency_budget_is_chosen_and_the_reason_says_why():
    big, small = cand("big", 94.5, 60_000, 1.8), cand("small", 93.5, 20_000, 0.4)
    assert not big.meets_budgets and small.meets_budgets
    best, why = choose([big, small], "smallest")
    assert best.recipe == "small"
    assert "smallest (model_bytes) of the 1 of 2" in why and "big (latency_p95_ms" in why


def test_the_objective_ranks_those_that_meet_the_budgets():
    a, b = cand("a", 94.0, 20_000, 0.9), cand("b", 94.0, 50_000, 0.2)
    assert choose([a, b], "smallest")[0].recipe == "a"
    assert choose([a, b], "fastest")[0].recipe == "b"
    tie = cand("c", 94.8, 20_000, 0.5)
    assert choose([a, tie], "smallest")[0].recipe == "c"  # same size: the more accurate


def test_with_none_meeting_the_budgets_the_most_accurate_goes_on_and_the_reason_says_so():
    slow, bad = cand("slow", 94.9, 20_000, 5.0), cand("bad", 80.0, 10_000, 0.1)
    best, why = choose([slow, bad], "smallest")
    assert best.recipe == "slow" and why.startswith("none of the 2 candidate recipes meets")
    assert "accuracy_drop" in why  # the other one's first failure


def test_a_candidate_that_could_not_be_measured_fails_with_its_reason_only():
    broken = judge("broken", {"error": "the ort-int8-qdq build failed: boom"}, TEACHER, BUDGETS, BASE)
    assert not broken.meets_budgets and broken.failures == ["validation failed: the ort-int8-qdq build failed: boom"]
    best, why = choose([broken, cand("ok", 94.0, 1_000, 0.1)], "fastest")
    assert best.recipe == "ok" and "broken (validation failed: the ort-int8-qdq build failed: boom)" in why


def test_fastest_treats_overlapping_latency_intervals_as_a_tie_the_smaller_wins():
    def timed(name, size, p95, low, high):
        return judge(name, {"accuracy": 94.0, "model_bytes": size, "latency_p95_ms": p95, "latency_p95_ms_low": low,
                            "latency_p95_ms_high": high, "test_samples": 1000}, TEACHER, BUDGETS, BASE)

    big_a, small_a = timed("big", 50_000, 0.30, 0.28, 0.36), timed("small", 20_000, 0.33, 0.30, 0.38)
    big_b, small_b = timed("big", 50_000, 0.34, 0.31, 0.37), timed("small", 20_000, 0.31, 0.29, 0.35)
    # two runs whose noise ranks them either way choose the same one
    assert choose([big_a, small_a], "fastest")[0].recipe == choose([big_b, small_b], "fastest")[0].recipe == "small"
    clearly = timed("big", 50_000, 0.10, 0.09, 0.11)  # shown to be faster: it wins though larger
    assert choose([clearly, small_a], "fastest")[0].recipe == "big"


def test_the_tracked_decision_holds_no_latency():
    from squeezeflow.selection import decision_record

    a, b = cand("a", 94.0, 20_000, 0.9), cand("b", 94.0, 50_000, 1.7)
    record = decision_record([a, b], "a")
    assert record[1]["failed_checks"] == ["latency_p95_ms"] and record[0]["chosen"]
    assert "0.9" not in str(record) and "1.7" not in str(record) and "latency_p95_ms'" not in str(record).replace(
        "'failed_checks': ['latency_p95_ms'", "")
