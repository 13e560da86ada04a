"""The tuning graph: the model with `Mul(h, γ)` (and `Add(·, β)`) after every site, γ and β as graph inputs.

Zeroth-order tuning runs this one ONNX Runtime session with different γ/β feeds (no session rebuilt per
probe); the tuned values are then folded into the real graph's constants (`affines.fold`), which computes the
same up to float rounding. Pure protobuf editing: the device runner only needs numpy and onnxruntime.
"""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper

from edgec.runtime.zo import SiteSlot


def tuning_model(model: onnx.ModelProto, slots: list[SiteSlot]) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    position = {name: i for i, node in enumerate(graph.node) for name in node.output}
    inserts: dict[int, list[onnx.NodeProto]] = {}
    for slot in slots:
        if slot.output not in position:
            raise ValueError(f"tuning graph: no node computes '{slot.output}'")
        index = position[slot.output]
        node = graph.node[index]
        raw = slot.raw
        node.output[list(node.output).index(slot.output)] = raw
        scaled = f"{slot.output}/grasp_scaled" if slot.beta else slot.output
        added = [helper.make_node("Mul", [raw, slot.gamma], [scaled], name=f"{slot.gamma}/Mul")]
        graph.input.append(helper.make_tensor_value_info(slot.gamma, TensorProto.FLOAT, [slot.channels]))
        if slot.beta:
            added.append(helper.make_node("Add", [scaled, slot.beta], [slot.output], name=f"{slot.beta}/Add"))
            graph.input.append(helper.make_tensor_value_info(slot.beta, TensorProto.FLOAT, [slot.channels]))
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
