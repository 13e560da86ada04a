"""The tuning graph: the model with `Mul(h, γ)` (and `Add(·, β)`) after every site, γ and β as graph inputs.

Zeroth-order tuning runs this one ONNX Runtime session with different γ/β feeds (no session rebuilt per
probe); the tuned values are then folded into the real graph's constants (`affines.fold`), which computes the
same up to float rounding. Pure protobuf editing: the device runner only needs numpy and onnxruntime.
"""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper

from edgec.runtime.zo.tuner import SiteSlot


def tuning_model(model: onnx.ModelProto, slots: list[SiteSlot]) -> onnx.ModelProto:
    """`slots`: one per site (`shared.slots_for`)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    position = {name: i for i, node in enumerate(graph.node) for name in node.output}
    inserts: dict[int, list[onnx.NodeProto]] = {}
    for slot in slots:
        output, raw, gamma, beta = slot.output, slot.raw, slot.gamma, slot.beta
        if output not in position:
            raise ValueError(f"tuning graph: no node computes '{output}'")
        index = position[output]
        node = graph.node[index]
        node.output[list(node.output).index(output)] = raw
        scaled = f"{output}/grasp_scaled" if beta else output
        added = [helper.make_node("Mul", [raw, gamma], [scaled], name=f"{gamma}/Mul")]
        shape = list(slot.feed_shape)     # (C,) on the last axis, (C, 1, 1) after a 2-D Conv
        graph.input.append(helper.make_tensor_value_info(gamma, TensorProto.FLOAT, shape))
        if beta:
            added.append(helper.make_node("Add", [scaled, beta], [output], name=f"{beta}/Add"))
            graph.input.append(helper.make_tensor_value_info(beta, TensorProto.FLOAT, shape))
        inserts.setdefault(index, []).extend(added)
    nodes = []
    for i, node in enumerate(graph.node):
        nodes.append(node)
        nodes.extend(inserts.get(i, []))
    del graph.node[:]
    graph.node.extend(nodes)
    # the unmodulated tensors are outputs too: the tuner reads their scale once (ONNX Runtime computes them anyway)
    graph.output.extend(helper.make_tensor_value_info(slot.raw, TensorProto.FLOAT, None) for slot in slots)
    return out
