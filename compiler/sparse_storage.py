"""Sparse initializers: store mostly-zero weights as COO (smaller files), densify them for the passes.

ONNX's COO costs 12 bytes per non-zero with linearized int64 indices against 4 bytes per dense float,
so sparse storage only shrinks a tensor with more than 2/3 zeros; ONNX Runtime densifies them at load.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

MIN_ZEROS = 0.7          # a little past the 2/3 break-even, so the file really shrinks
MIN_ELEMENTS = 4096


def densify_sparse_initializers(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose sparse initializers are ordinary dense ones (onnx-graphsurgeon ignores sparse ones)."""
    if not model.graph.sparse_initializer:
        return model
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for sparse in model.graph.sparse_initializer:
        values = numpy_helper.to_array(sparse.values)
        indices = numpy_helper.to_array(sparse.indices).astype(np.int64)
        dims = tuple(sparse.dims)
        dense = np.zeros(int(np.prod(dims)), dtype=values.dtype)
        flat = indices if indices.ndim == 1 else np.ravel_multi_index(tuple(indices.T), dims)
        dense[flat] = values
        model.graph.initializer.append(numpy_helper.from_array(dense.reshape(dims), sparse.values.name))
    del model.graph.sparse_initializer[:]
    return model


def sparsify_initializers(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """Move float initializers with ≥ 70 % zeros into sparse_initializer; returns the names moved."""
    graph_outputs = {o.name for o in model.graph.output}
    keep, moved = [], []
    for init in model.graph.initializer:
        if init.data_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE):
            keep.append(init)
            continue
        array = numpy_helper.to_array(init)
        if array.size < MIN_ELEMENTS or init.name in graph_outputs or np.mean(array == 0) < MIN_ZEROS:
            keep.append(init)
            continue
        flat = array.ravel()
        nz = np.flatnonzero(flat)
        values = numpy_helper.from_array(flat[nz], init.name)
        indices = numpy_helper.from_array(nz.astype(np.int64), f"{init.name}.indices")
        model.graph.sparse_initializer.append(onnx.helper.make_sparse_tensor(values, indices, list(array.shape)))
        moved.append(init.name)
    if moved:
        del model.graph.initializer[:]
        model.graph.initializer.extend(keep)
    return model, moved
