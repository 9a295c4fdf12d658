"""ONNX graph transforms for TensorRT's strongly typed networks (TensorRT 11 builds no other kind): the precision of
every tensor is decided in the graph before the build, not by builder flags.

- fp16: constant weight dequantization and batch norms are folded into plain float weights, every float tensor
  becomes float16, and Casts at the graph's edges keep its inputs and outputs float32 (callers feed and read fp32).
- int8: explicit symmetric QDQ (TensorRT takes int8 Q/DQ with zero points of 0 and float biases only);
  `tensorrt_qdq_problems` says what a graph does that TensorRT would refuse.

All of it is plain `onnx` and numpy: it runs and is tested on machines without TensorRT.
"""

from __future__ import annotations

import copy

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FP16_MAX = float(np.finfo(np.float16).max)
# Inputs that ONNX requires to stay float32 whatever the data type (op type, input index).
FLOAT32_ONLY = {("Resize", 2), ("Upsample", 1)}


def _initializers(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    return {i.name: i for i in graph.initializer}


def _consumers(graph: onnx.GraphProto, name: str) -> list[onnx.NodeProto]:
    return [n for n in graph.node if name in n.input]


def _attr(node: onnx.NodeProto, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _replace_initializer(graph: onnx.GraphProto, name: str, array: np.ndarray) -> None:
    for init in graph.initializer:
        if init.name == name:
            graph.initializer.remove(init)
            break
    graph.initializer.append(numpy_helper.from_array(array, name))


def _drop_unused_initializers(graph: onnx.GraphProto) -> None:
    used = {name for n in graph.node for name in n.input} | {o.name for o in graph.output}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)


def fold_constant_dequantize(model: onnx.ModelProto) -> int:
    """DequantizeLinear of constant (initializer) weights -> the float weights themselves. Returns how many."""
    graph, folded = model.graph, 0
    for node in list(graph.node):
        inits = _initializers(graph)
        if node.op_type != "DequantizeLinear" or not all(i in inits for i in node.input if i):
            continue
        if _attr(node, "block_size", 0):
            continue  # blocked quantization: left to the strict type check to report
        q = numpy_helper.to_array(inits[node.input[0]]).astype(np.float32)
        scale = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
        zero = (numpy_helper.to_array(inits[node.input[2]]).astype(np.float32)
                if len(node.input) > 2 and node.input[2] else np.zeros_like(scale))
        if scale.ndim == 1 and q.ndim > 1:  # per-axis: broadcast along `axis`
            shape = [1] * q.ndim
            shape[_attr(node, "axis", 1) % q.ndim] = -1
            scale, zero = scale.reshape(shape), zero.reshape(shape)
        graph.initializer.append(numpy_helper.from_array(((q - zero) * scale).astype(np.float32), node.output[0]))
        graph.node.remove(node)
        folded += 1
    _drop_unused_initializers(graph)
    return folded


def fold_batchnorm(model: onnx.ModelProto) -> int:
    """Conv -> BatchNormalization (inference) with constant parameters -> one Conv with scaled weights and a bias.
    Fewer ops, and no tiny running variances to represent in fp16. Returns how many were folded."""
    graph, folded = model.graph, 0
    producers = {o: n for n in graph.node for o in n.output}
    for bn in [n for n in graph.node if n.op_type == "BatchNormalization"]:
        inits = _initializers(graph)
        conv = producers.get(bn.input[0])
        if (conv is None or conv.op_type != "Conv" or len(_consumers(graph, conv.output[0])) != 1
                or conv.input[1] not in inits or not all(i in inits for i in bn.input[1:5])
                or (len(conv.input) > 2 and conv.input[2] and conv.input[2] not in inits)
                or len(bn.output) > 1 and any(bn.output[1:])):
            continue
        gamma, beta, mean, var = (numpy_helper.to_array(inits[i]).astype(np.float64) for i in bn.input[1:5])
        factor = gamma / np.sqrt(var + _attr(bn, "epsilon", 1e-5))
        weight = numpy_helper.to_array(inits[conv.input[1]]).astype(np.float64)
        bias = (numpy_helper.to_array(inits[conv.input[2]]).astype(np.float64)
                if len(conv.input) > 2 and conv.input[2] else np.zeros(weight.shape[0]))
        w_name, b_name = f"{conv.output[0]}.folded_weight", f"{conv.output[0]}.folded_bias"
        _replace_initializer(graph, w_name, (weight * factor.reshape(-1, *[1] * (weight.ndim - 1))).astype(np.float32))
        _replace_initializer(graph, b_name, ((bias - mean) * factor + beta).astype(np.float32))
        data = conv.input[0]
        del conv.input[:]
        conv.input.extend([data, w_name, b_name])
        conv.output[0] = bn.output[0]
        graph.node.remove(bn)
        producers = {o: n for n in graph.node for o in n.output}
        folded += 1
    _drop_unused_initializers(graph)
    return folded


def _float_to_fp16(array: np.ndarray) -> tuple[np.ndarray, int]:
    """float32 -> float16, saturating at fp16's range (a weight that large would be inf otherwise); how many
    values were clipped."""
    clipped = int(np.count_nonzero(np.abs(array) > FP16_MAX))
    return np.clip(array, -FP16_MAX, FP16_MAX).astype(np.float16), clipped


def _float32_only(graph: onnx.GraphProto) -> set[str]:
    return {n.input[i] for n in graph.node for op, i in FLOAT32_ONLY if n.op_type == op and len(n.input) > i}


def to_fp16(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict]:
    """The graph in float16 for a strongly typed TensorRT network, its inputs and outputs still float32 (Casts at
    the edges). Returns the new model and what was done (folds, clipped values). Raises ValueError when the result
    is not a type-consistent ONNX graph."""
    model = copy.deepcopy(model)
    graph = model.graph
    report = {"folded_dequantize": fold_constant_dequantize(model), "folded_batchnorm": fold_batchnorm(model),
              "clipped_values": 0}
    keep = _float32_only(graph)
    for init in list(graph.initializer):
        if init.data_type == TensorProto.FLOAT and init.name not in keep:
            array, clipped = _float_to_fp16(numpy_helper.to_array(init))
            report["clipped_values"] += clipped
            _replace_initializer(graph, init.name, array)
    for node in graph.node:
        if node.op_type == "Cast" and _attr(node, "to", None) == TensorProto.FLOAT:
            node.attribute.remove(next(a for a in node.attribute if a.name == "to"))
            node.attribute.append(helper.make_attribute("to", TensorProto.FLOAT16))
        for attr in node.attribute:
            if (attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == TensorProto.FLOAT
                    and not (node.op_type == "Constant" and node.output[0] in keep)):
                array, clipped = _float_to_fp16(numpy_helper.to_array(attr.t))
                report["clipped_values"] += clipped
                attr.t.CopyFrom(numpy_helper.from_array(array, attr.t.name))
    _cast_edges(graph)
    del graph.value_info[:]
    check_typed(model)
    return model, report


def _rename_input(graph: onnx.GraphProto, old: str, new: str) -> None:
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new


def _cast_edges(graph: onnx.GraphProto) -> None:
    """float32 graph inputs -> Cast to fp16 before first use; fp16 results -> Cast to float32 as the outputs."""
    casts_in = []
    for inp in graph.input:
        if inp.type.tensor_type.elem_type == TensorProto.FLOAT:
            half = f"{inp.name}.fp16"
            _rename_input(graph, inp.name, half)
            casts_in.append(helper.make_node("Cast", [inp.name], [half], to=TensorProto.FLOAT16,
                                             name=f"{inp.name}.to_fp16"))
    for out in graph.output:
        if out.type.tensor_type.elem_type == TensorProto.FLOAT:
            half = f"{out.name}.fp16"
            for node in graph.node:
                for i, name in enumerate(node.output):
                    if name == out.name:
                        node.output[i] = half
            _rename_input(graph, out.name, half)
            graph.node.append(helper.make_node("Cast", [half], [out.name], to=TensorProto.FLOAT,
                                               name=f"{out.name}.to_fp32"))
    for i, node in enumerate(casts_in):
        graph.node.insert(i, node)


def check_typed(model: onnx.ModelProto) -> onnx.ModelProto:
    """Every tensor's type follows from the graph (what a strongly typed network needs): ONNX's checker and strict
    shape/type inference, one ValueError with ONNX's reason otherwise."""
    try:
        onnx.checker.check_model(model)
        return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ValueError(f"not a strongly typed graph: {' '.join(str(exc).split())[:300]}") from None


def tensorrt_qdq_problems(model: onnx.ModelProto) -> list[str]:
    """What in a QDQ graph TensorRT's explicit quantization would refuse: zero points other than 0, anything but
    int8 (or fp8/int4 weights), quantized biases (int32 DequantizeLinear: TensorRT takes float biases)."""
    graph = model.graph
    inits = _initializers(graph)
    ok_types = {TensorProto.INT8, TensorProto.INT4, TensorProto.FLOAT8E4M3FN}
    problems = []
    for node in graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        zp = node.input[2] if len(node.input) > 2 and node.input[2] else None
        if zp is None:
            if node.op_type == "QuantizeLinear":
                problems.append(f"{node.name or node.output[0]}: no zero point (quantizes to uint8)")
            continue
        if zp not in inits:
            problems.append(f"{node.name or node.output[0]}: zero point '{zp}' is not a constant")
            continue
        tensor = inits[zp]
        if tensor.data_type not in ok_types:
            what = "int32 (a quantized bias)" if tensor.data_type == TensorProto.INT32 else \
                TensorProto.DataType.Name(tensor.data_type).lower()
            problems.append(f"{node.name or node.output[0]}: {what} quantization")
        elif np.any(numpy_helper.to_array(tensor) != 0):
            problems.append(f"{node.name or node.output[0]}: asymmetric (zero point not 0)")
    return problems
