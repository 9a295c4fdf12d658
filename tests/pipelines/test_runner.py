"""The run's exit code: which held-back targets count."""

from pipelines.runner import exit_code

OK = {"passed": True, "unavailable": ""}
HELD = {"passed": False, "unavailable": ""}
GONE = {"passed": False, "unavailable": "no CUDA GPU"}


def test_an_unavailable_target_in_the_default_set_does_not_fail_the_run():
    gates = {"cpu": OK, "gpu": GONE}
    assert exit_code(gates, {"cpu"}, ["cpu", "gpu"], named=False, failed=False) == 0


def test_an_unavailable_target_named_by_the_user_holds_the_run_back():
    assert exit_code({"cpu": OK, "gpu": GONE}, {"cpu"}, ["cpu", "gpu"], named=True, failed=False) == 3


def test_a_failed_gate_or_missing_promotion_is_3_and_an_error_is_1():
    assert exit_code({"cpu": HELD, "gpu": GONE}, set(), ["cpu", "gpu"], named=False, failed=False) == 3
    assert exit_code({"cpu": OK}, set(), ["cpu"], named=False, failed=False) == 3  # gated but never promoted
    assert exit_code({}, set(), ["cpu"], named=False, failed=False) == 3  # never gated
    assert exit_code({"cpu": OK}, {"cpu"}, ["cpu"], named=False, failed=True) == 1
