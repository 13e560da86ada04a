"""Models built in code with the traits real third-party exports have and edgec used to trip on."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh


def _inits(rng, d: int = 16, hidden: int = 64) -> list[onnx.TensorProto]:
    return [nh.from_array((rng.standard_normal(s) / np.sqrt(s[0])).astype(np.float32), n)
            for n, s in (("W1", (d, hidden)), ("W2", (hidden, d)))] + [
        nh.from_array(np.zeros(hidden, np.float32), "b1"), nh.from_array(np.zeros(d, np.float32), "b2")]


def _mlp_nodes(x: str, out: str, names: bool = True) -> list[onnx.NodeProto]:
    spec = [("MatMul", [x, "W1"], ["h0"]), ("Add", ["h0", "b1"], ["h1"]), ("Relu", ["h1"], ["h2"]),
            ("MatMul", ["h2", "W2"], ["h3"]), ("Add", ["h3", "b2"], [out])]
    return [h.make_node(op, i, o, name=f"n{k}" if names else "") for k, (op, i, o) in enumerate(spec)]


def ir3_model(seed: int = 0) -> onnx.ModelProto:
    """Opset 9, IR 3: every initializer is listed among the graph inputs, every shape declared."""
    rng = np.random.default_rng(seed)
    inits = _inits(rng) + [nh.from_array(np.array([-1, 16], np.int64), "X__SHAPE")]
    nodes = [h.make_node("Reshape", ["x", "X__SHAPE"], ["x2"])] + _mlp_nodes("x2", "y")
    inputs = [h.make_tensor_value_info("x", T.FLOAT, [4, 16])] + [
        h.make_tensor_value_info(i.name, i.data_type, list(i.dims)) for i in inits]
    graph = h.make_graph(nodes, "ir3", inputs, [h.make_tensor_value_info("y", T.FLOAT, [4, 16])], inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 9)])
    model.ir_version = 3
    return model


def masked_model(seed: int = 0) -> onnx.ModelProto:
    """An MLP whose output passes a -inf mask fill, as attention masks in real exports do."""
    rng = np.random.default_rng(seed)
    fill = nh.from_array(np.array([-np.inf, 0, 0, 0] * 4, np.float32), "mask_fill")
    nodes = _mlp_nodes("x", "m") + [h.make_node("Add", ["m", "mask_fill"], ["y"])]
    graph = h.make_graph(nodes, "masked", [h.make_tensor_value_info("x", T.FLOAT, ["batch", 16])],
                         [h.make_tensor_value_info("y", T.FLOAT, ["batch", 16])], _inits(rng) + [fill])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def unnamed_model(seed: int = 0, blocks: int = 2) -> onnx.ModelProto:
    """MLP blocks whose nodes have no names (optional in ONNX; many builders leave them empty)."""
    rng = np.random.default_rng(seed)
    nodes, inits, x = [], [], "x"
    for b in range(blocks):
        block_inits = _inits(rng)
        rename = {i.name: f"{i.name}_{b}" for i in block_inits}
        for i in block_inits:
            i.name = rename[i.name]
        out = f"y{b}"
        for n in _mlp_nodes(x, out, names=False):
            n.input[:] = [rename.get(i, i if i == x else f"{i}_{b}") for i in n.input]
            n.output[:] = [o if o == out else f"{o}_{b}" for o in n.output]
            nodes.append(n)
        inits += block_inits
        x = out
    graph = h.make_graph(nodes, "unnamed", [h.make_tensor_value_info("x", T.FLOAT, ["batch", 16])],
                         [h.make_tensor_value_info(x, T.FLOAT, ["batch", 16])], inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def sample_rate_model(seed: int = 0) -> onnx.ModelProto:
    """Like a voice detector: a waveform chunk that must hold 512 samples when the scalar `sr` is 16000."""
    rng = np.random.default_rng(seed)
    w = nh.from_array((rng.standard_normal((512, 8)) / 20).astype(np.float32), "W")
    k = nh.from_array(np.array(16000, np.int64), "k16000")
    n = nh.from_array(np.array([512], np.int64), "n512")
    nodes = [h.make_node("Div", ["sr", "k16000"], ["ratio"]), h.make_node("Unsqueeze", ["ratio"], ["r1"], axes=[0]),
             h.make_node("Mul", ["r1", "n512"], ["shape"]), h.make_node("Reshape", ["input", "shape"], ["flat"]),
             h.make_node("MatMul", ["flat", "W"], ["z"]), h.make_node("Sigmoid", ["z"], ["prob"])]
    graph = h.make_graph(nodes, "vad", [h.make_tensor_value_info("input", T.FLOAT, [1, "samples"]),
                                        h.make_tensor_value_info("sr", T.INT64, [])],
                         [h.make_tensor_value_info("prob", T.FLOAT, [8])], [w, k, n])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 12)])
    model.ir_version = 7
    return model


def ml_only_model() -> onnx.ModelProto:
    """Only the ai.onnx.ml domain (a scikit-learn scaler converted by skl2onnx)."""
    node = h.make_node("Scaler", ["x"], ["y"], domain="ai.onnx.ml", offset=[0.5] * 4, scale=[2.0] * 4)
    graph = h.make_graph([node], "ml", [h.make_tensor_value_info("x", T.FLOAT, ["batch", 4])],
                         [h.make_tensor_value_info("y", T.FLOAT, ["batch", 4])])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("ai.onnx.ml", 1)])
    model.ir_version = 8
    return model


def graph_network_model() -> onnx.ModelProto:
    """Edge indices that must name existing nodes (random token ids would index past them)."""
    nodes = [h.make_node("Gather", ["feat", "edge_index"], ["picked"], axis=0),
             h.make_node("ReduceSum", ["picked"], ["y"], keepdims=0, axes=[0])]
    graph = h.make_graph(nodes, "gnn", [h.make_tensor_value_info("feat", T.FLOAT, ["num_nodes", 4]),
                                        h.make_tensor_value_info("edge_index", T.INT64, ["num_edges"])],
                         [h.make_tensor_value_info("y", T.FLOAT, [4])])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 12)])
    model.ir_version = 7
    return model
