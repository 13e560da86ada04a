"""Activation smoothing before dynamic int8 (passes/int8/smooth.py): exact in float, a smaller int8 error where
an input has outlier channels, and readers whose weight is shared elsewhere left alone."""

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from edgec.passes import PassContext, get_pass
from edgec.passes.int8.smooth import readers_by_input, smoothed

import models

OUTLIERS = [3, 11]


def _outlier_feeds(model, count, seed):
    rank = len(model.graph.input[0].type.tensor_type.shape.dim)
    rng = np.random.default_rng(seed)
    feeds = [{"x": rng.standard_normal([1, 24, models.D][3 - rank:]).astype(np.float32)} for _ in range(count)]
    for feed in feeds:
        feed["x"][..., OUTLIERS] *= 40.0        # a LayerNorm output's few huge channels
    return feeds


def _two_readers_model(style="matmul", shared=False):
    """x read by two linears (as Q and V read one LayerNorm); `shared`: the second reuses the first's weight."""
    b = models.Builder(seed=4)
    first = models.linear(b, "x", models.D, models.D, style, bias=False)
    if shared:
        weight = next(n for n in b.nodes if n.op_type in ("MatMul", "Gemm")).input[1]
        second = b.op("MatMul", [first, weight])
    else:
        second = models.linear(b, "x", models.D, models.D, style, bias=False)
    shape = ("rows", models.D) if style == "gemm" else ("batch", "seq", models.D)
    return b.model("x", b.op("Add", [first, second]), shape, shape)


def _relative_error(model, other, feeds):
    errors = [np.linalg.norm(models.run(model, f)[0] - models.run(other, f)[0]) / np.linalg.norm(models.run(model, f)[0])
              for f in feeds]
    return float(np.mean(errors))


def _dynamic_int8(model):
    graph = gs.import_onnx(model)
    get_pass("quantize").run(graph, PassContext(options={"reduce_range": "true", "mode": "dynamic"}))
    out = gs.export_onnx(graph)
    out.ir_version = model.ir_version
    return out


def test_smoothing_is_exact_in_float_and_halves_the_int8_error_of_outlier_inputs():
    for style in ("matmul", "gemm"):
        model = _two_readers_model(style)
        out, count, notes = smoothed(model, _outlier_feeds(model, 8, seed=1), bits=7, per_channel=True)
        onnx.checker.check_model(out)
        held_out = _outlier_feeds(model, 4, seed=9)
        assert count == 1 and "on 1 of 1 MatMul inputs" in notes[0]
        assert [n.op_type for n in out.graph.node].count("Mul") == 1
        assert _relative_error(model, out, held_out) < 1e-5
        plain, smooth = _relative_error(model, _dynamic_int8(model), held_out), \
            _relative_error(model, _dynamic_int8(out), held_out)
        assert smooth < 0.5 * plain, (style, plain, smooth)


def test_an_input_without_outliers_or_with_a_shared_weight_is_left_alone():
    model = _two_readers_model()
    plain_feeds = [{"x": f["x"] / np.where(np.isin(np.arange(models.D), OUTLIERS), 40.0, 1.0).astype(np.float32)}
                   for f in _outlier_feeds(model, 8, seed=1)]
    assert smoothed(model, plain_feeds, bits=8, per_channel=True)[1] == 0
    shared = _two_readers_model(shared=True)
    assert "x" not in readers_by_input(shared)
    out, count, _ = smoothed(shared, _outlier_feeds(shared, 8, seed=1), bits=7, per_channel=True)
    assert count == 0 and out is shared


def test_the_quantize_pass_smooths_when_told_to_and_not_when_told_not_to():
    from calib import OrtCalibration, fidelity_probe

    model = _two_readers_model()
    judge = fidelity_probe(model, _outlier_feeds(model, 4, seed=9))
    graph = gs.import_onnx(model)
    ctx = PassContext(calibration=OrtCalibration(_outlier_feeds(model, 8, seed=1)), fidelity=judge,
                      options={"reduce_range": "true", "smooth": "true"})
    result = get_pass("quantize").run(graph, ctx)
    assert result.changed and result.stats["recipe"].startswith("dynamic (per-channel, smoothed")
    assert any(n.startswith("activation smoothing (SmoothQuant") for n in result.notes)
    assert "Mul" in [n.op for n in graph.nodes]
    graph = gs.import_onnx(model)
    off = PassContext(calibration=ctx.calibration, fidelity=judge, options={"reduce_range": "true", "smooth": "false"})
    assert get_pass("quantize").run(graph, off).stats["recipe"].startswith("dynamic (per-channel")
    assert "smoothed" not in get_pass("quantize").run(gs.import_onnx(model), off).stats["recipe"]


def test_by_default_smoothing_is_tried_only_where_int8_misses_the_floor_without_it():
    from calib import OrtCalibration, fidelity_probe

    model = _two_readers_model()
    judge = fidelity_probe(model, _outlier_feeds(model, 4, seed=9))
    plain = judge(gs.import_onnx(_dynamic_int8(model)))
    for floor, smoothed_too in ((plain - 0.01, False), (min(plain + 0.002, 0.9999), True)):
        ctx = PassContext(calibration=OrtCalibration(_outlier_feeds(model, 8, seed=1)), fidelity=judge,
                          options={"reduce_range": "true", "floor": floor})
        result = get_pass("quantize").run(gs.import_onnx(model), ctx)
        tried = any("every layer, on the search feeds" in n and "smoothed" in n for n in result.notes)
        assert tried == smoothed_too, (floor, result.notes)


def test_a_handful_of_calibration_inputs_is_too_few_to_smooth():
    from calib import OrtCalibration, fidelity_probe

    model = _two_readers_model()
    ctx = PassContext(calibration=OrtCalibration(_outlier_feeds(model, 4, seed=1)),
                      fidelity=fidelity_probe(model, _outlier_feeds(model, 4, seed=9)), options={"reduce_range": "true"})
    result = get_pass("quantize").run(gs.import_onnx(model), ctx)
    assert result.stats["recipe"] == "dynamic (per-channel)"
    assert any("activation smoothing not tried: 4 calibration inputs" in n for n in result.notes)


def _fused_attention_model():
    """ONNX Runtime's fused Attention (what the `fuse` pass makes of a BERT layer): one packed Q/K/V weight."""
    b = models.Builder(seed=6)
    weight, bias = b.const(b.weight((models.D, 3 * models.D))), b.const(b.weight((3 * models.D,), 0.1))
    y = b.op("Attention", ["x", weight, bias], domain="com.microsoft", num_heads=2)
    return b.model("x", y)


def test_a_fused_attention_input_is_smoothed_and_becomes_qattention():
    from calib import OrtCalibration, fidelity_probe

    model = _fused_attention_model()
    held_out = _outlier_feeds(model, 4, seed=9)
    out, count, _ = smoothed(model, _outlier_feeds(model, 8, seed=1), bits=7, per_channel=True)
    assert count == 1 and _relative_error(model, out, held_out) < 1e-5
    graph = gs.import_onnx(model)
    ctx = PassContext(calibration=OrtCalibration(_outlier_feeds(model, 8, seed=1)),
                      fidelity=fidelity_probe(model, held_out), options={"reduce_range": "true", "smooth": "true"})
    result = get_pass("quantize").run(graph, ctx)
    assert result.changed and "QAttention" in [n.op for n in graph.nodes]
    assert any(n.startswith("activation smoothing (SmoothQuant") for n in result.notes)


def _pre_norm_model(residual=False, decomposed=False):
    """x → LayerNorm (a few channels with a large scale, as trained LayerNorms have) → two linears; `residual`: the
    normalized x is also added to their sum (post-LayerNorm style: the division cannot fold into the norm);
    `decomposed`: the norm's affine as older exports write it, Mul(γ) then Add(β)."""
    b = models.Builder(seed=5)
    gamma = np.ones(models.D, np.float32)
    gamma[OUTLIERS] = 40.0
    if decomposed:
        normed = b.op("Add", [b.op("Mul", ["x", b.const(gamma)]), b.const(np.full(models.D, 0.1))])
    else:
        normed = b.op("LayerNormalization", ["x", b.const(gamma), b.const(np.zeros(models.D))], axis=-1)
    total = b.op("Add", [models.linear(b, normed, models.D, models.D, bias=False),
                         models.linear(b, normed, models.D, models.D, bias=False)])
    return b.model("x", b.op("Add", [total, normed]) if residual else total)


def test_a_pre_layernorm_input_is_smoothed_inside_its_norm_at_no_cost():
    for decomposed in (False, True):
        model = _pre_norm_model(decomposed=decomposed)
        feeds, held_out = models.feeds(model, 8, seed=1, seq=24), models.feeds(model, 4, seed=9, seq=24)
        out, count, notes = smoothed(model, feeds, bits=7, per_channel=True, free_only=True)
        assert count == 1 and "1 folded into their LayerNorm, 0 by a Mul" in notes[0]
        assert [n.op_type for n in out.graph.node] == [n.op_type for n in model.graph.node]
        assert _relative_error(model, out, held_out) < 1e-5
        assert _relative_error(model, _dynamic_int8(out), held_out) < \
            0.5 * _relative_error(model, _dynamic_int8(model), held_out)
    residual = _pre_norm_model(residual=True)
    assert smoothed(residual, feeds, bits=7, per_channel=True, free_only=True)[1] == 0
    out, count, notes = smoothed(residual, feeds, bits=7, per_channel=True)
    assert count == 1 and "0 folded into their LayerNorm, 1 by a Mul" in notes[0]


def test_by_default_free_smoothing_is_taken_even_where_int8_meets_the_floor():
    from calib import OrtCalibration, fidelity_probe

    model = _pre_norm_model()
    ctx = PassContext(calibration=OrtCalibration(models.feeds(model, 8, seed=1, seq=24)),
                      fidelity=fidelity_probe(model, models.feeds(model, 4, seed=9, seq=24)),
                      options={"reduce_range": "true"})
    result = get_pass("quantize").run(gs.import_onnx(model), ctx)
    assert result.stats["recipe"].startswith("dynamic (per-channel, smoothed in LayerNorms")
    assert any("1 folded into their LayerNorm" in n for n in result.notes)


def test_names_never_collide_and_graphs_with_subgraphs_or_exposed_constants_stay_exact():
    from onnx import TensorProto, helper

    rng = np.random.default_rng(3)
    def weight(name):
        return onnx.numpy_helper.from_array(rng.standard_normal((models.D, models.D)).astype(np.float32), name)
    gamma = np.ones(models.D, np.float32)
    gamma[OUTLIERS] = 40.0
    nodes = [helper.make_node("Mul", ["x", "gamma"], ["x_smoothed"]),                # a name the Mul would take
             helper.make_node("MatMul", ["x_smoothed", "w1"], ["a"]), helper.make_node("MatMul", ["x_smoothed", "w2"], ["b"]),
             helper.make_node("Add", ["a", "b"], ["y"])]
    shapes = {"y": [1, 24, models.D], "gamma": [models.D], "z": [models.D, models.D]}
    def value(name):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, shapes[name])
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 24, models.D])],
                              [value("y"), value("gamma")],                              # gamma is also an output
                              [weight("w1"), weight("w2"), onnx.numpy_helper.from_array(gamma, "gamma")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    feeds = [{"x": f["x"] / np.float32(40)} for f in _outlier_feeds(_two_readers_model(), 8, seed=1)]
    out, count, notes = smoothed(model, feeds, bits=7, per_channel=True)
    onnx.checker.check_model(out)
    assert count == 1 and "0 folded into their LayerNorm, 1 by a Mul" in notes[0]       # gamma stays as it is
    for feed in feeds[:2]:
        for want, got in zip(models.run(model, feed), models.run(out, feed), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    branch = helper.make_graph([helper.make_node("Identity", ["w1"], ["z"])], "then", [], [value("z")])
    looped = helper.make_model(helper.make_graph(
        nodes + [helper.make_node("If", ["cond"], ["z"], then_branch=branch, else_branch=branch)], "g",
        list(graph.input) + [helper.make_tensor_value_info("cond", TensorProto.BOOL, [])], [value("y"), value("z")],
        list(graph.initializer)), opset_imports=[helper.make_opsetid("", 17)])
    _, count, notes = smoothed(looped, feeds, bits=7, per_channel=True)
    assert count == 0 and "subgraphs" in notes[0]
