"""Promotion gates: a target's measured model against its budgets, the teacher, and the current champion.
Fails closed."""

from squeezeflow.gates.compare import (
                                       compare_models,
                                       interleaved_latency,
                                       latency_ratio,
                                       paired_accuracy,
                                       regression_checks,
)
from squeezeflow.gates.gate import GateVerdict, evaluate_gate, failed_reasons

__all__ = ["GateVerdict", "evaluate_gate", "failed_reasons", "compare_models", "interleaved_latency", "latency_ratio",
           "paired_accuracy", "regression_checks"]
