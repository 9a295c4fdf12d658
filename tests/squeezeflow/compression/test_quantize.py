import copy
from functools import cache

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import nn

from squeezeflow.compression import TECHNIQUES, CompressContext
from squeezeflow.compression.quantize import Quantize, QuantizeConfig
from squeezeflow.compression.recipe import parse_recipe
from squeezeflow.config import DatasetParams, SplitParams, TrainParams
from squeezeflow.data import load_dataset, make_splits
from squeezeflow.errors import SqueezeflowInputError
from squeezeflow.models import ModelSpec, build_model
from squeezeflow.models.quant_layers import ActQuant, QuantLinear, is_quantized
from squeezeflow.training import accuracy, fit, seed_everything


@pytest.fixture(autouse=True)
def single_thread():
    """Tiny models: one intra-op thread is many times faster than several competing for 2 shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@cache
def _digits(hidden: tuple[int, ...]):
    splits = make_splits(load_dataset(DatasetParams()), SplitParams(), 0)
    spec = ModelSpec("mlp", (8, 8), 10, hidden)
    seed_everything(0)
    model = build_model(spec)
    train, val = (splits.x["train"], splits.y["train"]), (splits.x["val"], splits.y["val"])
    fit(model, train, val, TrainParams(epochs=15, patience=5, lr=3e-3), 0, desc="teacher")
    return model.eval(), spec, train, val, (splits.x["test"], splits.y["test"])


def digits_task(hidden: tuple[int, ...] = (64,)):
    """A trained digits MLP (a fresh copy each call), its compression context and the test split. Shared by the
    quantization tests: trained once per session, in a few seconds."""
    model, spec, train, val, test = _digits(hidden)
    model = copy.deepcopy(model)
    return model, CompressContext(model, spec, train, val, seed=0, log=lambda _: None), test


def weights(model: nn.Module) -> list[torch.Tensor]:
    return [m.weight.detach().clone() for m in model if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]


@pytest.mark.parametrize("bits", [8, 4, 2, 1])
def test_quantize_swaps_every_layer_and_reports_sizes(bits):
    model, ctx, _ = digits_task()
    before = weights(model)
    applied = Quantize(QuantizeConfig(bits=bits)).apply(model, ctx)
    q = applied.model
    assert [type(m) for m in q] == [nn.Flatten, QuantLinear, nn.ReLU, QuantLinear]
    assert all(m.bits == bits for m in q if is_quantized(m))
    m = applied.metrics
    assert m["bits"] == {"1": bits, "3": bits}
    assert m["fp32_weight_bytes"] == (64 * 64 + 64 * 10) * 4
    assert m["weight_bytes"] == (64 * 64 + 64 * 10) * bits / 8 and m["weight_compression"] == 32 / bits
    assert m["val_accuracy"] == accuracy(q, *ctx.val)
    assert all(torch.equal(a, b) for a, b in zip(before, weights(model), strict=True))  # the input model is left alone


def test_eight_bits_costs_next_to_nothing_and_fewer_bits_cost_more():
    model, ctx, _ = digits_task()
    acc = {b: Quantize(QuantizeConfig(bits=b)).apply(model, ctx).metrics["val_accuracy"] for b in (8, 2)}
    base = accuracy(model, *ctx.val)
    assert abs(acc[8] - base) <= 1.0 and acc[2] < acc[8]


@pytest.mark.parametrize("skip_first,skip_last,kept", [(True, False, 1), (False, True, 3), (True, True, None)])
def test_skipped_layers_stay_fp32(skip_first, skip_last, kept):
    model, ctx, _ = digits_task((32, 16))  # Linear layers at 1, 3, 5
    cfg = QuantizeConfig(bits=4, skip_first=skip_first, skip_last=skip_last)
    applied = Quantize(cfg).apply(model, ctx)
    plain = [i for i, m in enumerate(applied.model) if type(m) is nn.Linear]
    expected = ([1] if skip_first else []) + ([5] if skip_last else [])
    assert plain == expected
    assert {k: v for k, v in applied.metrics["bits"].items() if v == 32} == {str(i): 32 for i in expected}
    if kept is not None:
        assert torch.equal(applied.model[kept].weight, model[kept].weight)


def test_activation_quantization_inserts_calibrated_observers():
    model, ctx, _ = digits_task()
    applied = Quantize(QuantizeConfig(bits=8, activations=True, calibration_samples=200)).apply(model, ctx)
    q = applied.model
    # each quantized layer sits where the float one was, behind its observer
    assert [type(m) for m in q] == [nn.Flatten, nn.Sequential, nn.ReLU, nn.Sequential]
    assert [type(m) for m in q[1]] == [type(m) for m in q[3]] == [ActQuant, QuantLinear]
    first = q[1][0]
    x = torch.as_tensor(ctx.train[0][:200]).flatten(1)
    assert first.observed and float(first.min_val) == float(x.min()) and float(first.max_val) == float(x.max())
    assert q[3][0].min_val >= 0  # after a ReLU
    assert not q.training and abs(applied.metrics["val_accuracy"] - accuracy(model, *ctx.val)) <= 2.0


def test_conv_models_are_quantized_too():
    torch.manual_seed(0)
    spec = ModelSpec("cnn", (40,), 10, (4, 8))
    model = build_model(spec).eval()
    rng = np.random.default_rng(0)
    data = (rng.normal(size=(64, 40)).astype(np.float32), rng.integers(0, 10, 64))
    ctx = CompressContext(model, spec, data, data, seed=0, log=lambda _: None)
    applied = Quantize(QuantizeConfig(bits=4, symmetric=False)).apply(model, ctx)
    assert sum(is_quantized(m) for m in applied.model) == 3
    assert applied.metrics["weight_bytes"] == (4 * 3 + 8 * 4 * 3 + 10 * 8 * 20) * 4 / 8


@pytest.mark.parametrize("bad", [{"bits": 3}, {"bits": 16}, {"bitz": 8}, {"calibration_samples": 0}, {"bits": "x"}])
def test_bad_configs_are_rejected(bad):
    with pytest.raises(ValidationError):
        QuantizeConfig(**bad)


def test_a_recipe_with_a_bad_quantize_step_fails_on_load_naming_the_field():
    with pytest.raises(SqueezeflowInputError, match="bits"):
        parse_recipe({"steps": [{"technique": "quantize", "bits": 3}]}, "recipe.yaml")
    recipe = parse_recipe({"steps": [{"technique": "quantize", "bits": 4, "skip_last": True}]}, "recipe.yaml")
    assert recipe.steps[0].config == QuantizeConfig(bits=4, skip_last=True)


def test_quantize_techniques_are_registered_as_quantize_kind():
    for name in ("quantize", "qat", "mixed-precision"):
        assert TECHNIQUES[name].kind == "quantize"
    with pytest.raises(SqueezeflowInputError, match="already quantized"):
        parse_recipe({"steps": [{"technique": "quantize"}, {"technique": "qat"}]}, "recipe.yaml")
