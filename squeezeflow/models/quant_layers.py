"""Fake-quantized layers: Linear/Conv whose weight is rounded to a b-bit integer grid in every forward pass.

The layer keeps its fp32 ("latent") weight, so training can go on through the rounding with a straight-through
estimator (QAT); what the forward uses, and what export stores as integers, is always `dequantized_weight()`,
computed as (q - zero_point) * scale in float32 exactly as ONNX DequantizeLinear computes it, so the exported
integer model reproduces the torch model to float rounding.

Grids (per output channel or per tensor):
- symmetric b bits: q in [-(2^(b-1)-1), 2^(b-1)-1], zero point 0 (the -2^(b-1) code is left out so the grid is
  symmetric: 2 bits is ternary {-1, 0, 1});
- asymmetric b bits: q in [0, 2^b - 1] with a zero point; the range always contains 0, so 0.0 stays exactly 0.0
  (pruned weights survive quantization);
- 1 bit (binary): sign(w) with 0 counted as +1, times mean(|w|): two values per output channel, zero point 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from squeezeflow.models.layers import LAYERS, register_layer

# nn.TransformerEncoderLayer and nn.MultiheadAttention in eval mode take a fused fast path that reads each
# projection's `.weight` directly, skipping a quantized layer's forward: torch would then score float weights while
# the exported ONNX holds the quantized ones. The module-by-module path is what gets exported, so use it everywhere.
torch.backends.mha.set_fastpath_enabled(False)

BITS = (8, 4, 2, 1)


@dataclass(frozen=True)
class WeightQuant:
    """How one layer's weight is quantized."""

    bits: int = 8
    per_channel: bool = True
    symmetric: bool = True

    def __post_init__(self):
        if self.bits not in BITS:
            raise ValueError(f"bits must be one of {BITS}, got {self.bits!r}")

    @property
    def signed(self) -> bool:
        """Signed integers for symmetric and binary grids, unsigned (with a zero point) for asymmetric."""
        return self.symmetric or self.bits == 1

    @property
    def qrange(self) -> tuple[int, int]:
        if self.bits == 1:
            return -1, 1
        if self.signed:
            m = 2 ** (self.bits - 1) - 1
            return -m, m
        return 0, 2**self.bits - 1


@dataclass(frozen=True)
class QParams:
    """Integer weight + scale + zero point; scale and zero point have one entry per output channel (dim 0), or are
    0-d for per-tensor. q and zero_point are float32 tensors holding integers (exact for |q| < 2^24)."""

    q: torch.Tensor
    scale: torch.Tensor
    zero_point: torch.Tensor
    spec: WeightQuant

    def _per_row(self, t: torch.Tensor) -> torch.Tensor:
        return t.reshape(-1, *([1] * (self.q.dim() - 1))) if t.dim() else t

    def dequantize(self) -> torch.Tensor:
        # the same float32 arithmetic as DequantizeLinear: (q - zp) * scale
        return (self.q - self._per_row(self.zero_point)) * self._per_row(self.scale)


def _reduce(w: torch.Tensor, per_channel: bool, fn) -> torch.Tensor:
    """fn over each output channel (dim 0) -> shape (O,), or over the whole tensor -> 0-d."""
    return fn(w.reshape(w.shape[0], -1), dim=1) if per_channel else fn(w.reshape(-1), dim=0)


def quantize_weight(w: torch.Tensor, spec: WeightQuant) -> QParams:
    """Round-to-nearest onto the grid, with the scale from the weight's current range."""
    w = w.detach().float()
    qmin, qmax = spec.qrange
    if spec.bits == 1:
        scale = _reduce(w.abs(), spec.per_channel, torch.mean)
        q = torch.where(w >= 0, 1.0, -1.0)
        return QParams(q, scale, torch.zeros_like(scale), spec)
    if spec.signed:
        scale = _reduce(w.abs(), spec.per_channel, lambda t, dim: t.amax(dim=dim)) / qmax
        zero_point = torch.zeros_like(scale)
    else:
        lo = _reduce(w, spec.per_channel, lambda t, dim: t.amin(dim=dim)).clamp(max=0)
        hi = _reduce(w, spec.per_channel, lambda t, dim: t.amax(dim=dim)).clamp(min=0)
        scale = (hi - lo) / (qmax - qmin)
    # an all-zero channel: any scale represents it; 1.0 avoids dividing by zero
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    if not spec.signed:
        zero_point = (qmin - lo / scale).round().clamp(qmin, qmax)
    shape = (-1, *([1] * (w.dim() - 1))) if scale.dim() else ()
    q = (w / scale.reshape(shape) + zero_point.reshape(shape)).round().clamp(qmin, qmax)
    return QParams(q, scale, zero_point, spec)


class _StraightThrough(torch.autograd.Function):
    """Forward: the quantized weight, bit for bit. Backward: the gradient passes to the latent weight unchanged."""

    @staticmethod
    def forward(ctx, latent: torch.Tensor, quantized: torch.Tensor) -> torch.Tensor:
        return quantized

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None


class _QuantMixin:
    """Shared by the quantized layers: the quant spec, the fake-quant weight and the description."""

    base_type: str  # the plain layer's name in models.layers
    weight: nn.Parameter
    wq: WeightQuant

    def _set_quant(self, bits: int, per_channel: bool, symmetric: bool) -> None:
        self.wq = WeightQuant(bits, per_channel, symmetric)

    @property
    def bits(self) -> int:
        return self.wq.bits

    def qparams(self) -> QParams:
        return quantize_weight(self.weight, self.wq)

    def dequantized_weight(self) -> torch.Tensor:
        return self.qparams().dequantize()

    def fake_weight(self) -> torch.Tensor:
        return _StraightThrough.apply(self.weight, self.dequantized_weight())

    def float_kwargs(self) -> dict:
        """Constructor kwargs of the plain layer this one quantizes."""
        return LAYERS[self.base_type][1](self)

    def describe(self) -> dict:
        return {**self.float_kwargs(), "bits": self.wq.bits, "per_channel": self.wq.per_channel,
                "symmetric": self.wq.symmetric}

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, bits={self.wq.bits}, per_channel={self.wq.per_channel}, " \
               f"symmetric={self.wq.symmetric}"


class QuantLinear(_QuantMixin, nn.Linear):
    base_type = "linear"

    def __init__(self, in_features: int, out_features: int, bias: bool = True, bits: int = 8,
                 per_channel: bool = True, symmetric: bool = True):
        super().__init__(in_features, out_features, bias)
        self._set_quant(bits, per_channel, symmetric)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.fake_weight(), self.bias)


def _tuples(**kwargs) -> dict:
    # descriptions store lists (plain values); torch layers keep tuples
    return {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}


class QuantConv1d(_QuantMixin, nn.Conv1d):
    base_type = "conv1d"

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, bits: int = 8, per_channel: bool = True, symmetric: bool = True):
        super().__init__(in_channels, out_channels, **_tuples(kernel_size=kernel_size, stride=stride, padding=padding,
                                                              dilation=dilation), groups=groups, bias=bias)
        self._set_quant(bits, per_channel, symmetric)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.fake_weight(), self.bias)


class QuantConv2d(_QuantMixin, nn.Conv2d):
    base_type = "conv2d"

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, bits: int = 8, per_channel: bool = True, symmetric: bool = True):
        super().__init__(in_channels, out_channels, **_tuples(kernel_size=kernel_size, stride=stride, padding=padding,
                                                              dilation=dilation), groups=groups, bias=bias)
        self._set_quant(bits, per_channel, symmetric)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.fake_weight(), self.bias)


QUANT_LAYERS: dict[type[nn.Module], type[_QuantMixin]] = {
    nn.Linear: QuantLinear, nn.Conv1d: QuantConv1d, nn.Conv2d: QuantConv2d}


def is_quantized(module: nn.Module) -> bool:
    return isinstance(module, _QuantMixin)


def quantizable(module: nn.Module) -> bool:
    """A plain (exact type) Linear/Conv that can be swapped for its quantized version."""
    return type(module) in QUANT_LAYERS


def to_quant(module: nn.Module, spec: WeightQuant) -> nn.Module:
    """The quantized twin of a plain Linear/Conv, sharing nothing with it (weights copied)."""
    plain = next(n for n, (cls, _) in LAYERS.items() if type(module) is cls)
    layer = QUANT_LAYERS[type(module)](**LAYERS[plain][1](module), bits=spec.bits, per_channel=spec.per_channel,
                                       symmetric=spec.symmetric)
    layer.load_state_dict(module.state_dict())
    return layer.train(module.training)


def to_float(module: _QuantMixin) -> nn.Module:
    """The plain layer holding the dequantized weight: what export traces (the integers are put back afterwards)."""
    layer = LAYERS[module.base_type][0](**_tuples(**module.float_kwargs()))
    with torch.no_grad():
        layer.weight.copy_(module.dequantized_weight())
        if module.bias is not None:
            layer.bias.copy_(module.bias)
    return layer.train(module.training)


class ActQuant(nn.Module):
    """8-bit asymmetric (uint8) fake quantization of activations, range from a running min/max.

    The range grows with every batch seen in train mode (calibration, QAT) and is frozen in eval mode. Until it has
    seen data the layer passes values through. Exported by torch as QuantizeLinear/DequantizeLinear."""

    QMIN, QMAX = 0, 255

    def __init__(self):
        super().__init__()
        self.register_buffer("min_val", torch.tensor(float("inf")))
        self.register_buffer("max_val", torch.tensor(float("-inf")))

    def describe(self) -> dict:
        return {}

    @property
    def observed(self) -> bool:
        return bool(torch.isfinite(self.min_val))

    def qparams(self) -> tuple[torch.Tensor, torch.Tensor]:
        # the range always contains 0 (ReLU outputs, zero padding are exact)
        lo, hi = self.min_val.clamp(max=0), self.max_val.clamp(min=0)
        scale = (hi - lo) / (self.QMAX - self.QMIN)
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        zero_point = (self.QMIN - lo / scale).round().clamp(self.QMIN, self.QMAX).to(torch.int32)
        return scale.reshape(1), zero_point.reshape(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                self.min_val.copy_(torch.minimum(self.min_val, x.min()))
                self.max_val.copy_(torch.maximum(self.max_val, x.max()))
        # (while tracing for export the range is known: export checks that every ActQuant has seen data)
        if not torch.jit.is_tracing() and not self.observed:
            return x
        scale, zero_point = self.qparams()
        return _ActFakeQuant.apply(x, scale, zero_point.float(), self.QMIN, self.QMAX)


class _ActFakeQuant(torch.autograd.Function):
    """QuantizeLinear then DequantizeLinear as ONNX Runtime computes them (x / scale, round half to even; torch's
    own fake_quantize multiplies by 1/scale and rounds differently at a few boundaries). Gradient: straight
    through inside the range, zero where clamped."""

    @staticmethod
    def forward(ctx, x, scale, zero_point, qmin: int, qmax: int):
        t = torch.round(x / scale) + zero_point
        ctx.save_for_backward((t >= qmin) & (t <= qmax))
        return (t.clamp(qmin, qmax) - zero_point) * scale

    @staticmethod
    def backward(ctx, grad):
        (inside,) = ctx.saved_tensors
        return grad * inside, None, None, None, None


register_layer("quant_linear", QuantLinear)
register_layer("quant_conv1d", QuantConv1d)
register_layer("quant_conv2d", QuantConv2d)
register_layer("act_quant", ActQuant)
