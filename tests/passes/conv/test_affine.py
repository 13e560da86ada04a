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
