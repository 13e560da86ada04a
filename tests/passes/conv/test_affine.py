import numpy as np
import onnx
import onnx_graphsurgeon as gs
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgec.passes.base import PassContext
from edgec.passes.cleanup import CleanupPass
from edgec.passes.conv.affine import affine_folded
from edgec.passes.int8.prepare import prepared


def _conv_then(ops: list[tuple[str, object]], bias: bool = True, extra_reader: bool = False) -> onnx.ModelProto:
    """conv → the (op, constant) chain → relu; a constant 'channel' is per output channel [1, 4, 1, 1]."""
    rng = np.random.default_rng(0)
    init = [numpy_helper.from_array(rng.normal(0, 1, (4, 3, 3, 3)).astype(np.float32), "w")]
    init += [numpy_helper.from_array(rng.normal(0, 0.1, (4,)).astype(np.float32), "b")] if bias else []
    nodes = [helper.make_node("Conv", ["x", "w", "b"] if bias else ["x", "w"], ["t0"], name="conv", pads=[1] * 4)]
    for i, (op, value) in enumerate(ops):
        constant = rng.uniform(0.5, 2.0, (1, 4, 1, 1)) if value == "channel" else np.array(value)
        init.append(numpy_helper.from_array(constant.astype(np.float32), f"c{i}"))
        nodes.append(helper.make_node(op, [f"t{i}", f"c{i}"], [f"t{i + 1}"], name=f"{op}{i}"))
    nodes.append(helper.make_node("Relu", [f"t{len(ops)}"], ["y"]))
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])]
    if extra_reader:
        outputs.append(helper.make_tensor_value_info("t1", TensorProto.FLOAT, [1, 4, 8, 8]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              outputs, init)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


X = np.random.default_rng(1).normal(size=(1, 3, 8, 8)).astype(np.float32)


def _y(model: onnx.ModelProto) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(["y"], {"x": X})[0]


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    return onnx.ModelProto.FromString(model.SerializeToString())


@pytest.mark.parametrize("bias", [True, False])
def test_a_written_out_batch_norm_folds_into_the_conv_and_computes_the_same(bias):
    model = _conv_then([("Sub", "channel"), ("Mul", "channel"), ("Add", "channel"), ("Div", 2.0)], bias=bias)
    folded, count = affine_folded(_copy(model))
    assert count == 1 and [n.op_type for n in folded.graph.node] == ["Conv", "Relu"]
    onnx.checker.check_model(folded)
    np.testing.assert_allclose(_y(folded), _y(model), rtol=1e-5, atol=1e-5)


def test_a_constant_on_the_left_of_sub_or_div_or_not_per_channel_ends_the_chain():
    model = _conv_then([("Mul", "channel"), ("Sub", "channel")])
    model.graph.node[2].input[:] = ["c1", "t1"]                      # c − x (the constant first) ends the chain
    folded, count = affine_folded(_copy(model))
    assert count == 1 and [n.op_type for n in folded.graph.node] == ["Conv", "Sub", "Relu"]
    np.testing.assert_allclose(_y(folded), _y(model), rtol=1e-5, atol=1e-5)
    wide = _conv_then([("Add", "channel")])
    wide.graph.initializer[-1].CopyFrom(numpy_helper.from_array(np.ones((1, 4, 8, 8), np.float32), "c0"))
    assert affine_folded(wide)[1] == 0                               # per position, not per channel


def test_a_chain_whose_middle_is_read_elsewhere_folds_up_to_it():
    model = _conv_then([("Mul", "channel"), ("Add", "channel")], extra_reader=True)
    folded, count = affine_folded(_copy(model))
    assert count == 1 and [n.op_type for n in folded.graph.node] == ["Conv", "Add", "Relu"]
    np.testing.assert_allclose(_y(folded), _y(model), rtol=1e-5, atol=1e-5)


def test_cleanup_folds_only_what_onnx_runtime_leaves():
    runtime_folds = gs.import_onnx(_conv_then([("Mul", "channel"), ("Add", "channel")]))
    assert CleanupPass().run(runtime_folds, PassContext()).stats["affine_folded"] == 0
    graph = gs.import_onnx(_conv_then([("Sub", "channel"), ("Mul", "channel")]))
    result = CleanupPass().run(graph, PassContext())
    assert result.changed and result.stats["affine_folded"] == 1 and "batch normalization" in result.notes[-1]


def test_static_int8_preparation_folds_the_chains_its_pre_processing_leaves():
    model, notes, _ = prepared(_conv_then([("Sub", "channel"), ("Mul", "channel"), ("Add", "channel")]), True)
    assert "Sub" not in {n.op_type for n in model.graph.node}
    assert any("Convs took the per-channel" in n for n in notes)


def test_scalars_stored_as_one_element_vectors_fold_where_onnx_runtime_would_not():
    """PP-LCNetV3's learnable affine: Mul and Add by [1]-shaped scalars, which ONNX Runtime's Conv fusions reject."""
    model = _conv_then([("Mul", [1.5]), ("Add", [0.25])])
    result = CleanupPass().run(gs.import_onnx(_copy(model)), PassContext())
    assert result.stats["affine_folded"] == 1
    folded, count = affine_folded(_copy(model), beyond_runtime=True)
    assert count == 1 and [n.op_type for n in folded.graph.node] == ["Conv", "Relu"]
    np.testing.assert_allclose(_y(folded), _y(model), rtol=1e-5, atol=1e-5)


def _then_conv(chain: list[tuple[str, object]], pads: int = 0, group: int = 1, extra_reader: bool = False
               ) -> onnx.ModelProto:
    """relu(x) → the (op, constant) chain → conv (a 3×3 kernel, `pads`, `group`); 'channel' is per input channel."""
    rng = np.random.default_rng(2)
    init = [numpy_helper.from_array(rng.normal(0, 1, (6, 3 // group, 3, 3)).astype(np.float32), "w"),
            numpy_helper.from_array(rng.normal(0, 0.1, (6,)).astype(np.float32), "b")]
    nodes = [helper.make_node("Relu", ["x"], ["t0"])]
    for i, (op, value) in enumerate(chain):
        constant = rng.uniform(0.5, 2.0, (1, 3, 1, 1)) if value == "channel" else np.array(value)
        init.append(numpy_helper.from_array(constant.astype(np.float32), f"c{i}"))
        nodes.append(helper.make_node(op, [f"t{i}", f"c{i}"], [f"t{i + 1}"], name=f"{op}{i}"))
    nodes.append(helper.make_node("Conv", [f"t{len(chain)}", "w", "b"], ["y"], name="conv", pads=[pads] * 4,
                                  group=group))
    size = 8 - 2 + 2 * pads
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6, size, size])]
    if extra_reader:
        outputs.append(helper.make_tensor_value_info("t0", TensorProto.FLOAT, [1, 3, 8, 8]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              outputs, init)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@pytest.mark.parametrize(("chain", "group"), [([("Mul", [0.7]), ("Add", [0.3])], 1),
                                              ([("Sub", "channel"), ("Div", "channel"), ("Add", 0.5)], 1),
                                              ([("Mul", 1.3), ("Add", -0.2)], 3)])
def test_an_affine_chain_before_a_conv_without_padding_folds_into_it(chain, group):
    model = _then_conv(chain, group=group, extra_reader=True)     # the chain's input is read elsewhere too
    folded, count = affine_folded(_copy(model), beyond_runtime=True)
    assert count == 1 and [n.op_type for n in folded.graph.node] == ["Relu", "Conv"]
    onnx.checker.check_model(folded)
    np.testing.assert_allclose(_y(folded), _y(model), rtol=1e-4, atol=1e-4)


def test_an_affine_chain_before_a_padded_or_grouped_per_channel_conv_stays():
    """Padding reads zeros where the chain's shift would have been; a grouped Conv takes only single values."""
    assert affine_folded(_then_conv([("Add", [0.3])], pads=1), beyond_runtime=True)[1] == 0
    assert affine_folded(_then_conv([("Mul", "channel")], group=3), beyond_runtime=True)[1] == 0


def test_a_one_dimensional_conv_folds_even_its_mul_and_add():
    """ONNX Runtime's Conv+Mul/Add fusions skip 1-D convolutions."""
    rng = np.random.default_rng(3)
    init = [numpy_helper.from_array(rng.normal(0, 1, (4, 2, 3)).astype(np.float32), "w"),
            numpy_helper.from_array(rng.uniform(0.5, 2, (1, 4, 1)).astype(np.float32), "s"),
            numpy_helper.from_array(rng.normal(0, 1, (1, 4, 1)).astype(np.float32), "t")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["a"]), helper.make_node("Mul", ["a", "s"], ["m"]),
             helper.make_node("Add", ["m", "t"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 9])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 7])], init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    x = rng.normal(size=(1, 2, 9)).astype(np.float32)
    folded, count = affine_folded(_copy(model), beyond_runtime=True)
    assert count == 1 and [n.op_type for n in folded.graph.node] == ["Conv"]
    run = [ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(["y"], {"x": x})[0]
           for m in (model, folded)]
    np.testing.assert_allclose(run[1], run[0], rtol=1e-5, atol=1e-5)


def test_a_chain_that_broadcasts_a_narrower_input_up_to_the_conv_stays():
    """A grayscale image normalized per colour channel: (x[1, 1] − mean[1, 3]) / std[1, 3] makes the Conv's 3 channels."""
    rng = np.random.default_rng(4)
    init = [numpy_helper.from_array(rng.normal(0, 1, (4, 3, 2, 2)).astype(np.float32), "w"),
            numpy_helper.from_array(rng.uniform(0.2, 0.8, (1, 3, 1, 1)).astype(np.float32), "mean"),
            numpy_helper.from_array(rng.uniform(0.2, 0.8, (1, 3, 1, 1)).astype(np.float32), "std")]
    nodes = [helper.make_node("Sub", ["x", "mean"], ["c"]), helper.make_node("Div", ["c", "std"], ["n"]),
             helper.make_node("Conv", ["n", "w"], ["y"], strides=[2, 2])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 4, 4])], init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    assert affine_folded(model, beyond_runtime=True)[1] == 0
