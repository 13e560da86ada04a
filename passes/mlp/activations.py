"""The activation between fc1 and fc2 of an MLP: a region of element-wise nodes.

Exporters write GELU in many ways (a Gelu op, Erf patterns with 0.5 before or after the product,
tanh-GELU with Pow, FastGelu), so the matcher does not use templates: it collects the element-wise
nodes between the two linear layers and names the pattern from the ops it found.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx_graphsurgeon as gs

from edgec.passes.graph_tools import constant_value, consumers, is_graph_output

ELEMENTWISE = {
    "Relu", "LeakyRelu", "Elu", "Selu", "Celu", "Gelu", "Erf", "Tanh", "Sigmoid", "HardSigmoid",
    "HardSwish", "Softplus", "Mish", "Clip", "Mul", "Add", "Sub", "Div", "Pow", "Sqrt", "Neg",
    "Identity", "FastGelu", "BiasGelu", "QuickGelu",
}
NONLINEAR = {
    "Relu", "LeakyRelu", "Elu", "Selu", "Celu", "Gelu", "Erf", "Tanh", "Sigmoid", "HardSigmoid",
    "HardSwish", "Softplus", "Mish", "Clip", "FastGelu", "BiasGelu", "QuickGelu",
}


@dataclass
class Activation:
    pattern: str
    nodes: list[gs.Node]
    output: gs.Tensor
    # constants inside the region whose last dimension is the hidden width (sliced when pruning)
    channel_constants: list[gs.Tensor] = field(default_factory=list)
    gate: gs.Tensor | None = None     # gated MLPs: the "up" projection's output the activation multiplies by


class NoActivation(Exception):
    """Why the nodes after fc1 are not an element-wise activation feeding one linear layer."""


def match_activation(graph: gs.Graph, start: gs.Tensor, hidden: int, is_fc2,
                     is_gate=lambda tensor: False) -> tuple[Activation, gs.Node]:
    """Grow the element-wise region from `start` (fc1's output) until it reaches fc2.

    `is_fc2(node, tensor)` says whether a node consuming `tensor` is a linear layer taking it as x;
    `is_gate(tensor)` whether a tensor from outside the region may multiply into it (the "up" projection
    of a gated MLP: SwiGLU, GeGLU). Returns the activation (its `gate` set for a gated MLP) and the fc2
    node, or raises NoActivation with the reason.
    """
    region: list[gs.Node] = []
    produced = {id(start)}
    frontier, fc2_hits = [start], []
    while frontier:
        t = frontier.pop()
        if is_graph_output(graph, t):
            raise NoActivation(f"'{t.name}' is a graph output")
        for user in consumers(t):
            if any(user is n for n in region):
                continue
            if is_fc2(user, t):
                fc2_hits.append((user, t))
            elif user.op in ELEMENTWISE and (user.domain or "") in ("", "ai.onnx", "com.microsoft"):
                region.append(user)
                for out in user.outputs:
                    produced.add(id(out))
                    frontier.append(out)
            else:
                raise NoActivation(f"'{t.name}' also feeds {user.op} '{user.name}'")
            if len(region) > 64:
                raise NoActivation("element-wise region too large to be an activation")
    if not fc2_hits:
        raise NoActivation("no linear layer follows the activation")
    if len({id(n) for n, _ in fc2_hits}) > 1 or len(fc2_hits) > 1:
        raise NoActivation("the activation feeds more than one linear layer")
    fc2, out = fc2_hits[0]
    if out is start:
        raise NoActivation("no non-linearity between the two linear layers")
    channel, gate = _check_inputs(region, produced, hidden, is_gate)
    ops = [n.op for n in region]
    if not NONLINEAR.intersection(ops):
        raise NoActivation(f"element-wise ops {sorted(set(ops))} hold no non-linearity")
    pattern = classify(region)
    return Activation(f"gated-{pattern}" if gate else pattern, region, out, channel, gate), fc2


def _check_inputs(region: list[gs.Node], produced: set[int], hidden: int,
                  is_gate) -> tuple[list[gs.Tensor], gs.Tensor | None]:
    """Every input of a region node is produced inside the region or a scalar / per-channel constant,
    except at most one gate tensor multiplied in (gated MLPs)."""
    channel, gate = [], None
    for node in region:
        for inp in node.inputs:
            if id(inp) in produced or not inp.name:
                continue
            c = constant_value(inp)
            if c is None and gate is None and node.op == "Mul" and is_gate(inp):
                gate = inp
                continue
            if c is None:
                raise NoActivation(f"{node.op} '{node.name}' reads '{inp.name}' from outside the block")
            if c.value.size == 1:
                continue
            if c.value.shape[-1] == hidden and c.value.size == hidden:
                channel.append(inp)
                continue
            raise NoActivation(f"{node.op} '{node.name}' has a constant of shape {c.value.shape}")
    return channel, gate


def classify(region: list[gs.Node]) -> str:
    ops = {n.op for n in region}
    for fused in ("FastGelu", "BiasGelu", "QuickGelu"):
        if fused in ops:
            return fused.lower().replace("gelu", "-gelu")
    if "Gelu" in ops:
        gelu = next(n for n in region if n.op == "Gelu")
        return "gelu-tanh" if gelu.attrs.get("approximate", "none") == "tanh" else "gelu"
    if "Erf" in ops:
        return "erf-gelu"
    if "Tanh" in ops and ops & {"Pow", "Mul"} and len(region) > 3:
        return "tanh-gelu"
    if "HardSwish" in ops or {"HardSigmoid", "Mul"} <= ops:
        return "hardswish"
    if {"Sigmoid", "Mul"} <= ops:
        return "quick-gelu" if _has_scalar(region, 1.702) else "silu"
    if "Clip" in ops:
        return "relu6"
    if len(ops) == 1:
        return next(iter(ops)).lower()
    return "+".join(sorted(o.lower() for o in ops))


def _has_scalar(region: list[gs.Node], value: float) -> bool:
    for node in region:
        for inp in node.inputs:
            c = constant_value(inp)
            if c is not None and c.value.size == 1 and np.isclose(float(c.value.ravel()[0]), value, atol=1e-3):
                return True
    return False
