"""Writing new weights into a Linear in place (MatMul or Gemm), adding a bias Add where needed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_graphsurgeon as gs

from edgec.passes.graph_tools import fresh_name
from edgec.passes.mlp.linear import Linear


def set_linear(graph: gs.Graph, lin: Linear, weight: np.ndarray, bias: np.ndarray | None) -> None:
    """Replace lin's weight ([in, out] orientation) and bias; the old constants become dead."""
    dtype = lin.weight.dtype
    weight = np.ascontiguousarray(weight, dtype=dtype)
    base = lin.matmul.name or "linear"
    node = lin.matmul
    if node.op == "Gemm":
        transposed = bool(node.attrs.get("transB", 0))
        stored = np.ascontiguousarray(weight.T) if transposed else weight
        node.inputs[1] = gs.Constant(fresh_name(graph, f"{base}.weight"), stored)
        node.attrs["alpha"], node.attrs["beta"] = 1.0, 1.0
        if bias is not None:
            c = gs.Constant(fresh_name(graph, f"{base}.bias"), np.ascontiguousarray(bias, dtype=dtype))
            if len(node.inputs) > 2:
                node.inputs[2] = c
            else:
                node.inputs.append(c)
        elif len(node.inputs) > 2:
            node.inputs.pop()
    else:
        node.inputs[1] = gs.Constant(fresh_name(graph, f"{base}.weight"), weight)
        _set_matmul_bias(graph, lin, bias, base, dtype)
    lin.weight = weight
    lin.bias = None if bias is None else np.asarray(bias, dtype)


def _set_matmul_bias(graph: gs.Graph, lin: Linear, bias, base: str, dtype) -> None:
    if bias is None:
        if lin.bias_node is not None:  # drop the Add: its consumers read the MatMul output directly
            add, out = lin.bias_node, lin.bias_node.outputs[0]
            mm_out = lin.matmul.outputs[0]
            for user in list(out.outputs):
                for i, t in enumerate(user.inputs):
                    if t is out:
                        user.inputs[i] = mm_out
            add.outputs.clear()
            lin.bias_node = None
        return
    c = gs.Constant(fresh_name(graph, f"{base}.bias"), np.ascontiguousarray(bias, dtype=dtype))
    if lin.bias_node is not None:
        add = lin.bias_node
        slot = 1 if add.inputs[0] is lin.matmul.outputs[0] else 0
        add.inputs[slot] = c
        return
    # No bias yet: insert MatMul → Add(bias) and move the consumers over to the Add's output.
    mm_out = lin.matmul.outputs[0]
    new_mm_out = gs.Variable(fresh_name(graph, f"{base}.pre_bias"), dtype=mm_out.dtype)
    lin.matmul.outputs[0] = new_mm_out
    add = gs.Node("Add", name=fresh_name(graph, f"{base}.bias_add"), inputs=[new_mm_out, c], outputs=[mm_out])
    graph.nodes.append(add)
    lin.bias_node = add


@dataclass
class Factorized:
    """A linear layer rewritten as (x A) B + bias: the node holding A, the node holding B, and the layer."""

    first: gs.Node
    second: gs.Node
    lin: Linear

    def read(self) -> list[np.ndarray | None]:
        return [np.asarray(self.first.inputs[1].values), np.asarray(self.second.inputs[1].values), self.lin.bias]

    def write(self, graph: gs.Graph, a: np.ndarray, b: np.ndarray, bias: np.ndarray | None) -> None:
        dtype = self.lin.weight.dtype
        self.first.inputs[1] = gs.Constant(fresh_name(graph, f"{self.first.name}.A"), np.ascontiguousarray(a, dtype))
        self.second.inputs[1] = gs.Constant(fresh_name(graph, f"{self.first.name}.B"), np.ascontiguousarray(b, dtype))
        if bias is None:
            return
        c = gs.Constant(fresh_name(graph, f"{self.first.name}.bias"), np.ascontiguousarray(bias, dtype))
        if self.second.op == "Gemm":
            self.second.inputs[2] = c
        else:
            add = self.lin.bias_node
            assert add is not None, "a MatMul with a bias has its Add"
            add.inputs[1 if add.inputs[0] is self.second.outputs[0] else 0] = c
        self.lin.bias = np.asarray(bias, dtype)


def factorize_linear(graph: gs.Graph, lin: Linear, a: np.ndarray, b: np.ndarray,
                     bias: np.ndarray | None) -> Factorized:
    """Rewrite y = x W + c as y = (x A) B + bias, activation-first so ONNX Runtime cannot fold A·B back."""
    dtype = lin.weight.dtype
    node = lin.matmul
    base = node.name or "linear"
    out = node.outputs[0]
    mid = gs.Variable(fresh_name(graph, f"{base}.lowrank"), dtype=out.dtype)
    a_const = gs.Constant(fresh_name(graph, f"{base}.A"), np.ascontiguousarray(a, dtype=dtype))
    b_const = gs.Constant(fresh_name(graph, f"{base}.B"), np.ascontiguousarray(b, dtype=dtype))
    if node.op == "Gemm":
        node.attrs.update(transB=0, alpha=1.0, beta=1.0)
        while len(node.inputs) > 2:
            node.inputs.pop()
        node.inputs[1] = a_const
        node.outputs[0] = mid
        inputs = [mid, b_const] + ([gs.Constant(fresh_name(graph, f"{base}.bias"),
                                                np.ascontiguousarray(bias, dtype=dtype))] if bias is not None else [])
        second = gs.Node("Gemm", name=fresh_name(graph, f"{base}.lowrank_B"), inputs=inputs, outputs=[out])
        graph.nodes.append(second)
        lin.bias = bias
        return Factorized(node, second, lin)
    node.inputs[1] = a_const
    node.outputs[0] = mid
    second = gs.Node("MatMul", name=fresh_name(graph, f"{base}.lowrank_B"), inputs=[mid, b_const], outputs=[out])
    graph.nodes.append(second)
    lin.matmul = second       # the bias Add (if any) now follows the second MatMul
    _set_matmul_bias(graph, lin, bias, base, dtype)
    lin.bias = None if bias is None else np.asarray(bias, dtype)
    return Factorized(node, second, lin)
