"""Promotion gates: a target's measured model against its budgets and the teacher. Fails closed."""

from squeezeflow.gates.gate import GateVerdict, evaluate_gate

__all__ = ["GateVerdict", "evaluate_gate"]
