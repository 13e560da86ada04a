from collections import Counter

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgec.passes.base import PassContext
from edgec.passes.cleanup import CleanupPass
from edgec.passes.int8.hardswish import hardswish_fused
from edgec.passes.int8.prepare import prepared


def _conv_then(activation: str, opset: int = 14, extra_reader: bool = False) -> onnx.ModelProto:
    """conv → a hard-swish written as `activation` (clip_div, clip_mul_sixth, hard_sigmoid, op) → conv."""
    rng = np.random.default_rng(0)
    init = [numpy_helper.from_array(rng.normal(0, 1, (4, 3, 3, 3)).astype(np.float32), "w0"),
            numpy_helper.from_array(rng.normal(0, 1, (2, 4, 1, 1)).astype(np.float32), "w1"),
            numpy_helper.from_array(np.array(3.0, np.float32), "three"),
            numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
            numpy_helper.from_array(np.array(6.0, np.float32), "six"),
            numpy_helper.from_array(np.array(1 / 6, np.float32), "sixth")]
    nodes = [helper.make_node("Conv", ["x", "w0"], ["a"], name="conv0", pads=[1] * 4)]
    if activation == "op":
        nodes += [helper.make_node("HardSwish", ["a"], ["h"], name="hswish")]
    elif activation == "hard_sigmoid":
        nodes += [helper.make_node("HardSigmoid", ["a"], ["g"], alpha=1 / 6, beta=0.5),
                  helper.make_node("Mul", ["a", "g"], ["h"], name="mul")]
    else:
        clip = helper.make_node("Clip", ["s", "zero", "six"], ["c"]) if opset >= 11 else \
            helper.make_node("Clip", ["s"], ["c"], min=0.0, max=6.0)
        nodes += [helper.make_node("Add", ["a", "three"], ["s"]), clip,
                  helper.make_node("Mul", ["c", "a"], ["p"], name="mul")]
        nodes += [helper.make_node("Div", ["p", "six"], ["h"], name="div")] if activation == "clip_div" else \
            [helper.make_node("Mul", ["sixth", "p"], ["h"], name="scale")]
    nodes += [helper.make_node("Conv", ["h", "w1"], ["y"], name="conv1")]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 8, 8])]
    if extra_reader:
        outputs.append(helper.make_tensor_value_info("c", TensorProto.FLOAT, [1, 4, 8, 8]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              outputs, init)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _outputs(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(["y"], {"x": x})[0]


def _ops(model: onnx.ModelProto) -> Counter:
    return Counter(n.op_type for n in model.graph.node)


X = np.random.default_rng(1).normal(0, 3, (1, 3, 8, 8)).astype(np.float32)   # values on both sides of ±3


@pytest.mark.parametrize("activation", ["clip_div", "clip_mul_sixth"])
def test_a_clipped_hardswish_becomes_the_one_op_and_computes_the_same(activation):
    model = _conv_then(activation)
    fused, count = hardswish_fused(onnx.ModelProto.FromString(model.SerializeToString()))
    assert count == 1 and _ops(fused)["HardSwish"] == 1 and not {"Clip", "Div", "Add"} & set(_ops(fused))
    onnx.checker.check_model(fused)
    np.testing.assert_allclose(_outputs(fused, X), _outputs(model, X), rtol=1e-5, atol=1e-5)


def test_below_opset_14_it_becomes_x_times_hard_sigmoid():
    model = _conv_then("clip_div", opset=9)                      # Clip with min/max attributes
    fused, count = hardswish_fused(onnx.ModelProto.FromString(model.SerializeToString()))
    assert count == 1 and _ops(fused)["HardSigmoid"] == 1 and "HardSwish" not in _ops(fused)
    np.testing.assert_allclose(_outputs(fused, X), _outputs(model, X), rtol=1e-5, atol=1e-5)


def test_x_times_hard_sigmoid_is_fused_for_int8_only():
    model = _conv_then("hard_sigmoid")
    assert hardswish_fused(onnx.ModelProto.FromString(model.SerializeToString()), clipped_only=True)[1] == 0
    fused, count = hardswish_fused(onnx.ModelProto.FromString(model.SerializeToString()))
    assert count == 1 and _ops(fused)["HardSwish"] == 1
    np.testing.assert_allclose(_outputs(fused, X), _outputs(model, X), rtol=1e-5, atol=1e-5)


def test_a_pattern_whose_middle_is_read_elsewhere_stays():
    model = _conv_then("clip_div", extra_reader=True)
    assert hardswish_fused(model)[1] == 0


def test_cleanup_fuses_clipped_hardswish_and_says_so():
    graph = gs.import_onnx(_conv_then("clip_div", opset=13))
    result = CleanupPass().run(graph, PassContext())
    assert result.changed and result.stats["hardswish_fused"] == 1 and "hard-swish" in result.notes[0]
    assert {n.op for n in graph.nodes} >= {"HardSigmoid", "Mul"} and "Clip" not in {n.op for n in graph.nodes}


def test_static_int8_preparation_keeps_hardswish_one_op():
    # ONNX Runtime's pre-processing expands HardSwish into HardSigmoid · Mul: a float pass and a Q/DQ pair more
    model, notes, _ = prepared(_conv_then("op"), per_channel=True)
    assert _ops(model)["HardSwish"] == 1 and "HardSigmoid" not in _ops(model)
    assert any("hard-swish" in n for n in notes)


def test_cleanup_leaves_hardswish_written_out_for_a_mobile_ep():
    graph = gs.import_onnx(_conv_then("clip_div", opset=13))
    context = PassContext(providers=("NnapiExecutionProvider", "CPUExecutionProvider"))
    assert CleanupPass().run(graph, context).stats["hardswish_fused"] == 0
