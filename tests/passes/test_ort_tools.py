import onnx
import onnx_graphsurgeon as gs
from onnx import TensorProto, helper

from edgec.passes.ort_tools import replace_contents


def _relu_graph(opset: int) -> gs.Graph:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    model = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", opset)])
    return gs.import_onnx(model)


def test_replaced_contents_export_at_the_raised_opset():
    # int8 of an opset-10 model upgrades it to 13 (per-channel DequantizeLinear needs `axis`); the graph that
    # takes the result must export at 13, not at the import's 10 (ONNX Runtime then rejects the model)
    graph = _relu_graph(10)
    replace_contents(graph, _relu_graph(13))
    exported = gs.export_onnx(graph)
    assert [o.version for o in exported.opset_import if o.domain in ("", "ai.onnx")] == [13]
    onnx.checker.check_model(exported)


def test_calibration_sessions_run_in_priority_order_only_while_asked():
    import onnxruntime

    from edgec.passes.ort_tools import calibration_in_priority_order

    with calibration_in_priority_order():
        assert onnxruntime.SessionOptions().execution_order == onnxruntime.ExecutionOrder.PRIORITY_BASED
    assert onnxruntime.SessionOptions().execution_order == onnxruntime.ExecutionOrder.DEFAULT
