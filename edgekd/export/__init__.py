"""The one export path: torch -> ONNX with a dynamic batch, checked, and parity-checked against torch."""

from edgekd.export.onnx import Parity, check_parity, export_onnx, onnx_input_shape

__all__ = ["Parity", "check_parity", "export_onnx", "onnx_input_shape"]
