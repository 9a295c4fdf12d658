from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from squeezeflow.errors import SqueezeflowInputError

# importing quant also registers the quantized layers, so checkpoints holding them load wherever export is used
from squeezeflow.export.quant import export_quantized, has_quantized
from squeezeflow.io import atomic_path
from squeezeflow.onnxio import INPUT, OUTPUT, missing_or_empty, one_line, onnx_logits
from squeezeflow.training import predict_logits

EXPORTERS = ("dynamo", "torchscript")


def export_onnx(model: nn.Module, input_shape: tuple[int, ...], path: Path, opset: int,
                input_dtype: str = "float32", exporter: str = "dynamo") -> dict[str, str]:
    """Export with a dynamic batch axis; the file appears only once onnx.checker accepts it. Returns how: the
    exporter used and, where the dynamo exporter failed and the TorchScript one took over, the reason. A model
    holding quantized layers is stored with integer weights (squeezeflow/export/quant.py), at the opset they need;
    an ONNX teacher deployed as it is is its own file."""
    model.eval()
    how: dict[str, str] = {}
    with atomic_path(Path(path)) as tmp:
        if hasattr(model, "standard_bytes"):  # an ONNX teacher deployed as it is: the file itself, names aligned
            tmp.write_bytes(model.standard_bytes(INPUT, OUTPUT))
            how["exporter"] = "none (the ONNX teacher's own file)"
        elif has_quantized(model):
            export_quantized(model, input_shape, tmp, opset, names=(INPUT, OUTPUT), input_dtype=input_dtype)
            how["exporter"] = "squeezeflow QDQ (quantized layers)"
        else:
            how = _export_float(model, input_shape, tmp, opset, input_dtype, exporter)
        onnx.checker.check_model(str(tmp), full_check=True)
    return how


def _export_float(model: nn.Module, input_shape, tmp: Path, opset: int, input_dtype: str, exporter: str) -> dict:
    # batch 2 in the example: torch.export specializes a dimension of size 1, and the batch axis must stay dynamic
    example = torch.zeros((2, *input_shape), dtype=getattr(torch, input_dtype))
    if exporter == "dynamo":
        try:
            _dynamo(model, example, tmp, opset)
            return {"exporter": "dynamo"}
        except Exception as exc:  # noqa: BLE001 - any failure of torch.export or onnxscript: record it, fall back
            reason = f"{type(exc).__name__}: {one_line(exc)[:300]}"
    else:
        reason = "export.exporter = torchscript"
    torch.onnx.export(model, (example[:1],), str(tmp), input_names=[INPUT], output_names=[OUTPUT],
                      dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}}, opset_version=opset, dynamo=False)
    return {"exporter": "torchscript", "exporter_fallback_reason": reason}


def _dynamo(model: nn.Module, example: torch.Tensor, tmp: Path, opset: int) -> None:
    """torch.export + onnxscript (torch.onnx.export(dynamo=True)), the batch axis dynamic; its progress lines are
    kept off the terminal. torchlib emits opset 18 and up: a lower export.opset gets 18."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, (example,), input_names=[INPUT], output_names=[OUTPUT],
                                    dynamic_shapes=({0: torch.export.Dim.DYNAMIC},), opset_version=max(opset, 18),
                                    dynamo=True, external_data=False, verbose=False, report=False)
        program.save(str(tmp), external_data=False)
    proto = onnx.load(str(tmp), load_external_data=False)
    fixed = proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value
    if fixed:  # specialized after all: not deployable at any batch size
        raise ValueError(f"the batch axis was fixed to {fixed}")
    _strip_metadata(proto)
    onnx.save(proto, str(tmp))


def _strip_metadata(proto: onnx.ModelProto) -> None:
    """The exporter's per-node provenance (FX names, stack traces with this machine's paths): bytes a deployed
    model does not need, and that would make the same model's file differ from one checkout to another."""
    graph = proto.graph
    for item in (*graph.node, *graph.value_info, *graph.input, *graph.output, *graph.initializer):
        del item.metadata_props[:]
        item.doc_string = ""
    del graph.metadata_props[:]
    del proto.metadata_props[:]


def check_onnx_file(path: Path) -> None:
    """An ONNX file a stage reads, checked before use: a missing, corrupt or empty file is bad input naming the file
    (SqueezeflowInputError), not a protobuf or ONNX Runtime error from deep inside a builder."""
    path = Path(path)
    missing_or_empty(path)
    try:
        onnx.checker.check_model(onnx.load(str(path)))
    except Exception as exc:  # protobuf's DecodeError, onnx's ValidationError, ...: all mean "not a model"
        raise SqueezeflowInputError(path, "<file>", str(path), f"not a valid ONNX model ({one_line(exc)})") from None


def parity(model: nn.Module, path: Path, x: np.ndarray) -> dict[str, float]:
    """How far ONNX Runtime's outputs are from torch's on the same inputs: the file's own arithmetic. Without its
    QDQ fusion: on integer weights before a MatMul, ONNX Runtime would otherwise quantize the activations on the fly
    (a runtime's speed choice, measured per target by validation, not an export error)."""
    ref, got = predict_logits(model, x), onnx_logits(path, x, options={"session.disable_quant_qdq": "1"})
    return {
        "max_abs_diff": float(np.abs(ref - got).max()),
        "argmax_agreement": float((ref.argmax(1) == got.argmax(1)).mean()),
    }
