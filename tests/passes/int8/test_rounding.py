import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from edgec.passes.int8.recipes import Int8Builder, Recipe
from edgec.passes.int8.rounding import gptq
from edgec.passes.int8.static import STATIC_OPS


def _correlated(rows: int, columns: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Inputs whose columns are strongly correlated (what makes rounding errors add up), and their H."""
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(columns, columns)) + 3 * np.eye(columns)
    x = rng.normal(size=(rows, columns)) @ mixing
    return x, x.T @ x


def test_gptq_lowers_the_output_error_of_rounding_on_the_grid_it_was_given():
    rng = np.random.default_rng(1)
    x, h = _correlated(400, 32)
    w = rng.normal(size=(16, 32))
    scale = np.abs(w).max(axis=1) / 127
    nearest = np.clip(np.round(w / scale[:, None]), -127, 127)
    q = gptq(w, h, scale, 127)
    assert q is not None and np.array_equal(q, np.round(q)) and np.abs(q).max() <= 127
    error = lambda ints: np.linalg.norm(x @ (w - ints * scale[:, None]).T)   # noqa: E731
    assert error(q) < 0.7 * error(nearest)
    assert not np.array_equal(q, nearest)                                    # it chose other integers


def test_gptq_keeps_a_reduced_range_and_rounds_inputs_never_seen_plainly():
    rng = np.random.default_rng(2)
    _, h = _correlated(100, 8)
    h[3, :] = h[:, 3] = 0.0                                                  # an input that is always zero
    w = rng.normal(size=(4, 8))
    scale = np.abs(w).max(axis=1) / 63
    q = gptq(w, h, scale, 63)
    assert q is not None and np.abs(q).max() <= 63
    assert np.array_equal(q[:, 3], np.round(w[:, 3] / scale))                # unseen: plain rounding, not zero
    assert gptq(w, h * np.nan, scale, 63) is None


def _mlp(seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    init = [numpy_helper.from_array(rng.normal(0, 0.3, (24, 48)).astype(np.float32), "w0"),
            numpy_helper.from_array(rng.normal(0, 0.3, (48, 8)).astype(np.float32), "w1")]
    nodes = [helper.make_node("MatMul", ["x", "w0"], ["m0"], name="fc0"), helper.make_node("Relu", ["m0"], ["r0"]),
             helper.make_node("MatMul", ["r0", "w1"], ["y"], name="fc1")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [64, 24])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [64, 8])], init)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _inputs(count: int, seed: int) -> list[dict]:
    """Correlated inputs: the same mixing of independent noise whatever the seed (one distribution)."""
    mixing = np.random.default_rng(0).normal(size=(24, 24)) + 2 * np.eye(24)
    rng = np.random.default_rng(seed)
    return [{"x": (rng.normal(size=(64, 24)) @ mixing).astype(np.float32)} for _ in range(count)]


def _error(model: onnx.ModelProto, reference: onnx.ModelProto, feeds: list[dict]) -> float:
    run = lambda m, f: ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, f)[0]  # noqa: E731
    return float(np.mean([np.linalg.norm(run(model, f) - run(reference, f)) for f in feeds]))


def _int8_weights(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer if t.data_type == TensorProto.INT8 and t.name.endswith("_quantized")}


def test_rounded_dynamic_int8_keeps_its_scales_and_is_closer_on_unseen_inputs():
    model, feeds, unseen = _mlp(), _inputs(8, 3), _inputs(8, 4)
    recipe = Recipe("dynamic", ("MatMul",), per_channel=True, reduce_range=True)
    with Int8Builder(model, recipe, feeds) as builder:
        plain = builder.build()
        rounded = builder.with_recipe(Recipe("dynamic", ("MatMul",), True, True, round_weights=True)).build()
        first_float = builder.build(["fc0"])
    scales = lambda m: {t.name: t.SerializeToString() for t in m.graph.initializer if t.name.endswith("_scale")}  # noqa: E731
    assert scales(plain) == scales(rounded)
    before, after = _int8_weights(plain), _int8_weights(rounded)
    assert set(before) == set(after) and all(not np.array_equal(before[k], after[k]) for k in before)
    assert max(np.abs(v).max() for v in after.values()) <= 64          # reduce_range's grid
    assert _error(rounded, model, unseen) < _error(plain, model, unseen)
    assert set(_int8_weights(first_float)) == {"w1_quantized"}          # a layer kept float stays float


def test_rounded_static_int8_rounds_each_convolution():
    from models import relu_cnn_feeds, relu_cnn_model

    model = relu_cnn_model(groups=2)
    recipe = Recipe("static", STATIC_OPS, per_channel=True, reduce_range=False)
    with Int8Builder(model, recipe, relu_cnn_feeds(8)) as builder:
        plain = _int8_weights(builder.build())
        rounded = _int8_weights(builder.with_recipe(Recipe("static", STATIC_OPS, True, False,
                                                           round_weights=True)).build())
    assert len(plain) == 3 and set(plain) == set(rounded)
    assert all(not np.array_equal(plain[k], rounded[k]) for k in plain)


def test_h_from_few_rows_is_pulled_towards_plain_rounding():
    from edgec.passes.int8.rounding import shrunk

    _, h = _correlated(100, 8)
    assert np.allclose(shrunk(h, 10**9), h)
    half = shrunk(h, 8)                                        # as many rows as inputs: half way to the diagonal
    assert np.allclose(np.diag(half), np.diag(h)) and np.allclose(half - np.diag(np.diag(half)),
                                                                   0.5 * (h - np.diag(np.diag(h))))


def test_a_dynamic_gemm_with_transposed_weight_is_rounded_in_the_layout_onnx_runtime_wrote():
    rng = np.random.default_rng(5)
    init = [numpy_helper.from_array(rng.normal(size=(12, 24)).astype(np.float32), "b0"),
            numpy_helper.from_array(rng.normal(size=(12, 8)).astype(np.float32), "b1")]
    nodes = [helper.make_node("Gemm", ["x", "b0"], ["h"], name="g0", transB=1),
             helper.make_node("Gemm", ["h", "b1"], ["y"], name="g1")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [64, 24])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [64, 8])], init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    feeds, unseen = _inputs(8, 3), _inputs(8, 4)
    with Int8Builder(model, Recipe("dynamic", ("MatMul", "Gemm"), True, False), feeds) as builder:
        plain = builder.build()
        rounded = builder.with_recipe(Recipe("dynamic", ("MatMul", "Gemm"), True, False, round_weights=True)).build()
    before, after = _int8_weights(plain), _int8_weights(rounded)
    assert len(before) == 2 and all(not np.array_equal(before[k], after[k]) for k in before)
    assert _error(rounded, model, unseen) < _error(plain, model, unseen)


def test_dynamic_gptq_takes_its_h_from_the_feeds_it_is_not_scored_on():
    from edgec.passes.base import PassContext
    from edgec.passes.int8.dynamic import _fit_feeds

    from calib import OrtCalibration

    feeds = _inputs(12, 1)
    judged = PassContext(calibration=OrtCalibration(feeds, scored=4), fidelity=lambda graph: 1.0)
    assert _fit_feeds(judged, feeds) == feeds[:8]
    assert _fit_feeds(judged, feeds[:6]) == feeds[:6]                      # 2 beside the search feeds: too few
    assert _fit_feeds(PassContext(calibration=OrtCalibration(feeds, scored=4)), feeds) == feeds   # nothing scored
