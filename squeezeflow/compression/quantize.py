"""Post-training weight quantization (round to nearest, no training): every Linear/Conv becomes its fake-quantized
twin (quant_layers.py), and export stores the integer weights. Shared by qat.py and mixed_precision.py.

Activations can also be fake-quantized to uint8 (an ActQuant before each quantized layer, its range calibrated on
training samples). Off by default: ONNX Runtime runs such graphs with integer kernels whose rounding differs from
torch's float arithmetic at a few quantization boundaries, so the ONNX outputs then agree with torch by argmax
(about 1e-3 away on a fraction of a percent of outputs), not to 1e-5 as weight-only models do.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from squeezeflow.compression.base import Applied, CompressContext, Selection, Technique, register_technique
from squeezeflow.io import input_batches
from squeezeflow.models.graph import get_module, set_module
from squeezeflow.models.quant_layers import ActQuant, WeightQuant, is_quantized, quantizable, to_quant
from squeezeflow.training import accuracy

Bits = Literal[8, 4, 2, 1]
FP32 = 32  # the "bits" of a layer left in float


class QuantOptions(Selection):
    """What every quantizing technique shares (the bit widths are each technique's own)."""

    per_channel: bool = Field(True, description="one scale per output channel (else one per layer)")
    symmetric: bool = Field(True, description="zero point 0; asymmetric uses an unsigned grid and a zero point. "
                                              "Binary (1 bit) is always symmetric")
    skip_first: bool = Field(False, description="keep the first Linear/Conv in fp32 (it sees raw inputs)")
    skip_last: bool = Field(False, description="keep the last Linear/Conv (the classifier) in fp32")
    activations: bool = Field(False, description="also fake-quantize each quantized layer's input to uint8")
    calibration_samples: int = Field(512, ge=1, le=100_000, description="training samples for activation ranges")

    def weight_quant(self, bits: int) -> WeightQuant:
        return WeightQuant(bits, self.per_channel, self.symmetric)

    def recipe_problems(self) -> list[tuple[str, Any, str]]:
        # Activation fake-quant exports to QDQ that ONNX Runtime runs with integer kernels whose rounding differs
        # from torch's by ~1e-3, so the lifecycle's parity check (1e-4) would always stop it. Int8 activations are
        # a target choice instead: the ort-int8-qdq builder.
        if self.activations:
            return [("activations", True, "activation quantization in a recipe cannot pass the ONNX parity check; "
                     "quantize activations with an ort-int8-qdq device target instead")]
        return []


class QuantizeConfig(QuantOptions):
    bits: Bits = 8


def weighted_layers(model: nn.Module) -> list[str]:
    """Paths of the Linear/Conv layers, plain or already quantized, wherever they sit in the model."""
    return [p for p, m in model.named_modules() if p and (quantizable(m) or is_quantized(m))]


def targets(model: nn.Module, opts: QuantOptions) -> list[str]:
    """The plain Linear/Conv layers to quantize: those the include/exclude patterns choose, but the skipped
    first/last."""
    idx = weighted_layers(model)
    skip = ({idx[0]} if opts.skip_first and idx else set()) | ({idx[-1]} if opts.skip_last and idx else set())
    return [p for p in idx if p not in skip and quantizable(get_module(model, p))
            and opts.chooses(model, p)]


@torch.no_grad()
def calibrate(model: nn.Module, x: np.ndarray, batch: int = 256) -> None:
    """Let each ActQuant observe the activation range; only they run in train mode (BatchNorm stats stay)."""
    model.eval()
    observers = [m for m in model.modules() if isinstance(m, ActQuant)]
    for m in observers:
        m.train()
    for b in input_batches(x, batch):
        model(torch.as_tensor(b))
    model.eval()


def quantize_model(model: nn.Module, plan: dict[str, int], opts: QuantOptions,
                   calibration: np.ndarray | None = None) -> nn.Module:
    """A copy of `model` with the layer at each path quantized to plan[path] bits (the model itself is left
    untouched). With activations, the layer becomes Sequential(ActQuant, quantized layer)."""
    out = copy.deepcopy(model)
    for path, bits in plan.items():
        q = to_quant(get_module(out, path), opts.weight_quant(bits))
        set_module(out, path, nn.Sequential(ActQuant(), q) if opts.activations else q)
    out.eval()
    if opts.activations:
        if calibration is None:
            raise ValueError("activation quantization needs calibration samples")
        calibrate(out, calibration)
    return out


def layer_bits(model: nn.Module, plan: dict[str, int]) -> dict[str, int]:
    """Bits of every Linear/Conv weight of `model` under `plan` (32 = left in float), keyed by layer path."""
    def bits(p: str) -> int:
        m = get_module(model, p)
        return plan.get(p, m.bits if is_quantized(m) else FP32)

    return {p: bits(p) for p in weighted_layers(model)}


def size_metrics(model: nn.Module, plan: dict[str, int]) -> dict:
    """Weight bytes at the planned bit widths (scales and zero points not counted), vs fp32."""
    bits = layer_bits(model, plan)
    numel = {p: get_module(model, p).weight.numel() for p in weighted_layers(model)}
    stored = sum(numel[k] * b for k, b in bits.items()) / 8
    fp32 = sum(numel.values()) * 4
    return {"bits": bits, "weight_bytes": stored, "fp32_weight_bytes": fp32,
            "weight_compression": fp32 / stored if stored else 1.0}


def quant_metrics(before: nn.Module, plan: dict[str, int], after: nn.Module, ctx: CompressContext) -> dict:
    return {**size_metrics(before, plan), "val_accuracy_fp32": accuracy(before, *ctx.val),
            "val_accuracy": accuracy(after, *ctx.val)}


@register_technique
class Quantize(Technique):
    """Round-to-nearest post-training quantization of the weights, at one bit width for every layer."""

    name, kind, Config = "quantize", "quantize", QuantizeConfig
    handles = (nn.Linear, nn.Conv1d, nn.Conv2d)

    def apply(self, model: nn.Module, ctx: CompressContext) -> Applied:
        cfg: QuantizeConfig = self.config
        plan = {i: cfg.bits for i in targets(model, cfg)}
        out = quantize_model(model, plan, cfg, ctx.train[0][: cfg.calibration_samples])
        return Applied(out, quant_metrics(model, plan, out, ctx))
