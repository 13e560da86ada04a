"""ONNX element types ↔ torch dtypes (for the trainable torch view of a graph)."""

from __future__ import annotations

import onnx
import torch

_TO_TORCH = {
    onnx.TensorProto.FLOAT: torch.float32, onnx.TensorProto.DOUBLE: torch.float64,
    onnx.TensorProto.FLOAT16: torch.float16, onnx.TensorProto.BFLOAT16: torch.bfloat16,
    onnx.TensorProto.INT64: torch.int64, onnx.TensorProto.INT32: torch.int32, onnx.TensorProto.INT16: torch.int16,
    onnx.TensorProto.INT8: torch.int8, onnx.TensorProto.UINT8: torch.uint8, onnx.TensorProto.BOOL: torch.bool,
}


def torch_dtype(onnx_type: int) -> torch.dtype:
    try:
        return _TO_TORCH[onnx_type]   # type: ignore[index]
    except KeyError:
        raise NotImplementedError(f"ONNX element type {onnx_type}") from None
