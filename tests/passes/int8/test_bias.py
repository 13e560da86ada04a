import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from edgec.passes.int8.bias import _output_shift, bias_corrected, corrects_bias, input_means
from edgec.passes.int8.recipes import Int8Builder, Recipe
from edgec.passes.int8.static import STATIC_OPS

from models import relu_cnn_feeds as _feeds
from models import relu_cnn_model as _relu_cnn


def _run(model: onnx.ModelProto, feeds: list[dict]) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.stack([session.run(None, f)[0] for f in feeds])


def test_the_shift_of_a_1x1_convolution_is_its_weight_error_times_the_input_mean():
    rng = np.random.default_rng(1)
    delta, x = rng.normal(size=(6, 4, 1, 1)), rng.normal(1.0, 1.0, (50, 4))
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"])
    assert np.allclose(_output_shift(node, delta, x.mean(axis=0)), (x @ delta[:, :, 0, 0].T).mean(axis=0))


def test_a_grouped_convolution_takes_each_output_channels_own_inputs():
    delta, mean = np.ones((4, 1, 3, 3)), np.array([1.0, 2.0, 3.0, 4.0])          # depthwise: output c reads input c
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], group=4)
    assert np.allclose(_output_shift(node, delta, mean), 9 * mean)


def test_a_gemm_shift_follows_its_transposed_weight():
    delta, mean = np.arange(6.0).reshape(3, 2), np.array([1.0, -1.0])           # transB: [out 3, in 2]
    node = helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)
    assert np.allclose(_output_shift(node, delta, mean), delta @ mean)
    plain = helper.make_node("Gemm", ["x", "w", "b"], ["y"])                      # [in 3, out 2]
    assert np.allclose(_output_shift(plain, delta, np.ones(3)), delta.T @ np.ones(3))


def test_input_means_are_per_channel_means_of_each_layers_input():
    model, feeds = _relu_cnn(), _feeds(4)
    means = input_means(model, feeds)
    assert set(means) == {"conv0", "conv1", "conv2"}
    assert np.allclose(means["conv0"], np.mean([f["x"].mean(axis=(0, 2, 3)) for f in feeds], axis=0))
    assert (means["conv1"] >= 0).all() and means["conv1"].shape == (8,)
    assert input_means(model, []) == {} and corrects_bias(model, "static") and not corrects_bias(model, "dynamic")


def test_bias_correction_takes_the_int8_weights_mean_shift_out_of_the_outputs():
    model, feeds, unseen = _relu_cnn(), _feeds(8), _feeds(8, seed=9)
    reference = _run(model, unseen)
    recipe = Recipe("static", STATIC_OPS, per_channel=True, reduce_range=True)
    with Int8Builder(model, recipe, feeds) as builder:
        plain, float_last = builder.build(), builder.build(["conv2"])
        corrected = builder.with_recipe(Recipe("static", STATIC_OPS, True, True, correct_bias=True)).build()
        corrected_but_last = builder.build(["conv2"])
    shift = lambda m: np.abs((_run(m, unseen) - reference).mean(axis=(0, 1, 3, 4))).mean()   # noqa: E731
    assert shift(corrected) < 0.5 * shift(plain)
    biases = lambda m: {t.name: numpy_helper.to_array(t) for t in m.graph.initializer     # noqa: E731
                        if t.data_type == TensorProto.INT32 and t.name.endswith("_quantized")}
    changed = [name for name, value in biases(corrected).items() if not np.array_equal(value, biases(plain)[name])]
    assert len(changed) == 3                                 # every int8 layer's bias moved
    # a layer kept float has its float bias: nothing to correct there
    assert len(biases(corrected_but_last)) == len(biases(float_last)) == 2


def test_a_layer_whose_weight_is_not_a_constant_dequantization_is_left_alone():
    model = _relu_cnn()
    same, count = bias_corrected(onnx.ModelProto.FromString(model.SerializeToString()), model,
                                 {"conv0": np.zeros(3), "conv1": np.zeros(8), "conv2": np.zeros(8)})
    assert count == 0 and same.SerializeToString() == model.SerializeToString()


def _relu_mlp(seed: int = 0) -> onnx.ModelProto:
    """x → MatMul + bias → Relu → MatMul + bias: the second layer's inputs have a positive mean."""
    rng = np.random.default_rng(seed)
    init = [numpy_helper.from_array(rng.normal(0, 0.3, (16, 64)).astype(np.float32), "w0"),
            numpy_helper.from_array(rng.normal(0, 0.1, (64,)).astype(np.float32), "b0"),
            numpy_helper.from_array(rng.normal(0, 0.3, (64, 8)).astype(np.float32), "w1"),
            numpy_helper.from_array(rng.normal(0, 0.1, (8,)).astype(np.float32), "b1")]
    nodes = [helper.make_node("MatMul", ["x", "w0"], ["m0"], name="fc0"), helper.make_node("Add", ["m0", "b0"], ["a0"]),
             helper.make_node("Relu", ["a0"], ["r0"]), helper.make_node("MatMul", ["r0", "w1"], ["m1"], name="fc1"),
             helper.make_node("Add", ["m1", "b1"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [32, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [32, 8])], init)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_dynamic_bias_correction_moves_the_bias_add_of_each_int8_matmul():
    from edgec.passes.int8.bias import matmul_biases

    model = _relu_mlp()
    rng = np.random.default_rng(2)
    feeds = [{"x": rng.normal(0.5, 1.0, (32, 16)).astype(np.float32)} for _ in range(8)]
    unseen = [{"x": rng.normal(0.5, 1.0, (32, 16)).astype(np.float32)} for _ in range(8)]
    assert set(matmul_biases(model)) == {"fc0", "fc1"} and corrects_bias(model, "dynamic")
    recipe = Recipe("dynamic", ("MatMul",), per_channel=True, reduce_range=True)
    with Int8Builder(model, recipe, feeds) as builder:
        plain, first_float = builder.build(), builder.build(["fc0"])
        builder.with_recipe(Recipe("dynamic", ("MatMul",), True, True, correct_bias=True))
        corrected, corrected_first_float = builder.build(), builder.build(["fc0"])
    reference = np.stack([_run_y(model, f) for f in unseen])
    shift = lambda m: np.abs(np.mean([_run_y(m, f) for f in unseen], axis=(0, 1)) - reference.mean(axis=(0, 1))).mean()  # noqa: E731
    assert shift(corrected) < 0.5 * shift(plain)
    added = lambda m: {t.name for t in m.graph.initializer if t.name.endswith("_bias_corrected")}  # noqa: E731
    assert len(added(corrected)) == 2 and len(added(corrected_first_float)) == 1 and not added(first_float)


def _run_y(model: onnx.ModelProto, feed: dict) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feed)[0]
