"""Quantized torch model -> ONNX that really stores integer weights.

The model is traced with each quantized layer replaced by its plain twin holding the dequantized weight (the
exporter knows nothing of our layers), then every such fp32 initializer is swapped for an integer initializer plus
a DequantizeLinear (per-axis scale and zero point) that rebuilds it bit for bit. Containers: int8/uint8 for 8 bits
(opset >= 13), int4/uint4 for 4 bits (opset 21), int2/uint2 for 2 bits and binary (opset 25); the model is
converted to the opset its smallest container needs. ONNX Runtime 1.32 runs all of them on CPU.

One exception: when activations are quantized too, ONNX Runtime (1.32) fuses DequantizeLinear(int2 weight) into
an integer QGemm/QLinearConv that rejects int2 ("Type 'tensor(int2)' ... of operator (QGemm) is invalid") and the
session fails to load, so such graphs keep 2-bit and binary weights in int4 containers (`widen_int2`).
"""

from __future__ import annotations

import copy
import io
import warnings
from pathlib import Path

import ml_dtypes
import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper, version_converter
from torch import nn

from squeezeflow.models.graph import set_module
from squeezeflow.models.quant_layers import ActQuant, QParams, is_quantized, to_float

# bits -> (signed container, unsigned container, the opset whose DequantizeLinear takes them)
CONTAINERS = {8: (np.int8, np.uint8, 13), 4: (ml_dtypes.int4, ml_dtypes.uint4, 21),
              2: (ml_dtypes.int2, ml_dtypes.uint2, 25), 1: (ml_dtypes.int2, ml_dtypes.uint2, 25)}
WIDER = {onnx.TensorProto.INT2: ml_dtypes.int4, onnx.TensorProto.UINT2: ml_dtypes.uint4}  # int2 -> int4 storage


def container_bits(bits: int, allow_int2: bool) -> int:
    """The bit width of the integer type that stores `bits`-bit weights."""
    return 4 if bits <= 2 and not allow_int2 else max(bits, 2)


def has_quantized(model: nn.Module) -> bool:
    return any(is_quantized(m) or isinstance(m, ActQuant) for m in model.modules())


class _FrozenActQuant(nn.Module):
    """An observed ActQuant with constant scale and zero point: exports as QuantizeLinear/DequantizeLinear with
    constant (initializer) parameters, which ONNX Runtime needs to fuse them into integer kernels."""

    def __init__(self, layer: ActQuant):
        super().__init__()
        scale, zero_point = layer.qparams()
        self.scale, self.zero_point = float(scale), int(zero_point)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fake_quantize_per_tensor_affine(x, self.scale, self.zero_point, ActQuant.QMIN, ActQuant.QMAX)


def freeze(model: nn.Module) -> tuple[nn.Module, dict[str, QParams]]:
    """The traceable plain copy, and the integer form of each of its weights keyed by parameter name."""
    frozen, weights = copy.deepcopy(model), {}
    for path, m in list(frozen.named_modules()):
        if is_quantized(m):
            weights[f"{path}.weight"] = m.qparams()
            set_module(frozen, path, to_float(m))
        elif isinstance(m, ActQuant):
            if not m.observed:
                raise ValueError(f"layer {path} (ActQuant) has not seen any data: calibrate it before export")
            set_module(frozen, path, _FrozenActQuant(m))
    return frozen.eval(), weights


def trace(model: nn.Module, input_shape: tuple[int, ...], opset: int, names: tuple[str, str],
          input_dtype: str = "float32") -> onnx.ModelProto:
    example = torch.zeros((1, *input_shape), dtype=getattr(torch, input_dtype))
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # PRESERVE (the model is in eval mode) skips the eval-mode fusion of BatchNorm into the preceding Conv,
        # which would move the quantized conv weight off its integer grid. BN stays a separate op.
        warnings.filterwarnings("ignore", message=".*constant folding.*")
        torch.onnx.export(model, (example,), buf, input_names=[names[0]], output_names=[names[1]],
                          dynamic_axes={names[0]: {0: "batch"}, names[1]: {0: "batch"}}, opset_version=opset,
                          dynamo=False, training=torch.onnx.TrainingMode.PRESERVE)
    return onnx.load_from_string(buf.getvalue())


def needed_opset(weights: dict[str, QParams], opset: int, allow_int2: bool = True) -> int:
    return max([opset] + [CONTAINERS[container_bits(qp.spec.bits, allow_int2)][2] for qp in weights.values()])


def _find(graph: onnx.GraphProto, name: str, value: np.ndarray) -> tuple[onnx.TensorProto, bool]:
    """The initializer holding `value`: by name, else by exact value, also transposed (MatMul weights)."""
    inits = {i.name: i for i in graph.initializer}
    if name in inits and np.array_equal(numpy_helper.to_array(inits[name]), value):
        return inits[name], False
    for init in graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT:
            continue
        arr = numpy_helper.to_array(init)
        if arr.shape == value.shape and np.array_equal(arr, value):
            return init, False
        if value.ndim == 2 and arr.shape == value.shape[::-1] and np.array_equal(arr, value.T):
            return init, True
    raise ValueError(f"no initializer in the exported graph holds the quantized weight '{name}'")


def _integer_tensors(base: str, qp: QParams, transposed: bool, allow_int2: bool) -> tuple[list[onnx.TensorProto], int]:
    signed, unsigned, _ = CONTAINERS[container_bits(qp.spec.bits, allow_int2)]
    dtype = signed if qp.spec.signed else unsigned
    q = qp.q.numpy().T if transposed else qp.q.numpy()
    tensors = [numpy_helper.from_array(q.astype(np.int32).astype(dtype), f"{base}_quantized"),
               numpy_helper.from_array(qp.scale.numpy().astype(np.float32), f"{base}_scale"),
               numpy_helper.from_array(qp.zero_point.numpy().astype(np.int32).astype(dtype), f"{base}_zero_point")]
    return tensors, 1 if transposed else 0


def replace_weight(graph: onnx.GraphProto, name: str, qp: QParams, allow_int2: bool = True) -> onnx.NodeProto:
    """fp32 initializer -> integer initializer + the DequantizeLinear (returned, for the caller to place) whose
    output keeps the initializer's name."""
    init, transposed = _find(graph, name, qp.dequantize().numpy())
    target = init.name
    tensors, axis = _integer_tensors(target, qp, transposed, allow_int2)
    graph.initializer.remove(init)
    graph.initializer.extend(tensors)
    for inputs in (graph.input, graph.value_info):  # old-style graphs list initializers as inputs
        for v in [v for v in inputs if v.name == target]:
            inputs.remove(v)
    attrs = {"axis": axis} if qp.scale.dim() else {}
    return helper.make_node("DequantizeLinear", [t.name for t in tensors], [target], name=f"{target}_dequantize",
                            **attrs)


def integer_weights(proto: onnx.ModelProto, weights: dict[str, QParams], opset: int,
                    allow_int2: bool = True) -> onnx.ModelProto:
    target = needed_opset(weights, opset, allow_int2)
    if target > opset:
        proto = version_converter.convert_version(proto, target)
    nodes, done = [], []
    for name, qp in weights.items():
        try:
            nodes.append(replace_weight(proto.graph, name, qp, allow_int2))
        except ValueError:
            # the exporter keeps one initializer for equal weights: one already replaced may hold this one
            if not any(torch.equal(qp.dequantize(), d) for d in done):
                raise
        done.append(qp.dequantize())
    # they depend on initializers only: first, in layer order, keeps the graph topologically sorted
    for i, node in enumerate(nodes):
        proto.graph.node.insert(i, node)
    proto.ir_version = max(proto.ir_version, helper.find_min_ir_version_for(list(proto.opset_import)))
    return proto


def export_quantized(model: nn.Module, input_shape: tuple[int, ...], path: Path, opset: int,
                     names: tuple[str, str] = ("input", "logits"), input_dtype: str = "float32") -> None:
    frozen, weights = freeze(model)
    activations = any(isinstance(m, ActQuant) for m in model.modules())
    proto = integer_weights(trace(frozen, input_shape, opset, names, input_dtype), weights, opset,
                            allow_int2=not activations)
    onnx.save(proto, str(path))


def widen_int2(proto: onnx.ModelProto) -> int:
    """Store int2/uint2 initializers as int4/uint4 (same values), in place; returns how many were widened.
    For graphs about to get quantized activations, e.g. by the int8 target builder (see the module docstring)."""
    widened = 0
    for init in proto.graph.initializer:
        if init.data_type in WIDER:
            arr = numpy_helper.to_array(init).astype(np.int32).astype(WIDER[init.data_type])
            init.CopyFrom(numpy_helper.from_array(arr, init.name))
            widened += 1
    return widened
