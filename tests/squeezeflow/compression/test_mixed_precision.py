import pytest
from pydantic import ValidationError
from torch import nn

from squeezeflow.compression.mixed_precision import (
    Evaluator,
    MixedPrecision,
    MixedPrecisionConfig,
    greedy_choice,
    verified,
)
from squeezeflow.config import TrainParams
from squeezeflow.models.quant_layers import WeightQuant, is_quantized, to_float, to_quant
from squeezeflow.training import accuracy
from tests.squeezeflow.compression.test_quantize import digits_task, single_thread  # noqa: F401 (fixture)


def total_bits(bits: dict[str, int], model: nn.Sequential) -> int:
    return sum(model[int(i)].weight.numel() * b for i, b in bits.items())


@pytest.mark.parametrize("budget", [0.0, 3.0])
def test_budget_holds_on_the_val_split(budget):
    model, ctx, _ = digits_task()
    applied = MixedPrecision(MixedPrecisionConfig(max_accuracy_drop=budget)).apply(model, ctx)
    drop = accuracy(model, *ctx.val) - accuracy(applied.model, *ctx.val)  # measured here, independently
    assert drop <= budget + 1e-9 and applied.metrics["measured_drop"] == pytest.approx(drop)
    bits = applied.metrics["bits"]
    assert set(applied.metrics["sensitivity"]) == set(bits) == {"1", "3"}
    assert {b for b in bits.values()} <= {8, 4, 2, 1, 32}
    assert [m.bits for m in applied.model if is_quantized(m)] == [b for b in bits.values() if b != 32]
    if budget == 3.0:  # room to spare: below 8 bits somewhere
        assert total_bits(bits, model) < total_bits({"1": 8, "3": 8}, model)


def binary_first_layer():
    """A digits MLP whose first layer holds binary weights (sign * per-row scale) in plain fp32: quantizing it at
    any bit width changes nothing, while the trained classifier is sensitive to few bits."""
    model, ctx, test = digits_task()
    model[1] = to_float(to_quant(model[1], WeightQuant(1)))
    model[1].weight.requires_grad_(False)  # the rest recovers around it
    ctx.fit(model, TrainParams(epochs=6, patience=6, lr=1e-3), desc="recover")
    model[1].weight.requires_grad_(True)
    return model, ctx


def test_insensitive_layers_get_fewer_bits():
    model, ctx = binary_first_layer()
    applied = MixedPrecision(MixedPrecisionConfig(max_accuracy_drop=0.5)).apply(model, ctx)
    sens, bits = applied.metrics["sensitivity"], applied.metrics["bits"]
    assert all(d <= 0 for d in sens["1"].values())  # binary weights survive every grid
    assert sens["3"]["1"] > 0.5
    assert bits["1"] == 1 and bits["3"] > 1
    assert accuracy(model, *ctx.val) - accuracy(applied.model, *ctx.val) <= 0.5


def test_greedy_choice_trades_saved_bits_against_predicted_drop():
    sens = {1: {8: 0.0, 4: 0.0, 2: 0.1, 1: 0.2}, 3: {8: 0.0, 4: 0.5, 2: 3.0, 1: 9.0}}
    numel = {1: 1000, 3: 100}
    final = lambda moves: {i: after for i, _, after in moves}  # noqa: E731
    assert final(greedy_choice(sens, numel, budget=0.0)) == {1: 4, 3: 8}  # only the free moves
    assert final(greedy_choice(sens, numel, budget=0.7)) == {1: 1, 3: 4}
    assert final(greedy_choice(sens, numel, budget=100)) == {1: 1, 3: 1}
    moves = greedy_choice(sens, numel, budget=0.7)
    assert sum(max(sens[i][b], 0) for i, b in final(moves).items()) <= 0.7


def test_verification_backs_off_when_the_prediction_was_too_optimistic():
    model, ctx, _ = digits_task()
    cfg = MixedPrecisionConfig(max_accuracy_drop=0.5)
    ev = Evaluator(model, cfg, ctx)
    # a sensitivity table claiming nothing matters: the greedy step takes every layer to 2 bits
    moves = greedy_choice({"1": {2: 0.0}, "3": {2: 0.0}}, {"1": 4096, "3": 640}, budget=0.5)
    assert len(moves) == 2 and ev.drop({"1": 2, "3": 2}) > 0.5
    plan, drop, undone = verified(ev, moves, 0.5)
    assert undone >= 1 and drop <= 0.5 and drop == pytest.approx(ev.drop(plan) if plan else 0.0)


def test_optional_qat_after_the_choice_keeps_the_budget():
    model, ctx, _ = digits_task()
    cfg = MixedPrecisionConfig(candidates=[2, 1], max_accuracy_drop=2.0, qat=TrainParams(epochs=2, patience=2))
    applied = MixedPrecision(cfg).apply(model, ctx)
    assert applied.metrics["measured_drop_after_qat"] <= applied.metrics["measured_drop"] <= 2.0
    assert set(applied.metrics["sensitivity"]["1"]) == {"2", "1"}


@pytest.mark.parametrize("bad", [{"candidates": [8, 3]}, {"candidates": []}, {"candidates": [4, 4]},
                                 {"max_accuracy_drop": -1}, {"budget": 1.0}])
def test_bad_mixed_precision_configs_are_rejected(bad):
    with pytest.raises(ValidationError):
        MixedPrecisionConfig(**bad)


def test_candidates_are_kept_from_most_to_fewest_bits():
    assert MixedPrecisionConfig(candidates=[1, 8, 4]).candidates == (8, 4, 1)
