import json
import time

import numpy as np
import pytest
import torch

from squeezeflow.export import export_onnx
from squeezeflow.gates import compare_models, interleaved_latency, latency_ratio, paired_accuracy, regression_checks
from squeezeflow.models import ModelSpec, build_model
from squeezeflow.runtimes import MeasureSpec
from squeezeflow.targets import RegressionSpec

SPEC = RegressionSpec()


def checks_by_name(comparison: dict) -> dict:
    return {c["name"]: c for c in regression_checks(comparison, SPEC)}


def labels_and_champion(n=1000, correct=900, seed=0):
    """Labels, and a champion right on exactly `correct` of them (wrong = another class)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    pred = y.copy()
    wrong = rng.permutation(n)[: n - correct]
    pred[wrong] = (y[wrong] + 1) % 10
    return y, pred


def flip(y, pred, make_wrong, make_right):
    """A copy of pred wrong on `make_wrong` of its right samples and right on `make_right` of its wrong ones."""
    out = pred.copy()
    right, wrong = np.flatnonzero(pred == y), np.flatnonzero(pred != y)
    out[right[:make_wrong]] = (y[right[:make_wrong]] + 2) % 10
    out[wrong[:make_right]] = y[wrong[:make_right]]
    return out


def test_identical_predictions_give_a_zero_interval_and_pass():
    y, pred = labels_and_champion()
    acc = paired_accuracy(y, pred, pred.copy())
    assert (acc["diff_points"], acc["ci_low"], acc["ci_high"]) == (0.0, 0.0, 0.0)
    assert acc["champion_accuracy"] == acc["challenger_accuracy"] == 90.0 and acc["n"] == 1000
    assert checks_by_name({"accuracy": acc})["accuracy_vs_champion"]["passed"]
    json.dumps(acc)  # plain numbers only: it goes into MLflow and Dagster metadata


def test_ten_more_errors_in_a_thousand_is_minus_one_point_and_fails():
    y, pred = labels_and_champion()
    acc = paired_accuracy(y, pred, flip(y, pred, make_wrong=20, make_right=10))
    assert acc["diff_points"] == -1.0
    assert (acc["champion_only_correct"], acc["challenger_only_correct"]) == (20, 10)
    assert acc["ci_low"] < -1.0 < acc["ci_high"]
    check = checks_by_name({"accuracy": acc})["accuracy_vs_champion"]
    assert not check["passed"] and check["threshold"] == -0.5
    assert "reaches below -0.5" in check["message"] and "95% CI" in check["message"]


def test_a_clearly_better_challenger_passes():
    y, pred = labels_and_champion()
    acc = paired_accuracy(y, pred, flip(y, pred, make_wrong=5, make_right=35))
    assert acc["diff_points"] == 3.0 and acc["ci_low"] > 0
    assert checks_by_name({"accuracy": acc})["accuracy_vs_champion"]["passed"]


def test_a_drop_within_the_threshold_fails_when_the_interval_cannot_show_it():
    y, pred = labels_and_champion()
    acc = paired_accuracy(y, pred, flip(y, pred, make_wrong=23, make_right=20))  # -0.3 pts, 43 discordant
    assert acc["diff_points"] == pytest.approx(-0.3) and acc["ci_low"] < -0.5
    check = checks_by_name({"accuracy": acc})["accuracy_vs_champion"]
    assert not check["passed"] and "not shown to be no worse" in check["message"]


def test_the_accuracy_interval_is_deterministic_per_seed():
    y, pred = labels_and_champion()
    other = flip(y, pred, 15, 12)
    assert paired_accuracy(y, pred, other, seed=3) == paired_accuracy(y, pred, other, seed=3)
    assert paired_accuracy(y, pred, other, seed=3)["ci_low"] != paired_accuracy(y, pred, other, seed=4)["ci_low"]


def test_the_accuracy_interval_covers_the_true_difference_about_95_percent_of_the_time():
    # population: 3% of samples only the champion gets right, 2% only the challenger: true diff -1 point
    rng, covered, widths = np.random.default_rng(1), 0, []
    y = np.zeros(1000, int)
    for trial in range(300):
        d = rng.choice([-1, 1, 0], size=1000, p=[0.03, 0.02, 0.95])
        acc = paired_accuracy(y, (d == 1).astype(int), (d == -1).astype(int), seed=trial)  # label 0 is right
        covered += acc["ci_low"] <= -1.0 <= acc["ci_high"]
        widths.append(acc["ci_high"] - acc["ci_low"])
    assert 0.90 <= covered / 300 <= 0.99
    # the normal approximation of a paired difference: 2 * 1.96 * sqrt(p+ + p- - (p+ - p-)^2 / n) in points
    assert np.median(widths) == pytest.approx(2 * 1.96 * np.sqrt(0.05 - 0.01**2) / np.sqrt(1000) * 100, rel=0.1)


@pytest.mark.parametrize("bad", [float("nan"), None, float("inf")])
def test_missing_or_nan_values_fail_closed(bad):
    acc = {"diff_points": 1.0, "ci_low": bad, "ci_high": 2.0, "confidence": 0.95}
    lat = {"ratio": 1.0, "ci_low": 0.99, "ci_high": bad, "confidence": 0.95}
    checks = checks_by_name({"accuracy": acc, "latency": lat})
    assert not checks["accuracy_vs_champion"]["passed"] and not checks["latency_vs_champion"]["passed"]
    assert "fail closed" in checks["accuracy_vs_champion"]["message"]
    assert [c["passed"] for c in regression_checks({}, SPEC)] == [False, False]


def test_a_thirty_percent_slower_challenger_fails_the_latency_check():
    rng = np.random.default_rng(0)
    t_a = 20e-6 * rng.lognormal(0, 0.1, 400)
    lat = latency_ratio(t_a, t_a * 1.3 * rng.lognormal(0, 0.05, 400))
    assert lat["ratio"] == pytest.approx(1.3, rel=0.03) and lat["ci_low"] < lat["ratio"] < lat["ci_high"]
    assert lat["champion_p50_ms"] == pytest.approx(0.020, rel=0.05) and lat["pairs"] == 400
    check = checks_by_name({"latency": lat})["latency_vs_champion"]
    assert not check["passed"] and check["threshold"] == pytest.approx(1.1)
    assert "reaches above x1.10" in check["message"]


def test_noisy_timings_fail_even_when_the_ratio_is_within():
    rng = np.random.default_rng(1)
    t_a, t_b = (20e-6 * rng.lognormal(0, 0.5, 40) for _ in range(2))  # the same model, timed very noisily
    lat = latency_ratio(t_a, t_b)
    assert lat["ratio"] < 1.1 < lat["ci_high"]
    assert not checks_by_name({"latency": lat})["latency_vs_champion"]["passed"]


def test_a_against_a_timings_pass_the_latency_check():
    rng = np.random.default_rng(0)
    t_a, t_b = (20e-6 * rng.lognormal(0, 0.1, 400) for _ in range(2))
    lat = latency_ratio(t_a, t_b)
    assert lat["ci_low"] <= 1.0 <= lat["ci_high"] < 1.1
    check = checks_by_name({"latency": lat})["latency_vs_champion"]
    assert check["passed"] and "within x1.10" in check["message"]


def test_a_bimodal_machine_does_not_move_the_latency_ratio():
    # on a shared core each call lands in a fast or a slow mode: the median of either series sits on the split and
    # jumps, the median of the pair ratios does not
    rng = np.random.default_rng(0)
    t_a, t_b = (20e-6 * rng.choice([1.0, 1.8], 400) * rng.lognormal(0, 0.02, 400) for _ in range(2))
    lat = latency_ratio(t_a, t_b)
    assert 0.97 < lat["ci_low"] <= lat["ratio"] <= lat["ci_high"] < 1.03
    assert checks_by_name({"latency": lat})["latency_vs_champion"]["passed"]


def record(seed, inputs, pairs=40, warmup=3):
    calls = []
    run_a = lambda x: calls.append(("a", x.shape, float(x[0, 0])))  # noqa: E731
    run_b = lambda x: (calls.append(("b", x.shape, float(x[0, 0]))), time.sleep(0.001))  # noqa: E731
    t_a, t_b = interleaved_latency(run_a, run_b, inputs, pairs=pairs, warmup=warmup, seed=seed)
    return calls, t_a, t_b


def test_interleaved_latency_alternates_in_a_varying_order_on_the_same_input():
    inputs = np.arange(5 * 3, dtype=np.float32).reshape(5, 3)
    calls, t_a, t_b = record(0, inputs)
    assert len(t_a) == len(t_b) == 40 and len(calls) == 2 * (3 + 40)
    timed = [calls[2 * i : 2 * i + 2] for i in range(3, 43)]
    assert all({c[0] for c in pair} == {"a", "b"} for pair in timed)
    assert all(pair[0][1:] == pair[1][1:] == ((1, 3), inputs[i % 5, 0]) for i, pair in enumerate(timed))
    firsts = [pair[0][0] for pair in timed]
    assert 5 <= firsts.count("b") <= 35  # a seeded coin per pair: neither always goes first
    assert (t_b >= 0.001).all() and np.median(t_a) < 0.001  # each call timed on its own, in seconds
    assert record(0, inputs)[0] == calls
    assert [c[0] for c in record(1, inputs)[0]] != [c[0] for c in calls]


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        path = root / f"m{seed}.onnx"
        export_onnx(build_model(ModelSpec("mlp", (8,), 3, (16,))), (8,), path, 17)
        paths.append(path)
    x = np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32)
    return paths, x, np.random.default_rng(1).integers(0, 3, 300)


def test_compare_models_on_real_onnx_files(two_models):
    (a, b), x, y = two_models
    spec = RegressionSpec(latency_pairs=100, bootstrap=500)
    result = compare_models(a, b, x, y, MeasureSpec(warmup=5), spec)
    acc, lat = result["accuracy"], result["latency"]
    assert acc["n"] == 300 and 0 <= acc["champion_accuracy"] <= 100 and acc["champion_only_correct"] > 0
    assert acc["diff_points"] == pytest.approx(acc["challenger_accuracy"] - acc["champion_accuracy"])
    assert acc["ci_low"] <= acc["diff_points"] <= acc["ci_high"]
    assert lat["pairs"] == 100 and 0 < lat["champion_p50_ms"] < 50 and 0 < lat["challenger_p50_ms"] < 50
    assert lat["ci_low"] <= lat["ratio"] <= lat["ci_high"]
    assert len(regression_checks(result, spec)) == 2
    json.dumps(result)


def test_a_model_compared_with_itself_has_identical_predictions(two_models):
    (a, _), x, y = two_models
    spec = RegressionSpec(latency_pairs=100, bootstrap=500)
    acc = compare_models(a, a, x, y, MeasureSpec(warmup=5), spec)["accuracy"]
    assert acc["champion_only_correct"] == acc["challenger_only_correct"] == 0
    assert (acc["diff_points"], acc["ci_low"], acc["ci_high"]) == (0.0, 0.0, 0.0)


def test_the_comparison_runs_in_a_constrained_process_of_its_own(two_models):
    from squeezeflow.gates.compare import compare_isolated

    (a, b), x, y = two_models
    spec = RegressionSpec(latency_pairs=50, bootstrap=500)
    here = compare_models(a, b, x, y, MeasureSpec(warmup=5), spec)["accuracy"]
    there = compare_isolated(a, b, x, y, MeasureSpec(warmup=5), spec)
    assert there["accuracy"] == here and there["latency"]["pairs"] == 50
    # under the target's constraints: a cap no runtime fits in fails it with the reason, in that process only
    capped = compare_isolated(a, b, x, y, MeasureSpec(warmup=5, memory_limit_mb=16), spec)
    assert set(capped) == {"error"} and "memory_limit_mb=16" in capped["error"]
