"""Per-channel affine ops after a convolution folded into its weights and bias.

Some exports write a batch normalization (or a scale and shift) after a Conv as elementwise ops with per-channel
constants — (conv(x) − μ)·γ + β as Sub, Mul, Add — which ONNX Runtime folds only in part (it has Conv+Add and Conv+Mul
fusions, not Sub or Div, and stops at the first op it cannot take). Each op left is a float pass over the whole
activation, and in static int8 a quantized elementwise op and a quantization point more: open-nsfw exported from
PyTorch has 53 such chains. A chain of Add/Sub/Mul/Div by constants that broadcast per output channel (or scalars),
each read only by the next, is y = conv(x)·s + t: the Conv's weights are scaled by s and its bias becomes b·s + t —
exact up to float rounding.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from edgec.passes.graph_tools import readers

AFFINE_OPS = ("Add", "Sub", "Mul", "Div")


def affine_folded(model: onnx.ModelProto, beyond_runtime: bool = False) -> tuple[onnx.ModelProto, int]:
    """The model with each Conv's trailing per-channel affine chain folded into it, and how many Convs took one.
    `beyond_runtime`: only chains with a Sub or Div (ONNX Runtime folds Add and Mul chains itself at load)."""
    graph = model.graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    users = readers(model)
    outputs = {o.name for o in graph.output}
    dropped: set[int] = set()
    folded = 0
    for conv in graph.node:
        weight = constants.get(conv.input[1]) if conv.op_type == "Conv" and len(conv.input) > 1 else None
        if weight is None or weight.dtype != np.float32 or (len(conv.input) > 2 and conv.input[2] not in constants):
            continue
        chain, scale, shift = _affine_chain(conv.output[0], weight.shape[0], weight.ndim, users, constants, outputs)
        if not chain or (beyond_runtime and not {n.op_type for n in chain} & {"Sub", "Div"}):
            continue
        bias = constants[conv.input[2]] if len(conv.input) > 2 else np.zeros(weight.shape[0], np.float32)
        new_weight = (weight * scale.reshape(-1, *[1] * (weight.ndim - 1))).astype(np.float32)
        new_bias = (bias.astype(np.float64) * scale + shift).astype(np.float32)
        names = (f"{conv.input[1]}_{conv.output[0]}_folded", f"{conv.output[0]}_bias_folded")
        graph.initializer.extend([numpy_helper.from_array(new_weight, names[0]),
                                  numpy_helper.from_array(new_bias, names[1])])
        del conv.input[1:]
        conv.input.extend(names)
        conv.output[0] = chain[-1].output[0]
        dropped.update(id(n) for n in chain)
        folded += 1
    if folded:
        kept = [n for n in graph.node if id(n) not in dropped]
        del graph.node[:]
        graph.node.extend(kept)
    return model, folded


def _affine_chain(tensor: str, channels: int, rank: int, users: dict, constants: dict,
                  outputs: set[str]) -> tuple[list[onnx.NodeProto], np.ndarray, np.ndarray]:
    """The Add/Sub/Mul/Div nodes that follow `tensor`, each the only reader of the last, by per-channel constants;
    with the scale s and shift t they apply together (y = x·s + t)."""
    chain: list[onnx.NodeProto] = []
    scale, shift = np.ones(channels), np.zeros(channels)
    while tensor not in outputs and len(users.get(tensor, [])) == 1:
        node = users[tensor][0]
        if node.op_type not in AFFINE_OPS or len(node.input) != 2 or list(node.input).count(tensor) != 1:
            break
        other = node.input[1] if node.input[0] == tensor else node.input[0]
        value = _per_channel(constants.get(other), channels, rank)
        if value is None or (node.op_type in ("Sub", "Div") and node.input[0] != tensor) \
                or (node.op_type == "Div" and not np.all(value)):
            break
        if node.op_type == "Add":
            shift = shift + value
        elif node.op_type == "Sub":
            shift = shift - value
        elif node.op_type == "Mul":
            scale, shift = scale * value, shift * value
        else:
            scale, shift = scale / value, shift / value
        chain.append(node)
        tensor = node.output[0]
    return chain, scale, shift


def _per_channel(value: np.ndarray | None, channels: int, rank: int) -> np.ndarray | None:
    """A float constant as one value per output channel: a scalar, or a shape that broadcasts along axis 1 alone
    ([C, 1, …] or [1, C, 1, …] for a Conv output of `rank` dims) and changes no output shape."""
    if value is None or not np.issubdtype(value.dtype, np.floating) or value.ndim > rank:
        return None
    if value.size == 1:
        return np.full(channels, float(value.reshape(-1)[0]))
    shape = [1] * (rank - value.ndim) + list(value.shape)
    if shape != [1, channels, *([1] * (rank - 2))]:
        return None
    return value.reshape(-1).astype(np.float64)
