import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgec.passes.int8.hessians import _rows, input_hessians, weighted_layers


def _conv_model(shape: tuple[int, ...], weight: np.ndarray, **attrs) -> onnx.ModelProto:
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(weight, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


CASES = [((1, 4, 9, 11), (6, 4, 3, 3), dict(pads=[1, 0, 1, 2], strides=[2, 1])),
         ((2, 4, 10, 10), (4, 1, 3, 3), dict(group=4, dilations=[2, 2], pads=[2, 2, 2, 2])),      # depthwise
         ((1, 6, 7, 8), (4, 3, 2, 3), dict(group=2, auto_pad="SAME_UPPER", strides=[2, 2])),
         ((1, 3, 20), (5, 3, 4), dict(pads=[1, 2], strides=[3]))]                                  # 1-D


@pytest.mark.parametrize("shape, kernel, attrs", CASES)
def test_the_rows_of_a_convolution_times_its_weight_are_its_outputs(shape, kernel, attrs):
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=shape).astype(np.float32), rng.normal(size=kernel).astype(np.float32)
    model = _conv_model(shape, w, **attrs)
    y = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    layer = weighted_layers(model)["conv"]
    groups = _rows(layer, x, np.random.default_rng(0))
    per_group = kernel[0] // len(groups)
    for g, rows in enumerate(groups):
        got = rows @ w[g * per_group:(g + 1) * per_group].reshape(per_group, -1).T        # [N·positions, out]
        expected = np.moveaxis(y[:, g * per_group:(g + 1) * per_group], 1, -1).reshape(-1, per_group)
        assert np.allclose(got, expected, atol=1e-4)


def test_matmul_and_gemm_hessians_are_their_inputs_second_moments():
    rng = np.random.default_rng(1)
    init = [numpy_helper.from_array(rng.normal(size=(5, 3)).astype(np.float32), "w0"),
            numpy_helper.from_array(rng.normal(size=(2, 3)).astype(np.float32), "w1"),
            numpy_helper.from_array(rng.normal(size=(3, 4)).astype(np.float32), "shared")]
    nodes = [helper.make_node("MatMul", ["x", "w0"], ["h"], name="fc0"),
             helper.make_node("Gemm", ["h", "w1"], ["y"], name="fc1", transB=1),
             helper.make_node("MatMul", ["h", "shared"], ["z0"], name="twin0"),
             helper.make_node("MatMul", ["h", "shared"], ["z1"], name="twin1")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 5])],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("y", "z0", "z1")],
                              init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    layers = weighted_layers(model)
    assert set(layers) == {"fc0", "fc1"}                     # a weight two nodes read is left to plain rounding
    feeds = [{"x": rng.normal(size=(4, 5)).astype(np.float32)} for _ in range(3)]
    hessians = input_hessians(model, layers, feeds)
    xs = np.concatenate([f["x"] for f in feeds])
    assert np.allclose(hessians["fc0"].groups[0], xs.T @ xs, rtol=1e-5) and hessians["fc0"].rows == 12
    hs = xs @ numpy_helper.to_array(init[0])
    assert np.allclose(hessians["fc1"].groups[0], hs.T @ hs, rtol=1e-4)
    assert input_hessians(model, layers, []) == {}


def test_a_large_input_gives_a_sample_of_its_kernel_positions(monkeypatch):
    import edgec.passes.int8.hessians as hessians

    monkeypatch.setattr(hessians, "ROWS_PER_FEED", 7)
    shape, kernel, attrs = CASES[0]
    rng = np.random.default_rng(3)
    x, w = rng.normal(size=shape).astype(np.float32), rng.normal(size=kernel).astype(np.float32)
    model = _conv_model(shape, w, **attrs)
    y = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    every = np.moveaxis(y, 1, -1).reshape(-1, kernel[0])                       # one row per output position
    rows = _rows(weighted_layers(model)["conv"], x, np.random.default_rng(0))[0]
    assert len(rows) == 7
    got = rows @ w.reshape(kernel[0], -1).T
    assert all(np.abs(every - g).max(axis=1).min() < 1e-4 for g in got)       # each is a real position's patch
