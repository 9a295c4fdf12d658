"""An exported ONNX model as a frozen teacher (`teacher.source: {kind: onnx, path: model.onnx}`): ONNX Runtime
computes its outputs, distillation trains a torch student on them. The file's bytes live in a buffer, so the
teacher's checkpoint holds the model itself, not a path that may change."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

from squeezeflow.models.registry import ModelSpec, register_arch

_SESSIONS: dict[str, object] = {}  # sha256 of the bytes -> InferenceSession (sessions cannot be deep-copied)


class OnnxModel(nn.Module):
    def __init__(self, data: bytes):
        super().__init__()
        self.register_buffer("onnx_bytes", torch.tensor(np.frombuffer(data, dtype=np.uint8)))

    def _session(self):
        import onnxruntime as ort

        data = self.onnx_bytes.numpy().tobytes()
        key = hashlib.sha256(data).hexdigest()
        if key not in _SESSIONS:
            opts = ort.SessionOptions()
            opts.log_severity_level = 3
            _SESSIONS[key] = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        return _SESSIONS[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sess = self._session()
        inp = sess.get_inputs()[0]
        dtype = np.int64 if "int" in inp.type else np.float32
        out = sess.run([sess.get_outputs()[0].name], {inp.name: x.detach().cpu().numpy().astype(dtype)})[0]
        return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))

    def train(self, mode: bool = True) -> OnnxModel:  # frozen: nothing to train
        return super().train(False)

    def num_weights(self) -> tuple[int, int]:
        """(elements, nonzero elements) of the file's initializers: its parameters, as torch counts them."""
        import onnx
        from onnx import numpy_helper

        graph = onnx.load_from_string(self.onnx_bytes.numpy().tobytes()).graph
        arrays = [numpy_helper.to_array(t) for t in graph.initializer]
        return sum(a.size for a in arrays), sum(int(np.count_nonzero(a)) for a in arrays)

    def standard_bytes(self, input_name: str, output_name: str) -> bytes:
        """The file with its first input and output renamed as squeezeflow's exports name them, and a symbolic
        batch axis: what the export stage writes when the teacher is deployed as it is."""
        import onnx

        model = onnx.load_from_string(self.onnx_bytes.numpy().tobytes())
        graph = model.graph
        renames = {graph.input[0].name: input_name, graph.output[0].name: output_name}
        for value in (graph.input[0], graph.output[0]):
            value.name = renames[value.name]
            dims = value.type.tensor_type.shape.dim
            if dims:
                dims[0].ClearField("dim_value")
                dims[0].dim_param = "batch"
        for node in graph.node:
            node.input[:] = [renames.get(n, n) for n in node.input]
            node.output[:] = [renames.get(n, n) for n in node.output]
        return model.SerializeToString()


@register_arch("onnx")
def onnx_teacher(spec: ModelSpec) -> nn.Module:
    """extra: path (the .onnx file). Rebuilt from a checkpoint, the bytes come from its state dict (the buffer is
    resized and loaded after this), so the user's file may have moved or changed since."""
    path = Path(spec.extra["path"])
    return OnnxModel(path.read_bytes() if path.is_file() else b"")


def is_onnx_teacher(model: nn.Module) -> bool:
    return isinstance(model, OnnxModel)
