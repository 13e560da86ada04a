"""Reading a MatMul(+Add) / Gemm as y = x W + b, and writing it back: weights, biases and factors."""

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from edgec.passes.mlp.activations import classify
from edgec.passes.mlp.edit import factorize_linear, set_linear
from edgec.passes.mlp.linear import NotLinear, match_linear

import models

RNG = np.random.default_rng(0)
W = RNG.standard_normal((6, 4)).astype(np.float32)
B = RNG.standard_normal(4).astype(np.float32)
X = RNG.standard_normal((3, 6)).astype(np.float32)


def _model(style: str) -> onnx.ModelProto:
    if style == "matmul+add":
        nodes = [h.make_node("MatMul", ["x", "W"], ["m"]), h.make_node("Add", ["m", "B"], ["y"])]
        inits = [nh.from_array(W, "W"), nh.from_array(B, "B")]
    elif style == "gemm-transB":
        nodes = [h.make_node("Gemm", ["x", "Wt", "B2"], ["y"], transB=1, alpha=2.0, beta=0.5)]
        inits = [nh.from_array(np.ascontiguousarray(W.T / 2), "Wt"), nh.from_array(B * 2, "B2")]
    else:
        nodes = [h.make_node("Gemm", ["x", "W"], ["y"])]
        inits = [nh.from_array(W, "W")]
    graph = h.make_graph(nodes, "lin", [h.make_tensor_value_info("x", T.FLOAT, [3, 6])],
                         [h.make_tensor_value_info("y", T.FLOAT, [3, 4])], inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _run(graph: gs.Graph) -> np.ndarray:
    model = gs.export_onnx(graph, do_type_check=False)
    model.ir_version = 8
    return models.run(model, {"x": X})[0]


@pytest.mark.parametrize("style,bias", [("matmul+add", B), ("gemm-transB", B), ("gemm", None)])
def test_a_linear_reads_as_x_w_plus_b_and_writes_back_exactly(style, bias):
    graph = gs.import_onnx(_model(style))
    lin = match_linear(graph, next(n for n in graph.nodes if n.op in ("MatMul", "Gemm")))
    np.testing.assert_allclose(lin.weight, W, rtol=1e-6)
    assert (lin.bias is None) == (bias is None) and (bias is None or np.allclose(lin.bias, bias))
    set_linear(graph, lin, W * 3, bias)
    expected = X @ (W * 3) + (0 if bias is None else bias)
    np.testing.assert_allclose(_run(graph.cleanup()), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("style", ["matmul+add", "gemm-transB"])
def test_a_factorized_linear_computes_x_a_b_plus_bias(style):
    graph = gs.import_onnx(_model(style))
    lin = match_linear(graph, next(n for n in graph.nodes if n.op in ("MatMul", "Gemm")))
    u, s, vt = np.linalg.svd(W, full_matrices=False)
    factorize_linear(graph, lin, u * s, vt, B)
    assert sum(n.op in ("MatMul", "Gemm") for n in graph.nodes) == 2
    np.testing.assert_allclose(_run(graph.cleanup().toposort()), X @ W + B, rtol=1e-4, atol=1e-4)


def test_an_integer_weight_is_not_a_linear():
    graph = gs.import_onnx(_model("matmul+add"))
    node = next(n for n in graph.nodes if n.op == "MatMul")
    node.inputs[1] = gs.Constant("Wi", W.astype(np.int8))
    with pytest.raises(NotLinear):
        match_linear(graph, node)


@pytest.mark.parametrize("ops,attrs,expected", [
    (["Gelu"], {}, "gelu"), (["Gelu"], {"approximate": "tanh"}, "gelu-tanh"), (["Div", "Erf", "Add", "Mul"], {}, "erf-gelu"),
    (["Mul", "Pow", "Mul", "Add", "Mul", "Tanh"], {}, "tanh-gelu"), (["Sigmoid", "Mul"], {}, "silu"),
    (["HardSigmoid", "Mul"], {}, "hardswish"), (["Clip"], {}, "relu6"), (["Relu"], {}, "relu"),
    (["FastGelu"], {}, "fast-gelu"), (["Abs", "Neg"], {}, "abs+neg"),
])
def test_activation_regions_are_named_by_their_ops(ops, attrs, expected):
    region = [gs.Node(op, attrs=attrs if op == "Gelu" else {}) for op in ops]
    assert classify(region) == expected
