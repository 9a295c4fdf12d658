import pytest
import torch
from torch import nn

from squeezeflow.compression import prunable_weights
from squeezeflow.models import describe, load_checkpoint, save_checkpoint
from squeezeflow.models.quant_layers import (
    ActQuant,
    QuantConv1d,
    QuantConv2d,
    QuantLinear,
    WeightQuant,
    quantize_weight,
    to_float,
    to_quant,
)
from squeezeflow.models.registry import ModelSpec

SPECS = [WeightQuant(b, pc, sym) for b in (8, 4, 2, 1) for pc in (True, False) for sym in (True, False)]


def layer(kind: str, spec: WeightQuant) -> nn.Module:
    torch.manual_seed(0)
    plain = {"linear": nn.Linear(12, 6), "conv1d": nn.Conv1d(3, 6, 3, padding=1),
             "conv2d": nn.Conv2d(3, 6, 3, stride=2, padding=1, bias=False)}[kind]
    return to_quant(plain, spec)


def per_channel_values(w: torch.Tensor) -> list[int]:
    return [len(torch.unique(row)) for row in w.reshape(w.shape[0], -1)]


@pytest.mark.parametrize("spec", SPECS, ids=str)
@pytest.mark.parametrize("kind", ["linear", "conv1d", "conv2d"])
def test_weight_sits_on_its_integer_grid(kind, spec):
    m = layer(kind, spec)
    qp = m.qparams()
    qmin, qmax = spec.qrange
    assert torch.equal(qp.q, qp.q.round()) and qp.q.min() >= qmin and qp.q.max() <= qmax
    assert qp.scale.shape == ((m.weight.shape[0],) if spec.per_channel else ())
    w = m.dequantized_weight()
    assert torch.equal(w, (qp.q - qp._per_row(qp.zero_point)) * qp._per_row(qp.scale))
    levels = 2 if spec.bits == 1 else qmax - qmin + 1
    if spec.per_channel:
        assert max(per_channel_values(w)) <= levels
    else:
        assert len(torch.unique(w)) <= levels


@pytest.mark.parametrize("bits", [8, 4, 2])
@pytest.mark.parametrize("symmetric", [True, False])
def test_round_to_nearest_error_is_at_most_half_a_step(bits, symmetric):
    m = layer("linear", WeightQuant(bits, True, symmetric))
    err = (m.weight - m.dequantized_weight()).abs()
    assert (err <= m.qparams().scale[:, None] / 2 + 1e-7).all()


@pytest.mark.parametrize("per_channel", [True, False])
def test_binary_is_sign_times_mean_abs(per_channel):
    m = layer("conv2d", WeightQuant(1, per_channel, True))
    with torch.no_grad():
        m.weight[0, 0, 0, 0] = 0.0  # 0 counts as +1
    w, latent = m.dequantized_weight(), m.weight.detach()
    rows = latent.reshape(6, -1)
    scale = rows.abs().mean(1) if per_channel else rows.abs().mean().expand(6)
    expected = torch.where(rows >= 0, 1.0, -1.0) * scale[:, None]
    assert torch.equal(w.reshape(6, -1), expected)
    assert per_channel_values(w) == [2] * 6  # exactly two values per output channel
    assert w[0, 0, 0, 0] > 0


@pytest.mark.parametrize("spec", [s for s in SPECS if s.bits > 1], ids=str)
def test_zero_stays_exactly_zero(spec):
    m = layer("linear", spec)
    with torch.no_grad():
        m.weight[:, ::3] = 0.0  # pruned weights
        m.weight[2] = 0.0  # an all-zero channel
    w = m.dequantized_weight()
    assert (w[:, ::3] == 0).all() and (w[2] == 0).all()
    if not spec.symmetric:  # the grid includes 0 although the weights are not centred
        with torch.no_grad():
            m.weight[3] = torch.linspace(-0.5, 1.0, 12)
            m.weight[3, 4] = 0.0
        zero_point = m.qparams().zero_point
        assert m.dequantized_weight()[3, 4] == 0.0 and (zero_point[3] if spec.per_channel else zero_point) > 0


def test_straight_through_gradient_reaches_the_latent_weight():
    m = layer("linear", WeightQuant(4))
    x = torch.randn(5, 12)
    m(x).square().sum().backward()
    plain = to_float(m)
    plain(x).square().sum().backward()
    assert torch.allclose(m.weight.grad, plain.weight.grad) and m.weight.grad.abs().sum() > 0


def test_forward_is_the_plain_layer_with_the_dequantized_weight():
    cases = [("linear", torch.randn(4, 12)), ("conv1d", torch.randn(4, 3, 10)), ("conv2d", torch.randn(4, 3, 8, 8))]
    for kind, x in cases:
        m = layer(kind, WeightQuant(4, True, False)).eval()
        assert torch.equal(m(x), to_float(m)(x))


def test_quantized_layers_stay_what_they_quantize():
    assert isinstance(layer("linear", WeightQuant()), nn.Linear)
    assert isinstance(layer("conv1d", WeightQuant()), nn.Conv1d)
    assert isinstance(layer("conv2d", WeightQuant()), nn.Conv2d)
    model = nn.Sequential(layer("linear", WeightQuant()))
    assert len(prunable_weights(model)) == 1  # pruning masks and fine-tuning see them


@pytest.mark.parametrize("bad", [3, 0, 16])
def test_unsupported_bit_widths_are_rejected(bad):
    with pytest.raises(ValueError, match="bits"):
        WeightQuant(bad)
    with pytest.raises(ValueError, match="bits"):
        QuantLinear(4, 2, bits=bad)


def test_act_quant_passes_through_until_it_has_seen_data_then_freezes_in_eval():
    a = ActQuant()
    x = torch.linspace(-1, 3, 101)
    assert torch.equal(a.eval()(x), x)  # not observed yet
    a.train()(x)
    y, step = a.eval()(x * 2), float(a.qparams()[0])  # eval: the range stays [-1, 3] (within a step: 0 is exact)
    assert 3.0 - step <= y.max() <= 3.0 + step and -1.0 - step <= y.min() <= -1.0 + step
    assert len(torch.unique(a(x))) <= 256 and a(torch.zeros(3)).eq(0).all()  # zero exact
    assert (a(x) - x).abs().max() <= a.qparams()[0] / 2 + 1e-7


def test_checkpoint_round_trip_keeps_bits_and_outputs(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Unflatten(1, (1, 40)), ActQuant(),
                          QuantConv1d(1, 4, 3, padding=1, bits=2, symmetric=False), nn.BatchNorm1d(4), nn.ReLU(),
                          nn.Flatten(), QuantLinear(160, 10, bits=1, per_channel=False))
    x = torch.randn(16, 40)
    model.train()(x)
    model.eval()
    save_checkpoint(tmp_path / "m.pt", model, ModelSpec("cnn", (40,), 10, (4,)))
    loaded, _ = load_checkpoint(tmp_path / "m.pt")  # weights_only=True: plain values only
    assert describe(loaded) == describe(model)
    assert [type(m) for m in loaded] == [type(m) for m in model]
    assert loaded[2].bits == 2 and not loaded[2].wq.symmetric and loaded[6].bits == 1 and not loaded[6].wq.per_channel
    assert torch.equal(loaded(x), model(x))


def test_conv2d_round_trip_through_description():
    m = QuantConv2d(2, 3, (3, 1), stride=(2, 1), padding=(1, 0), bits=4)
    d = describe(nn.Sequential(m))[0]
    assert d["type"] == "quant_conv2d" and d["bits"] == 4 and d["kernel_size"] == [3, 1]


def test_quantize_weight_is_deterministic_and_independent_of_grad_state():
    w = torch.randn(6, 12, requires_grad=True)
    a, b = quantize_weight(w, WeightQuant(4)), quantize_weight(w.detach(), WeightQuant(4))
    assert torch.equal(a.q, b.q) and torch.equal(a.scale, b.scale) and not a.q.requires_grad
