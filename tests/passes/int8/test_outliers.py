"""Outlier channels computed apart before dynamic int8 (passes/int8/outliers.py): exact in float, a smaller int8
error where an input has a few huge channels, the float MatMuls left float, and the input model untouched."""

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from test_smooth import OUTLIERS, _dynamic_int8, _outlier_feeds, _relative_error

from edgec.passes import PassContext, get_pass
from edgec.passes.int8.outliers import split_outliers
from edgec.passes.int8.recipes import Int8Builder, Recipe

import models


def _readers_model(style="matmul", bias=True):
    """x read by two linears (as Q and V read one LayerNorm), each with its bias Add (Gemm: bias inside)."""
    b = models.Builder(seed=4)
    first = models.linear(b, "x", models.D, models.D, style, bias=bias)
    second = models.linear(b, "x", models.D, models.D, style, bias=bias)
    shape = ("rows", models.D) if style == "gemm" else ("batch", "seq", models.D)
    return b.model("x", b.op("Add", [first, second]), shape, shape)


def test_the_split_is_exact_in_float_and_quarters_the_int8_error_of_outlier_inputs():
    for style in ("matmul", "gemm"):
        model = _readers_model(style)
        before = model.SerializeToString()
        out, float_nodes, notes = split_outliers(model, _outlier_feeds(model, 8, seed=1), bits=7, per_channel=True)
        assert model.SerializeToString() == before                     # the input model is not modified
        onnx.checker.check_model(out)
        assert len(float_nodes) == 2 and "on 1 of 1 MatMul inputs" in notes[0], notes
        held_out = _outlier_feeds(model, 4, seed=9)
        assert _relative_error(model, out, held_out) < 1e-5
        with Int8Builder(model, Recipe("dynamic", ("MatMul", "Gemm"), reduce_range=True, outliers=True),
                         _outlier_feeds(model, 8, seed=1)) as builder:
            assert builder.float_only == float_nodes and not set(float_nodes) & set(builder.layers)
            split = builder.build()
        kept_float = [n.name for n in split.graph.node if n.op_type == "MatMul"]
        assert sorted(kept_float) == sorted(float_nodes)
        assert _relative_error(model, split, held_out) < 0.25 * _relative_error(model, _dynamic_int8(model), held_out)


def test_the_outlier_part_is_added_after_the_bias_so_the_bias_still_fuses():
    model = _readers_model("matmul")
    out, _, _ = split_outliers(model, _outlier_feeds(model, 8, seed=1), bits=7, per_channel=True)
    producers = {o: n for n in out.graph.node for o in n.output}
    for add in (n for n in out.graph.node if n.name.endswith("_outliers_add")):
        inlier_side = producers[add.input[0]]
        assert inlier_side.op_type == "Add" and producers[inlier_side.input[1]].op_type == "MatMul"


def test_inputs_without_outliers_and_old_opsets_are_left_alone():
    model = _readers_model("matmul")
    plain_feeds = models.feeds(model, 8, seed=1, seq=24)
    out, float_nodes, notes = split_outliers(model, plain_feeds, bits=8, per_channel=True)
    assert out is model and not float_nodes and "quartered" in notes[0]
    old = onnx.ModelProto()
    old.CopyFrom(model)
    old.opset_import[0].version = 10
    assert split_outliers(old, _outlier_feeds(model, 8, seed=1), bits=7, per_channel=True)[1] == []


def test_below_the_floor_the_quantize_pass_tries_the_split_and_reports_it():
    from calib import OrtCalibration, fidelity_probe

    model = _readers_model("matmul")
    judge = fidelity_probe(model, _outlier_feeds(model, 4, seed=9))
    ctx = PassContext(calibration=OrtCalibration(_outlier_feeds(model, 8, seed=1)), fidelity=judge,
                      options={"reduce_range": "true", "outliers": "true", "smooth": "false"})
    graph = gs.import_onnx(model)
    result = get_pass("quantize").run(graph, ctx)
    assert result.changed and result.stats["recipe"] == "dynamic (per-channel, outliers apart)"
    assert [n.op for n in graph.nodes].count("MatMul") == 2 and "Gather" in [n.op for n in graph.nodes]
    plain = judge(gs.import_onnx(_dynamic_int8(model)))
    ctx = PassContext(calibration=ctx.calibration, fidelity=judge,
                      options={"reduce_range": "true", "floor": min(plain + 0.002, 0.9999)})
    result = get_pass("quantize").run(gs.import_onnx(model), ctx)
    assert any("every layer, on the search feeds" in n and "outliers apart" in n for n in result.notes), result.notes


def test_a_magnitude_profile_with_one_huge_channel_picks_it():
    from edgec.passes.int8.outliers import best_outliers
    from edgec.passes.int8.smooth import statistics

    model = _readers_model("matmul", bias=False)
    feeds = _outlier_feeds(model, 8, seed=1)
    stats = statistics(model, ["x"], feeds)["x"]
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    matrices = [weights[n.input[1]] for n in model.graph.node if n.op_type == "MatMul"]
    chosen = best_outliers(stats, matrices, bits=7, per_channel=True)
    assert chosen is not None and set(OUTLIERS) <= set(chosen.tolist()) and np.all(np.diff(chosen) > 0)


def test_gemms_that_dynamic_int8_leaves_float_are_not_split():
    model = _readers_model("gemm")
    for node in model.graph.node:
        if node.op_type == "Gemm":
            node.attribute.append(onnx.helper.make_attribute("alpha", 0.5))   # ONNX Runtime keeps such a Gemm float
    out, float_nodes, _ = split_outliers(model, _outlier_feeds(model, 8, seed=1), bits=7, per_channel=True)
    assert out is model and float_nodes == []


def test_a_gemm_kept_float_by_mixed_precision_stays_float():
    model = _readers_model("gemm")
    with Int8Builder(model, Recipe("dynamic", ("MatMul", "Gemm"), reduce_range=True)) as builder:
        first, second = builder.layers
        ops = [n.op_type for n in builder.build([first]).graph.node]
    assert ops.count("MatMulInteger") + ops.count("DynamicQuantizeMatMul") == 1 and ops.count("MatMul") == 1  # float


def test_below_the_floor_every_variant_is_scored_and_those_at_the_floor_kept():
    from calib import OrtCalibration, fidelity_probe

    model = _readers_model("matmul")
    judge = fidelity_probe(model, _outlier_feeds(model, 4, seed=9))
    plain = judge(gs.import_onnx(_dynamic_int8(model)))
    ctx = PassContext(calibration=OrtCalibration(_outlier_feeds(model, 8, seed=1)), fidelity=judge,
                      options={"reduce_range": "true", "floor": min(plain + 0.002, 0.9999)})
    result = get_pass("quantize").run(gs.import_onnx(model), ctx)
    scored = next(n for n in result.notes if n.startswith("dynamic int8, every layer, on the search feeds: per-"))
    for variant in ("per-channel 0.", "per-channel, smoothed ", "per-channel, outliers apart ",
                    "per-channel, smoothed, outliers apart "):
        assert variant in scored, scored
    assert result.changed and result.stats["calibration_score"] >= min(plain + 0.002, 0.9999)
    assert result.stats["recipe"] != "dynamic (per-channel)"


def test_outliers_true_splits_and_falls_back_to_plain_int8_where_no_input_has_outliers():
    from calib import OrtCalibration, fidelity_probe

    model = _readers_model("matmul")
    feeds = _outlier_feeds(model, 8, seed=1)
    ctx = PassContext(calibration=OrtCalibration(feeds), fidelity=fidelity_probe(model, _outlier_feeds(model, 4, 9)),
                      options={"reduce_range": "true", "smooth": "false", "outliers": "true"})
    assert get_pass("quantize").run(gs.import_onnx(model), ctx).stats["recipe"].endswith("outliers apart)")
    plain_feeds = models.feeds(model, 8, seed=1, seq=24)         # no outliers: nothing to split, plain int8 instead
    ctx = PassContext(calibration=OrtCalibration(plain_feeds), fidelity=fidelity_probe(model, plain_feeds[:4]),
                      options={"reduce_range": "true", "smooth": "false", "outliers": "true"})
    result = get_pass("quantize").run(gs.import_onnx(model), ctx)
    assert result.changed and result.stats["recipe"] == "dynamic (per-channel)"
    assert any("quartered" in n for n in result.notes)
