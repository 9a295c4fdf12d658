"""Confidence intervals for accuracies measured on a finite test split."""

from __future__ import annotations

import math
from statistics import NormalDist


def wilson_interval(correct: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion, in percent. Honest at 0% and 100% and on small splits, where the
    normal approximation claims certainty it does not have."""
    if n <= 0:
        return float("nan"), float("nan")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return 100.0 * max(0.0, centre - half), 100.0 * min(1.0, centre + half)


def resolution_warning(n: int, accuracy: float, budget_points: float, what: str) -> str | None:
    """A warning when the test split is too small for its accuracy to resolve a budget of `budget_points`."""
    low, high = wilson_interval(round(accuracy * n / 100.0), n)
    half = (high - low) / 2
    if math.isfinite(half) and half > budget_points:
        return (f"{what}: the test split has {n} samples, so its accuracy is known only to about ±{half:.1f} points "
                f"(95%), wider than the {budget_points:g}-point budget: the gate cannot resolve such a drop; give "
                "more data or a larger split.test")
    return None
