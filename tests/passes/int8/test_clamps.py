import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgec.passes.int8.clamps import clamps_dropped


def _model(op: str, bound: float, scale: float, zero_point: int, pool: bool = False) -> onnx.ModelProto:
    """x → Max/Min(x, bound) [→ MaxPool] → QuantizeLinear(scale, zero_point) → DequantizeLinear → y."""
    init = [numpy_helper.from_array(np.array([bound], np.float32), "bound"),
            numpy_helper.from_array(np.array(scale, np.float32), "scale"),
            numpy_helper.from_array(np.array(zero_point, np.uint8), "zero")]
    nodes = [helper.make_node(op, ["x", "bound"], ["clamped"], name="clamp")]
    if pool:
        nodes.append(helper.make_node("MaxPool", ["clamped"], ["pooled"], kernel_shape=[2, 2], strides=[2, 2]))
    nodes += [helper.make_node("QuantizeLinear", ["pooled" if pool else "clamped", "scale", "zero"], ["q"]),
              helper.make_node("DequantizeLinear", ["q", "scale", "zero"], ["y"])]
    shape = [1, 2, 4, 4] if pool else [1, 2, 8, 8]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)], init)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(["y"], {"x": x})[0]


X = np.random.default_rng(0).uniform(-3, 3, (1, 2, 8, 8)).astype(np.float32)


@pytest.mark.parametrize(("op", "bound", "zero_point", "pool"), [("Max", -0.4, 51, False), ("Max", -0.4, 51, True),
                                                                  ("Min", 1.0, 128, False)])
def test_a_clamp_the_quantization_already_makes_is_dropped_with_the_same_integers(op, bound, zero_point, pool):
    """Scale 0.4 / 51 puts the lowest code at −0.4 (51 steps below zero); 1.0 / 127 steps above zero is the highest."""
    scale = 0.4 / 51 if op == "Max" else 1.0 / 127
    model = _model(op, bound, scale, zero_point, pool)
    expected = _run(model, X)
    dropped, count = clamps_dropped(onnx.ModelProto.FromString(model.SerializeToString()))
    assert count == 1 and op not in {n.op_type for n in dropped.graph.node}
    np.testing.assert_array_equal(_run(dropped, X), expected)


def test_a_clamp_inside_the_quantized_range_stays():
    """Lowest code at −1.0: values between −1.0 and −0.4 would change without the Max."""
    model = _model("Max", -0.4, 1.0 / 51, 51)
    assert clamps_dropped(model)[1] == 0


def test_a_maxpool_whose_indices_are_read_is_not_looked_through():
    model = _model("Max", -0.4, 0.4 / 51, 51, pool=True)
    pool = next(n for n in model.graph.node if n.op_type == "MaxPool")
    pool.output.append("indices")
    model.graph.output.append(helper.make_tensor_value_info("indices", TensorProto.INT64, [1, 2, 4, 4]))
    assert clamps_dropped(model)[1] == 0


def test_an_int8_quantize_without_a_zero_point_clamps_at_its_own_lowest_code():
    """opset 21: `output_dtype` int8 and no zero point — the lowest code is −128 steps, far below −0.4."""
    model = _model("Max", -0.4, 0.4 / 51, 51)
    quantize = next(n for n in model.graph.node if n.op_type == "QuantizeLinear")
    del quantize.input[2:]
    quantize.attribute.append(helper.make_attribute("output_dtype", TensorProto.INT8))
    assert clamps_dropped(model)[1] == 0
