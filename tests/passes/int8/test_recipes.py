from dataclasses import replace

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from edgec.passes.int8.recipes import Int8Builder, Recipe
from edgec.passes.int8.static import STATIC_OPS, STATIC_WIDE


def _residual_cnn():
    """conv → conv, their sum → max pool → conv: the sum's range is calibrated for the wide scope only."""
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.normal(0, 0.3, (4, c, 3, 3)).astype(np.float32), f"w{i}")
               for i, c in enumerate((3, 4, 4))]
    conv = lambda x, w, y: helper.make_node("Conv", [x, w], [y], pads=[1, 1, 1, 1])    # noqa: E731
    nodes = [conv("x", "w0", "a"), conv("a", "w1", "b"), helper.make_node("Add", ["a", "b"], ["c"]),
             helper.make_node("MaxPool", ["c"], ["d"], kernel_shape=[1, 1]), conv("d", "w2", "y")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_a_narrower_static_scope_built_first_leaves_the_wider_one_its_ranges():
    # ONNX Runtime caches the ranges of the tensors the first quantization calibrates: the builder calibrates
    # for every operator type it was made for, whatever scope it builds first
    model = _residual_cnn()
    feeds = [{"x": np.random.default_rng(i).normal(size=(1, 3, 8, 8)).astype(np.float32)} for i in range(8)]
    wide = Recipe("static", STATIC_WIDE, scope="wide")
    with Int8Builder(model, wide, feeds) as builder:
        narrow = builder.with_recipe(replace(wide, ops=STATIC_OPS, scope="layers")).build()
        widened = builder.with_recipe(wide).build()
    quantized = lambda m: {n.input[0] for n in m.graph.node if n.op_type == "QuantizeLinear"}    # noqa: E731
    assert "c" in quantized(widened) and "c" not in quantized(narrow)         # the sum runs in int8 in the wide one


def test_mixed_precision_may_keep_a_wide_recipes_adds_and_pooling_float_not_only_its_layers():
    model = _residual_cnn()
    feeds = [{"x": np.random.default_rng(i).normal(size=(1, 3, 8, 8)).astype(np.float32)} for i in range(8)]
    wide = Recipe("static", STATIC_WIDE, scope="wide")
    with Int8Builder(model, wide, feeds) as builder:
        ops = {n.name: n.op_type for n in builder.model.graph.node}
        assert [ops[u] for u in builder.units] == ["Conv", "Conv", "Add", "MaxPool", "Conv"]
        assert [ops[u] for u in builder.layers] == ["Conv", "Conv", "Conv"]
        add = next(u for u in builder.units if ops[u] == "Add")
        kept = builder.build([add])
        assert builder.with_recipe(replace(wide, ops=STATIC_OPS, scope="layers")).units == builder.layers
    quantized = {n.input[0] for n in kept.graph.node if n.op_type == "QuantizeLinear"}
    assert "c" not in quantized          # the sum of the two convolutions stays float



def test_a_gemm_with_a_2d_bias_is_quantized_static_all_the_same():
    # ONNX Runtime's int32-bias scale check indexes the bias as 1-D and raised on a [1, N] one (magika)
    rng = np.random.default_rng(0)
    init = [numpy_helper.from_array(rng.normal(size=(8, 4)).astype(np.float32), "w"),
            numpy_helper.from_array(rng.normal(size=(1, 4)).astype(np.float32), "c")]
    graph = helper.make_graph([helper.make_node("Gemm", ["x", "w", "c"], ["y"], name="gemm")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])], init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    feeds = [{"x": rng.normal(size=(2, 8)).astype(np.float32)} for _ in range(4)]
    with Int8Builder(model, Recipe("static", STATIC_OPS, per_channel=True), feeds) as builder:
        quantized = builder.build()
    assert "QuantizeLinear" in {n.op_type for n in quantized.graph.node}
