"""Linear layers as exporters write them: MatMul(+Add) or Gemm, weight in [in, out] orientation."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx_graphsurgeon as gs

from edgec.passes.graph_tools import constant_value, consumers, is_graph_output


@dataclass
class Linear:
    """y = x @ weight + bias, with weight of shape [in, out] (already transposed for Gemm transB)."""

    matmul: gs.Node
    weight: np.ndarray
    weight_source: gs.Tensor
    bias: np.ndarray | None = None
    bias_node: gs.Node | None = None   # the Add that carries the bias (None for Gemm's C or no bias)
    nodes: list[gs.Node] = field(default_factory=list)

    @property
    def x(self) -> gs.Tensor:
        return self.matmul.inputs[0]

    @property
    def y(self) -> gs.Tensor:
        return (self.bias_node or self.matmul).outputs[0]

    @property
    def in_features(self) -> int:
        return int(self.weight.shape[0])

    @property
    def out_features(self) -> int:
        return int(self.weight.shape[1])

    @property
    def params(self) -> int:
        return int(self.weight.size + (0 if self.bias is None else self.bias.size))


class NotLinear(Exception):
    """Why a MatMul/Gemm node is not a linear layer edgec can rewrite."""


def match_linear(graph: gs.Graph, node: gs.Node) -> Linear:
    """Read a MatMul/Gemm node (and a following bias Add) as a Linear, or raise NotLinear."""
    if (node.domain or "") not in ("", "ai.onnx"):
        raise NotLinear(f"{node.op} in domain {node.domain}")
    if node.op == "MatMul":
        lin = _match_matmul(node)
    elif node.op == "Gemm":
        lin = _match_gemm(node)
    else:
        raise NotLinear(f"{node.op} is not MatMul/Gemm")
    if not np.issubdtype(lin.weight.dtype, np.floating):
        raise NotLinear(f"weight has dtype {lin.weight.dtype} (quantized or integer layers are left alone)")
    if lin.bias is None:
        _attach_bias_add(graph, lin)
    lin.nodes = [n for n in (lin.matmul, lin.bias_node) if n is not None]
    return lin


def _match_matmul(node: gs.Node) -> Linear:
    w = constant_value(node.inputs[1])
    if w is None:
        raise NotLinear("second MatMul input is not a constant weight")
    if w.value.ndim != 2:
        raise NotLinear(f"weight has rank {w.value.ndim}, not 2")
    if constant_value(node.inputs[0]) is not None:
        raise NotLinear("both MatMul inputs are constant")
    return Linear(node, w.value, w.source)


def _match_gemm(node: gs.Node) -> Linear:
    if node.attrs.get("transA", 0):
        raise NotLinear("Gemm with transA=1")
    w = constant_value(node.inputs[1])
    if w is None or w.value.ndim != 2:
        raise NotLinear("Gemm B is not a constant 2-D weight")
    alpha = float(node.attrs.get("alpha", 1.0))
    beta = float(node.attrs.get("beta", 1.0))
    weight = w.value.T if node.attrs.get("transB", 0) else w.value
    bias = None
    if len(node.inputs) > 2 and node.inputs[2].name:
        c = constant_value(node.inputs[2])
        if c is None:
            raise NotLinear("Gemm C is not constant")
        bias = np.broadcast_to(c.value * beta, (weight.shape[1],)).astype(weight.dtype)
    if alpha != 1.0:
        weight = (weight * alpha).astype(w.value.dtype)
    return Linear(node, weight, w.source, bias=bias)


def _attach_bias_add(graph: gs.Graph, lin: Linear) -> None:
    """Absorb `Add(y, b)` with a constant b of shape [out] (or broadcastable [1, …, out])."""
    y = lin.matmul.outputs[0]
    users = consumers(y)
    if len(users) != 1 or users[0].op != "Add" or is_graph_output(graph, y):
        return
    add = users[0]
    other = add.inputs[1] if add.inputs[0] is y else add.inputs[0]
    c = constant_value(other)
    if c is None:
        return
    if c.value.size != lin.out_features or c.value.shape[-1] != lin.out_features:
        return
    lin.bias = c.value.reshape(-1)
    lin.bias_node = add
