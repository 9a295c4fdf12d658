import pytest

from squeezeflow.stats import resolution_warning, wilson_interval


@pytest.mark.parametrize("correct, n, low, high", [
    (95, 100, 88.82, 97.85),  # Wilson (1927) / Newcombe (1998) worked values for 95/100
    (100, 100, 96.30, 100.0),  # all right: the interval still admits errors
    (0, 20, 0.0, 16.11),
])
def test_wilson_interval_matches_published_values(correct, n, low, high):
    lo, hi = wilson_interval(correct, n)
    assert lo == pytest.approx(low, abs=0.02) and hi == pytest.approx(high, abs=0.02)


def test_a_small_split_warns_and_a_large_one_does_not():
    assert "114 samples" in resolution_warning(114, 89.5, 2.0, "cpu-int8")
    assert resolution_warning(20_000, 89.5, 2.0, "cpu-int8") is None
