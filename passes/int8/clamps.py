"""A Max (or Min) by a constant that the QuantizeLinear after it already clamps to, dropped from a static int8 graph.

TensorFlow exports write a floored activation as `Max(LeakyRelu(x), c)` (openWakeWord's embedding model: 19 of them,
c = −0.4). In a static int8 graph the Max sits between a DequantizeLinear and the next layer's QuantizeLinear: ONNX
Runtime has no int8 Max, so each one costs a float pass and keeps the LeakyRelu float too, when without it ONNX
Runtime would run `DequantizeLinear → LeakyRelu → QuantizeLinear` as one QLinearLeakyRelu. Where the QuantizeLinear's
lowest code already stands at or above c (its range was calibrated on the Max's output, so its minimum is c or
higher), every value the Max would raise to c is clamped to that code anyway: the Max changes no integer and goes.
The same holds for a Min and the highest code, and through what only moves or picks values between the clamp and
the QuantizeLinear (a MaxPool of clamped values is the clamp of the MaxPool).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from edgec.passes.graph_tools import protected_names, readers

_CODES = {onnx.TensorProto.UINT8: (0, 255), onnx.TensorProto.INT8: (-128, 127)}
# ops that commute with a clamp by a constant: each output value is one of its input values (or a max of them)
_ORDER_KEEPING = ("MaxPool", "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Identity")


def clamps_dropped(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """The model without the Max/Min-by-a-constant nodes whose only reader, a QuantizeLinear, clamps at least as far;
    how many were dropped."""
    graph = model.graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    users = readers(model)
    outputs = protected_names(model)
    dropped = []
    for node in graph.node:
        if node.op_type not in ("Max", "Min") or len(node.input) != 2 or node.output[0] in outputs:
            continue
        bound = [constants[i] for i in node.input if i in constants]
        variable = [i for i in node.input if i not in constants]
        quantize = _quantize_after(node.output[0], users, outputs)
        if len(bound) != 1 or len(variable) != 1 or bound[0].size != 1 or bound[0].ndim > 1 or quantize is None \
                or not _clamps(quantize, node.op_type, float(bound[0].ravel()[0]), constants):
            continue
        reader = users[node.output[0]][0]
        reader.input[list(reader.input).index(node.output[0])] = variable[0]
        dropped.append(node)
    for node in dropped:
        graph.node.remove(node)
    return model, len(dropped)


def _quantize_after(tensor: str, users: dict, outputs: set[str]) -> onnx.NodeProto | None:
    """The QuantizeLinear that `tensor` reaches through single-reader order-keeping ops, or None."""
    while tensor not in outputs and len(users.get(tensor, [])) == 1:
        node = users[tensor][0]
        if node.op_type == "QuantizeLinear" and node.input[0] == tensor:
            return node
        if node.op_type not in _ORDER_KEEPING or node.input[0] != tensor or len([o for o in node.output if o]) != 1:
            return None                  # (a MaxPool's Indices would move where values tied at the bound)
        tensor = node.output[0]
    return None


def _clamps(quantize: onnx.NodeProto, op: str, bound: float, constants: dict) -> bool:
    """Whether `quantize` (per-tensor) maps every value beyond `bound` to the code `bound` itself takes: the bound
    falls on its lowest code (Max) or its highest (Min)."""
    scale = constants.get(quantize.input[1])
    has_zero = len(quantize.input) > 2 and quantize.input[2]
    zero = constants.get(quantize.input[2]) if has_zero else None
    if scale is None or scale.size != 1 or (has_zero and (zero is None or zero.size != 1)):
        return False
    kind = onnx.helper.np_dtype_to_tensor_dtype(zero.dtype) if zero is not None else next(
        (a.i for a in quantize.attribute if a.name == "output_dtype"), onnx.TensorProto.UINT8)
    codes = _CODES.get(kind)
    if codes is None:
        return False
    zero_point = int(zero.ravel()[0]) if zero is not None else 0
    # the code the bound itself takes, as QuantizeLinear computes it: float32, rounded half to even
    code = int(np.rint(np.float32(bound) / np.float32(scale.ravel()[0]))) + zero_point
    return code <= codes[0] if op == "Max" else code >= codes[1]
