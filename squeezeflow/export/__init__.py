"""torch -> ONNX, checked by onnx.checker, and compared with torch on real inputs."""

from squeezeflow.export.onnx import export_onnx, onnx_logits, parity

__all__ = ["export_onnx", "onnx_logits", "parity"]
