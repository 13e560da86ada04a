import numpy as np
import onnx
import onnx_graphsurgeon as gs
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from edgec.passes.base import PassContext
from edgec.passes.cleanup import CleanupPass
from edgec.passes.exact.onehot import onehot_gathered

ROWS, WIDTH, LENGTH = 7, 5, 4


def _model(opset: int = 13, arange_rank: int = 3, shared_table: bool = False, index_type=TensorProto.INT32,
           expand: bool = True) -> onnx.ModelProto:
    """Cast(Equal(Expand(Reshape(idx, [-1, LENGTH, 1])), arange(ROWS))) @ table: the way tf2onnx writes a JAX one-hot
    embedding."""
    rng = np.random.default_rng(0)
    dtype = np.int32 if index_type == TensorProto.INT32 else np.int64
    init = [numpy_helper.from_array(rng.normal(0, 1, (ROWS, WIDTH)).astype(np.float32), "table"),
            numpy_helper.from_array(np.array([-1, LENGTH, 1], np.int64), "shape"),
            numpy_helper.from_array(np.arange(ROWS, dtype=dtype).reshape((1,) * (arange_rank - 1) + (ROWS,)), "iota"),
            numpy_helper.from_array(np.array([LENGTH], np.int64), "length"),
            numpy_helper.from_array(np.array([1], np.int64), "one")]
    nodes = [helper.make_node("Reshape", ["idx", "shape"], ["r"])]
    if expand:
        nodes += [helper.make_node("Shape", ["idx"], ["s"]),
                  helper.make_node("Slice", ["s", "zero_start", "one"], ["batch"]),
                  helper.make_node("Concat", ["batch", "length", "one"], ["target"], axis=0),
                  helper.make_node("Expand", ["r", "target"], ["e"])]
        init.append(numpy_helper.from_array(np.array([0], np.int64), "zero_start"))
    nodes += [helper.make_node("Equal", ["e" if expand else "r", "iota"], ["eq"]),
              helper.make_node("Cast", ["eq"], ["hot"], to=TensorProto.FLOAT),
              helper.make_node("MatMul", ["hot", "table"], ["y"], name="lookup")]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, LENGTH, WIDTH])]
    if shared_table:
        nodes.append(helper.make_node("ReduceSum", ["table"], ["total"]))
        outputs.append(helper.make_tensor_value_info("total", TensorProto.FLOAT, []))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("idx", index_type, [2, LENGTH])],
                              outputs, init)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _run(model: onnx.ModelProto, idx: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(["y"], {"idx": idx})[0]


def test_a_one_hot_matmul_becomes_a_lookup_with_the_same_values_in_and_out_of_range():
    model = _model()
    idx = np.array([[0, 3, ROWS - 1, ROWS], [-1, -ROWS - 2, ROWS + 9, 2]], np.int32)    # out of range: zero rows
    expected = _run(model, idx)
    gathered, count = onehot_gathered(onnx.load_from_string(model.SerializeToString()))
    onnx.checker.check_model(gathered)
    assert count == 1 and "Gather" in {n.op_type for n in gathered.graph.node}
    np.testing.assert_array_equal(_run(gathered, idx), expected)
    assert not expected[0, 3].any() and not expected[1, 0].any()


def test_int64_indices_and_a_plain_reshape_are_looked_up_too():
    model = _model(index_type=TensorProto.INT64, expand=False)
    idx = np.array([[1, 2, 3, 40], [0, 6, -2, 5]], np.int64)
    gathered, count = onehot_gathered(onnx.load_from_string(model.SerializeToString()))
    assert count == 1
    np.testing.assert_array_equal(_run(gathered, idx), _run(model, idx))


def test_what_the_lookup_would_not_reproduce_is_left_alone():
    assert onehot_gathered(_model(arange_rank=4))[1] == 0     # the one-hot gains an axis the lookup would not
    assert onehot_gathered(_model(shared_table=True))[1] == 0  # the table is read elsewhere
    assert onehot_gathered(_model(opset=11))[1] == 0           # no integer Clip / Squeeze axes input


def test_cleanup_reports_the_lookups():
    result = CleanupPass().run(gs.import_onnx(_model()), PassContext())
    assert result.changed and result.stats["onehot_gathered"] == 1
    assert any("lookup" in note for note in result.notes)
