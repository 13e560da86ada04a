"""A MatMul of a one-hot matrix by a constant table, as the row lookup it is (Gather).

JAX and Keras embeddings are exported as `Cast(Equal(indices[..., None], arange(K))) @ W`: a K-wide one-hot row per
index, then a [K, N] product that reads every row of W to pick one (the magika file-type model: 12 288 bytes × 257
× 64 multiply-adds per call, a tenth of its latency). Gather picks the row. The lookup returns what the product does
for every index, in range or not: W gains a zero row, and an index outside [0, K) — whose one-hot row is all zeros
— is clipped onto it (-1, which Gather reads as the last row, or K).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgec.passes.graph_tools import default_opset, inferred_types, readers

INTEGER_TYPES = (onnx.TensorProto.INT32, onnx.TensorProto.INT64)
MIN_OPSET = 13                       # Clip with integer inputs (12) and Gather's negative indices, per ONNX
_SHAPE_OPS = ("Expand", "Reshape", "Unsqueeze")


def onehot_gathered(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """The model with each one-hot MatMul a Gather of its table (with a zero row), and how many changed."""
    if default_opset(model) < MIN_OPSET:
        return model, 0
    matches = onehot_matches(model)
    tables = {t.name: t for t in model.graph.initializer}
    replaced = {}
    for matmul, indices, table, dtype in matches:
        weight = numpy_helper.to_array(tables[table])
        rows = weight.shape[0]
        padded = numpy_helper.from_array(np.concatenate([weight, np.zeros((1, weight.shape[1]), weight.dtype)]),
                                         f"{table}_with_zero_row")
        low = numpy_helper.from_array(np.full((), -1, dtype=dtype), f"{matmul.output[0]}_low")
        high = numpy_helper.from_array(np.full((), rows, dtype=dtype), f"{matmul.output[0]}_high")
        model.graph.initializer.extend([padded, low, high])
        index = f"{matmul.output[0]}_index"
        squeezed = f"{matmul.output[0]}_rows"
        axes = numpy_helper.from_array(np.array([-1], np.int64), f"{matmul.output[0]}_axes")
        model.graph.initializer.append(axes)
        replaced[id(matmul)] = [
            helper.make_node("Squeeze", [indices, axes.name], [squeezed], name=f"{matmul.name}_squeeze"),
            helper.make_node("Clip", [squeezed, low.name, high.name], [index], name=f"{matmul.name}_clip"),
            helper.make_node("Gather", [padded.name, index], [matmul.output[0]], name=matmul.name, axis=0)]
    if not replaced:
        return model, 0
    kept = [new for n in model.graph.node for new in replaced.get(id(n), [n])]
    del model.graph.node[:]
    model.graph.node.extend(kept)
    return model, len(replaced)


def onehot_matches(model: onnx.ModelProto) -> list[tuple[onnx.NodeProto, str, str, type]]:
    """(the MatMul, the integer indices with a trailing axis of 1, the [K, N] table, the indices' numpy dtype) of each
    `Cast(Equal(indices, arange(K))) @ table`; its table read by nothing else."""
    graph = model.graph
    constants = {t.name: t for t in graph.initializer}
    producers = {out: n for n in graph.node for out in n.output}
    users = readers(model)
    types = inferred_types(model)
    found: list[tuple[onnx.NodeProto, str, str, type]] = []
    for node in graph.node:
        if node.op_type != "MatMul" or node.input[1] not in constants or len(users.get(node.input[1], [])) != 1:
            continue
        table = constants[node.input[1]]
        cast = producers.get(node.input[0])
        if len(table.dims) != 2 or table.data_type != onnx.TensorProto.FLOAT or cast is None or cast.op_type != "Cast" \
                or _attr(cast, "to") != onnx.TensorProto.FLOAT:
            continue
        equal = producers.get(cast.input[0])
        if equal is None or equal.op_type != "Equal":
            continue
        for indices, other in (equal.input, reversed(equal.input)):
            kind, rank = types.get(indices, (0, None))
            if _is_arange(constants.get(other), table.dims[0], rank) and kind in INTEGER_TYPES \
                    and _last_axis_one(indices, producers, constants):
                dtype: type = np.int32 if kind == onnx.TensorProto.INT32 else np.int64
                found.append((node, indices, table.name, dtype))
                break
    return found


def _is_arange(tensor: onnx.TensorProto | None, rows: int, rank: int | None) -> bool:
    """A constant 0, 1, …, rows − 1 along its last axis, every other axis 1 (it broadcasts the one-hot rows), of no
    more axes than the indices' `rank` (1 where unknown): more would add axes the lookup does not."""
    if tensor is None or not tensor.dims or tensor.dims[-1] != rows or int(np.prod(tensor.dims)) != rows \
            or len(tensor.dims) > (rank or 1):
        return False
    return bool(np.array_equal(numpy_helper.to_array(tensor).ravel(), np.arange(rows)))


def _last_axis_one(name: str, producers: dict, constants: dict) -> bool:
    """Whether the value's last axis is 1 by how it is made: a Reshape to a constant shape ending in 1, an Unsqueeze
    of the last axis, or an Expand of such a value to a shape whose last entry is 1 (what broadcasting leaves 1)."""
    node = producers.get(name)
    if node is None:
        return False
    if node.op_type == "Reshape" and node.input[1] in constants:
        shape = numpy_helper.to_array(constants[node.input[1]])
        return shape.size > 0 and int(shape[-1]) == 1
    if node.op_type == "Unsqueeze":
        axes = _attr(node, "axes") if len(node.input) == 1 else \
            (numpy_helper.to_array(constants[node.input[1]]).tolist() if node.input[1] in constants else None)
        return axes is not None and -1 in list(axes)
    if node.op_type == "Expand":
        return _ends_in_one(node.input[1], producers, constants) and _last_axis_one(node.input[0], producers, constants)
    return False


def _ends_in_one(shape: str, producers: dict, constants: dict) -> bool:
    """A shape whose last entry is 1: a constant, a Concat whose last part is, or a Cast of either."""
    if shape in constants:
        value = numpy_helper.to_array(constants[shape])
        return value.size > 0 and int(value.ravel()[-1]) == 1
    node = producers.get(shape)
    if node is not None and node.op_type == "Cast":
        return _ends_in_one(node.input[0], producers, constants)
    return node is not None and node.op_type == "Concat" and _ends_in_one(node.input[-1], producers, constants)


def _attr(node: onnx.NodeProto, name: str):
    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), None)
