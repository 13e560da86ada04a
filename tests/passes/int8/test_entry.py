import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgec.passes.int8.entry import entry_convolutions


def _model() -> onnx.ModelProto:
    """x (1 channel) → Pad → conv0 → Relu → conv1 (8 channels in) ; y (3 channels) → conv2 → Add with conv1."""
    rng = np.random.default_rng(0)
    init = [numpy_helper.from_array(rng.normal(size=s).astype(np.float32), n) for n, s in
            (("w0", (8, 1, 3, 3)), ("w1", (8, 8, 3, 3)), ("w2", (8, 3, 1, 1)), ("pads", (8,)))]
    init[-1] = numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads")
    nodes = [helper.make_node("Pad", ["x", "pads"], ["xp"]),
             helper.make_node("Conv", ["xp", "w0"], ["a"], name="conv0"),
             helper.make_node("Relu", ["a"], ["ra"]),
             helper.make_node("Conv", ["ra", "w1"], ["b"], name="conv1", pads=[1] * 4),
             helper.make_node("Conv", ["y", "w2"], ["c"], name="conv2"),
             helper.make_node("Add", ["b", "c"], ["out"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8]),
                                           helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], init)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_entry_convolutions_read_a_narrow_graph_input_through_unweighted_nodes():
    model = _model()
    assert entry_convolutions(model, ["conv0", "conv1", "conv2"]) == ["conv0", "conv2"]
    assert entry_convolutions(model, ["conv1", "conv2"]) == ["conv2"]          # only the layers a recipe quantizes


def test_a_convolution_that_reads_an_input_only_through_its_shape_is_not_an_entry():
    rng = np.random.default_rng(1)
    init = [numpy_helper.from_array(rng.normal(size=(2, 3, 3, 3)).astype(np.float32), "stem_w"),
            numpy_helper.from_array(rng.normal(size=(2, 1, 3, 3)).astype(np.float32), "deep_w")]
    nodes = [helper.make_node("Conv", ["x", "stem_w"], ["a"], name="stem", pads=[1] * 4),
             helper.make_node("Shape", ["x"], ["shape"]),
             helper.make_node("Reshape", ["a", "shape_2"], ["r"]),
             helper.make_node("Slice", ["shape", "starts", "ends"], ["shape_2"]),
             helper.make_node("Conv", ["r", "deep_w"], ["y"], name="deep", group=2)]
    init += [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in (("starts", [0]), ("ends", [4]))]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    assert entry_convolutions(model, ["stem", "deep"]) == ["stem"]
