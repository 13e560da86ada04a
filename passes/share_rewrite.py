"""Writing a shared-basis group into the graph, in one of two execution modes.

speed:   fc1 = MatMul(MatMul(x, U), V1) + c1,   fc2 = MatMul(MatMul(h, V2ᵀ), Uᵀ) + c2 — activation-first, so
         ONNX Runtime runs the small shapes. Uᵀ is a Transpose node on the one U initializer (ORT folds it
         at load: a RAM copy, not a second copy on disk).
storage: the weights are rebuilt weight-side, W1 = MatMul(U, V1) and W2 = MatMul(V2ᵀ, Uᵀ), with V stored
         as sparse initializers; ORT constant-folds these at session creation, so the model runs at the
         original speed from a smaller file.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
import onnx_graphsurgeon as gs

from edgec.passes.graph_tools import fresh_name
from edgec.passes.mlp.edit import factorize_linear, set_linear
from edgec.passes.mlp.linear import Linear
from edgec.passes.plans.share import BlockFactors

Mode = Literal["speed", "storage"]
MODES = get_args(Mode)


class SharedBasis:
    """The group's one U initializer and the one Transpose that gives Uᵀ to every fc2."""

    def __init__(self, graph: gs.Graph, label: str, basis: np.ndarray, dtype):
        self.u = gs.Constant(fresh_name(graph, f"{label}.shared_U"), np.ascontiguousarray(basis, dtype))
        self.ut = gs.Variable(fresh_name(graph, f"{label}.shared_Ut"), dtype=dtype)
        node = gs.Node("Transpose", name=fresh_name(graph, f"{label}.shared_Ut_node"), attrs={"perm": [1, 0]},
                       inputs=[self.u], outputs=[self.ut])
        graph.nodes.append(node)


def write_block(graph: gs.Graph, fc1: Linear, fc2: Linear, shared: SharedBasis, f: BlockFactors, mode: str) -> None:
    if mode == "speed":
        _speed(graph, fc1, fc2, shared, f)
    elif mode == "storage":
        _storage(graph, fc1, fc2, shared, f)
    else:
        raise ValueError(f"share: mode must be one of {MODES}, not '{mode}'")


def _speed(graph: gs.Graph, fc1: Linear, fc2: Linear, shared: SharedBasis, f: BlockFactors) -> None:
    first = factorize_linear(graph, fc1, shared.u.values, f.v1, f.c1)
    first.first.inputs[1] = shared.u                  # the shared initializer, not a private copy
    placeholder = np.zeros(shared.u.values.T.shape, dtype=shared.u.values.dtype)
    second = factorize_linear(graph, fc2, f.v2t, placeholder, f.c2)
    second.second.inputs[1] = shared.ut


def _storage(graph: gs.Graph, fc1: Linear, fc2: Linear, shared: SharedBasis, f: BlockFactors) -> None:
    u = shared.u.values
    _weight_side(graph, fc1, [shared.u, _const(graph, fc1, "V1", f.v1, u.dtype)], u @ f.v1, f.c1)
    _weight_side(graph, fc2, [_const(graph, fc2, "V2t", f.v2t, u.dtype), shared.ut], f.v2t @ u.T, f.c2)


def _weight_side(graph: gs.Graph, lin: Linear, operands: list[gs.Tensor], product: np.ndarray, bias) -> None:
    """Make lin's weight the output of MatMul(operands) (its [in, out] orientation)."""
    set_linear(graph, lin, product, bias)            # bias handling and the layer's bookkeeping
    base = lin.matmul.name or "linear"
    weight = gs.Variable(fresh_name(graph, f"{base}.shared_W"), dtype=lin.weight.dtype, shape=list(product.shape))
    graph.nodes.append(gs.Node("MatMul", name=fresh_name(graph, f"{base}.shared_W_node"), inputs=operands,
                               outputs=[weight]))
    if lin.matmul.op == "Gemm":
        lin.matmul.attrs["transB"] = 0
    lin.matmul.inputs[1] = weight


def _const(graph: gs.Graph, lin: Linear, suffix: str, values: np.ndarray, dtype) -> gs.Constant:
    base = lin.matmul.name or "linear"
    return gs.Constant(fresh_name(graph, f"{base}.{suffix}"), np.ascontiguousarray(values, dtype))
