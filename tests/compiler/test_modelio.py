"""modelio: exporting an edited graph keeps the model's size and what it computes."""

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import onnxruntime as ort
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from edgec.compiler.modelio import to_model


def _branching_model() -> onnx.ModelProto:
    """Both branches of an If read the same outer-scope weight (as Silero VAD's do)."""
    weight = nh.from_array(np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32), "w")
    out = h.make_tensor_value_info("y", T.FLOAT, [1, 64])
    then_graph = h.make_graph([h.make_node("MatMul", ["x", "w"], ["y"])], "then", [], [out])
    else_graph = h.make_graph([h.make_node("MatMul", ["x", "w"], ["z"]), h.make_node("Relu", ["z"], ["y"])],
                              "else", [], [out])
    graph = h.make_graph([h.make_node("If", ["c"], ["y"], then_branch=then_graph, else_branch=else_graph)], "g",
                         [h.make_tensor_value_info("c", T.BOOL, []), h.make_tensor_value_info("x", T.FLOAT, [1, 64])],
                         [out], [weight])
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])


def test_a_weight_both_branches_read_is_stored_once():
    model = _branching_model()
    exported = to_model(gs.import_onnx(model), model)
    assert exported.ByteSize() < 1.2 * model.ByteSize()
    assert [t.name for t in exported.graph.initializer] == ["w"]
    x = np.random.default_rng(1).standard_normal((1, 64)).astype(np.float32)
    for cond in (True, False):
        feed = {"c": np.array(cond), "x": x}
        np.testing.assert_array_equal(_run(exported, feed), _run(model, feed))


def _run(model: onnx.ModelProto, feed: dict) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)[0]
