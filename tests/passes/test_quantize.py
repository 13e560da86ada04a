import numpy as np
import onnx_graphsurgeon as gs
import pytest

from edgec.passes import PassContext, get_pass

import models


def test_int8_quantization_keeps_outputs_close():
    # 7-bit weights never saturate the int16 sums of x86 CPUs without VNNI: every CPU computes the same
    model = models.mlp_model("gelu", blocks=2)
    graph = gs.import_onnx(model)
    result = get_pass("quantize").run(graph, PassContext(options={"reduce_range": "true"}))
    out = gs.export_onnx(graph)
    out.ir_version = model.ir_version
    assert result.changed and result.stats["integer_ops"] == 4 and result.stats["reduce_range"] is True
    ops = {n.op_type for n in out.graph.node}
    assert "MatMulInteger" in ops and "DynamicQuantizeLinear" in ops
    assert [o.name for o in out.graph.output] == [o.name for o in model.graph.output]
    for f in models.feeds(model):
        ref, got = models.run(model, f)[0], models.run(out, f)[0]
        assert np.dot(ref.ravel(), got.ravel()) / (np.linalg.norm(ref) * np.linalg.norm(got)) > 0.999


def test_nothing_to_quantize_is_a_note():
    b = models.Builder()
    graph = gs.import_onnx(b.model("x", b.op("Relu", ["x"])))
    result = get_pass("quantize").run(graph, PassContext())
    assert not result.changed and result.notes


def test_a_model_that_hands_its_state_to_the_next_run_stays_float():
    graph = gs.import_onnx(models.stateful_model())
    result = get_pass("quantize").run(graph, PassContext(options={"reduce_range": "true"}))
    assert not result.changed and "state → stateN" in result.notes[0]


def test_fuse_pass_fuses_a_real_bert_and_is_a_noop_elsewhere():
    from edgec.passes.fuse import FusePass

    b = models.Builder()
    graph = gs.import_onnx(b.model("x", b.op("Relu", ["x"])))
    result = FusePass().run(graph, PassContext())
    assert not result.changed and "nothing to fuse" in result.notes[0]


def test_static_qdq_quantizes_weights_and_activations_from_calibration():
    from calib import apply_pass, fidelity_probe, rel_err

    model = models.mlp_model("gelu", blocks=2)
    feeds = models.feeds(model, 8, seq=20)
    judge = fidelity_probe(model, models.feeds(model, 4, seed=3, seq=20))
    out, result = apply_pass("quantize", model, feeds, judge=judge, mode="static")
    ops = [n.op_type for n in out.graph.node]
    assert result.changed and result.stats["quantized"] == 4
    # each calibration method with per-channel and per-tensor weights was scored, the best kept, and the best
    # with GPTQ-rounded weights
    assert any("static int8, every layer" in n and n.count(" per-") == 6 and "GPTQ-rounded" in n
               for n in result.notes), result.notes
    assert ops.count("QuantizeLinear") >= 4 and ops.count("DequantizeLinear") >= 8
    assert rel_err(model, out, models.feeds(model, 4, seed=5, seq=20)) < 0.05


def test_floor_keeps_the_float_graph_when_int8_falls_below_it():
    model = models.mlp_model("gelu", blocks=2)
    graph = gs.import_onnx(model)
    result = get_pass("quantize").run(graph, PassContext(options={"floor": 0.999}, fidelity=lambda g: 0.98))
    assert not result.changed and "int8 skipped" in result.notes[0]
    assert "MatMulInteger" not in {n.op for n in graph.nodes}
    result = get_pass("quantize").run(graph, PassContext(options={"floor": 0.95}, fidelity=lambda g: 0.98))
    assert result.changed and "MatMulInteger" in {n.op for n in graph.nodes}


def _opset18_normalize_head():
    """Add → LayerNormalization (a SkipLayerNormalization candidate) → an L2-normalize head as the dynamo
    exporter writes it at opset 18: ReduceL2 with axes as an input → Clip → Expand → Div."""
    import onnx

    b = models.Builder(opset=18)
    y = b.op("LayerNormalization", [b.op("Add", ["x", models.linear(b, "x", models.D, models.D)]),
                                    b.const(np.ones(models.D)), b.const(np.zeros(models.D))], axis=-1)
    b.inits.append(onnx.numpy_helper.from_array(np.array([-1], np.int64), "axes"))
    norm = b.op("Clip", [b.op("ReduceL2", [y, "axes"], keepdims=1), b.const(np.array(1e-12))])
    return b.model("x", b.op("Div", [y, b.op("Expand", [norm, b.op("Shape", [y])])]))


def test_opset18_reductions_get_shapes_so_the_optimizer_can_fuse():
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    from edgec.passes.fuse import FusePass
    from edgec.passes.ort_tools import opset18_reduction_shapes

    model = _opset18_normalize_head()
    before = SymbolicShapeInference._infer_impl
    with opset18_reduction_shapes():
        inferred = SymbolicShapeInference.infer_shapes(model, auto_merge=True)
    assert SymbolicShapeInference._infer_impl is before                       # the patch is undone
    shapes = {v.name: len(v.type.tensor_type.shape.dim) for v in inferred.graph.value_info}
    reduced = next(n.output[0] for n in model.graph.node if n.op_type == "ReduceL2")
    assert shapes[reduced] == 3
    result = FusePass().run(gs.import_onnx(model), PassContext())
    assert result.stats["fused"].get("SkipLayerNormalization") == 1


def test_reduce_range_follows_the_judging_cpu_unless_set():
    model = models.mlp_model("gelu", blocks=1)
    for saturates, option, expected in ((True, "auto", True), (False, "auto", False), (False, "true", True),
                                        (True, "false", False)):
        graph = gs.import_onnx(model)
        ctx = PassContext(options={"reduce_range": option}, int8_saturates=saturates)
        result = get_pass("quantize").run(graph, ctx)
        assert result.stats["reduce_range"] is expected
        assert any("VNNI" in n for n in result.notes) == (saturates and option == "auto")


def _cnn_pass(latency=None, judge=None, count=12, spread=1.0, alike=False, scored=0, **options):
    """The quantize pass on a small CNN; `spread`: calibration input k is scaled by spread**k; `alike`: every
    calibration input is the first one with a little noise."""
    from calib import OrtCalibration, fidelity_probe

    model = models.cnn_classifier_model()
    graph = gs.import_onnx(model)
    judge = judge or fidelity_probe(model, models.feeds(model, 4, seed=7))
    feeds = [{k: v * np.float32(spread ** i) for k, v in f.items()} for i, f in enumerate(models.feeds(model, count))]
    if alike:
        feeds = [{k: feeds[0][k] + np.float32(0.01) * v for k, v in f.items()} for f in feeds]
    ctx = PassContext(calibration=OrtCalibration(feeds, scored), fidelity=judge, latency=latency,
                      options={"floor": 0.99, **options})
    return graph, get_pass("quantize").run(graph, ctx)


def _qdq_fastest(graphs):
    """A latency probe for tests: the more Q/DQ-wrapped layers a graph has, the faster it 'runs'."""
    return [10.0 / (1 + sum(n.op == "QuantizeLinear" for n in g.nodes)) for g in graphs]


def test_auto_int8_of_a_cnn_is_static_qdq_with_batchnorm_folded_when_it_measures_fastest():
    graph, result = _cnn_pass(latency=_qdq_fastest)
    ops = [n.op for n in graph.nodes]
    assert result.changed and result.stats["recipe"].startswith("static")
    assert "BatchNormalization" not in ops and ops.count("Conv") == 2 and "QuantizeLinear" in ops
    assert any(k.startswith("dynamic (per-channel") for k in result.stats["latency_vs_float"])   # timed too
    assert result.stats["float_layers"] == []
    assert any("every layer, on the search feeds" in n for n in result.notes)   # calibration and scales chosen


def test_the_float_graph_stays_when_no_int8_measures_faster():
    graph, result = _cnn_pass(latency=lambda graphs: [1.0] + [0.99] * (len(graphs) - 1))   # 1 % is noise
    assert not result.changed and "QuantizeLinear" not in {n.op for n in graph.nodes}
    assert any("kept float" in n for n in result.notes)


def test_a_sensitive_layer_stays_float_and_the_rest_is_int8():
    def judge(graph):          # the Gemm head 'cannot' be int8: a model with it quantized scores 0.9
        return 0.9 if any(n.op == "Gemm" and n.inputs[1].inputs and n.inputs[1].inputs[0].op == "DequantizeLinear"
                          for n in graph.nodes) else 0.999

    graph, result = _cnn_pass(latency=_qdq_fastest, judge=judge, ops="Conv,Gemm", mode="static")
    assert result.changed and len(result.stats["float_layers"]) == 1 and result.stats["quantized"] == 2
    head = next(n for n in graph.nodes if n.op == "Gemm")
    assert not (head.inputs[1].inputs and head.inputs[1].inputs[0].op == "DequantizeLinear")
    assert any("mixed precision: 1 of 3 layers kept float" in n for n in result.notes)


def test_the_mixed_precision_searches_share_the_search_time():
    def judge(graph):          # as above: only the Gemm head's int8 fails the floor
        return 0.9 if any(n.op == "Gemm" and n.inputs[1].inputs and n.inputs[1].inputs[0].op == "DequantizeLinear"
                          for n in graph.nodes) else 0.999

    _, result = _cnn_pass(latency=_qdq_fastest, judge=judge, ops="Conv,Gemm", mode="static", search_seconds=0)
    assert not result.changed
    assert any("below the floor 0.995 within its share of the search time (0 s)" in n for n in result.notes)


def test_a_later_attempt_of_the_same_compile_reuses_the_scores_of_the_first():
    from calib import OrtCalibration

    judged = []
    def judge(graph):          # as above: only the Gemm head's int8 fails the floor
        judged.append(1)
        return 0.9 if any(n.op == "Gemm" and n.inputs[1].inputs and n.inputs[1].inputs[0].op == "DequantizeLinear"
                          for n in graph.nodes) else 0.999

    model = models.cnn_classifier_model()
    memo: dict = {}
    for floor in (0.99, 0.995):                # the step-back's second attempt: a tighter floor, the same graph
        ctx = PassContext(calibration=OrtCalibration(models.feeds(model, 12)), fidelity=judge, latency=_qdq_fastest,
                          options={"floor": floor, "ops": "Conv,Gemm", "mode": "static"}, memo=memo)
        before = len(judged)
        result = get_pass("quantize").run(gs.import_onnx(model), ctx)
        assert result.changed and len(result.stats["float_layers"]) == 1
        scored = len(judged) - before
    assert scored < 3            # the second: the per-method/scale variants only; every set of float layers known


def test_few_calibration_inputs_whose_ranges_disagree_leave_static_int8_out_with_a_note():
    _, result = _cnn_pass(latency=_qdq_fastest, count=6, spread=3.0)
    assert any("static int8 not tried: 6 calibration inputs" in n and "miss the other half" in n for n in result.notes)
    assert not result.stats.get("recipe", "").startswith("static")
    _, result = _cnn_pass(latency=_qdq_fastest, count=3)
    assert any("static int8 not tried: 3 calibration inputs" in n for n in result.notes)


def test_few_calibration_inputs_with_stable_ranges_still_get_static_int8():
    _, result = _cnn_pass(latency=_qdq_fastest, count=6, alike=True)
    assert any("static int8 tried on 6 calibration inputs" in n for n in result.notes)
    assert result.changed and result.stats["recipe"].startswith("static")


def test_an_already_quantized_model_is_left_alone():
    model = models.mlp_model("gelu", blocks=1)
    graph = gs.import_onnx(model)
    get_pass("quantize").run(graph, PassContext())
    result = get_pass("quantize").run(graph, PassContext())
    assert not result.changed and "already quantized" in result.notes[0]


def test_an_int8_gain_that_a_second_timing_does_not_repeat_keeps_the_float_graph():
    timings = iter([[10.0, 9.0, 9.0], [10.0, 10.5]])      # float, dynamic, static; then float, the chosen one

    def noisy(graphs):
        times = next(timings)
        return times[:len(graphs)] if len(times) >= len(graphs) else times + [times[-1]] * (len(graphs) - len(times))

    graph, result = _cnn_pass(latency=noisy)
    assert not result.changed and "QuantizeLinear" not in {n.op for n in graph.nodes}
    assert result.stats["latency_confirmed"] == 1.05
    assert any("then 1.050×" in n and "both timings" in n for n in result.notes)


def test_static_int8_keeps_half_the_error_budget_in_reserve_for_unseen_inputs():
    # its clipped activation ranges move unseen inputs more than the search feeds show: at 0.993 every layer's static
    # int8 meets the 0.99 floor on them, but not the 0.995 static must keep
    _, result = _cnn_pass(latency=_qdq_fastest, judge=lambda graph: 0.993, ops="Conv,Gemm", mode="static", mixed=False)
    assert not result.changed and any("below the floor 0.995" in n for n in result.notes)
    _, result = _cnn_pass(latency=_qdq_fastest, judge=lambda graph: 0.996, ops="Conv,Gemm", mode="static", mixed=False)
    assert result.changed


def _mlp_pass(latency):
    from calib import OrtCalibration, fidelity_probe

    model = models.mlp_model("relu", blocks=2)
    graph = gs.import_onnx(model)
    # 7-bit weights: int8 sums that never saturate, so the score is the same on x86 CPUs without VNNI
    ctx = PassContext(calibration=OrtCalibration(models.feeds(model, 12)), latency=latency,
                      options={"floor": 0.99, "reduce_range": "true"},
                      fidelity=fidelity_probe(model, models.feeds(model, 4, seed=7)))
    return get_pass("quantize").run(graph, ctx)


def test_static_int8_of_a_graph_without_convolutions_waits_for_dynamic_to_lose_on_speed():
    def qdq_only_fast(graphs):    # dynamic int8 as slow as float (its run-time quantizers), static QDQ twice as fast
        return [0.5 if any(n.op == "QuantizeLinear" for n in g.nodes) else 1.0 for g in graphs]

    result = _mlp_pass(qdq_only_fast)
    assert result.changed and result.stats["recipe"].startswith("static")
    assert any("static int8 tried after all" in n for n in result.notes)
    result = _mlp_pass(lambda graphs: [1.0] + [0.5] * (len(graphs) - 1))     # dynamic wins: static never built
    assert result.changed and result.stats["recipe"].startswith("dynamic")
    assert not any("static" in k for k in result.stats["latency_vs_float"])


def test_static_int8_is_scored_with_ranges_from_other_feeds_and_written_with_every_feeds_ranges():
    graph, result = _cnn_pass(latency=_qdq_fastest, spread=1.03, scored=4, calibrate="minmax")
    assert result.changed and result.stats["recipe"].startswith("static")
    assert any("scored on 4 calibration inputs with ranges from the other 8" in n for n in result.notes)
    model = models.cnn_classifier_model()
    feeds = [f["x"] * np.float32(1.03 ** i) for i, f in enumerate(models.feeds(model, 12))]
    scale = next(n for n in graph.nodes if n.op == "QuantizeLinear" and n.inputs[0].name == "x").inputs[1]
    assert _span(feeds[:8]) < float(scale.values) * 255 == pytest.approx(_span(feeds), rel=1e-3)   # every feed's
                                                                                                    # range


def _span(arrays) -> float:
    """The uint8 range of the arrays together: 0 included."""
    return max(float(max(a.max() for a in arrays)), 0.0) - min(float(min(a.min() for a in arrays)), 0.0)


def test_static_int8_falls_back_to_the_layers_where_the_wide_calibration_fails():
    # ONNX Runtime's calibrator cannot reduce an empty tensor: a Slice to nothing into a Concat (the wide set)
    from onnx import TensorProto, helper, numpy_helper

    from calib import OrtCalibration, fidelity_probe

    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.normal(0, 0.3, (4, 4, 3, 3)).astype(np.float32), f"w{i}") for i in range(2)]
    ints = [numpy_helper.from_array(np.array([v], np.int64), n) for n, v in (("zero", 0), ("one", 1))]
    nodes = [helper.make_node("Conv", ["x", "w0"], ["a"], pads=[1, 1, 1, 1]),
             helper.make_node("Slice", ["a", "zero", "zero", "one"], ["empty"]),
             helper.make_node("Concat", ["a", "empty"], ["c"], axis=1),
             helper.make_node("Conv", ["c", "w1"], ["y"], pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], weights + ints)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    feeds = [{"x": np.random.default_rng(i).normal(size=(1, 4, 8, 8)).astype(np.float32)} for i in range(16)]
    ctx = PassContext(calibration=OrtCalibration(feeds[:12]), fidelity=fidelity_probe(model, feeds[12:]),
                      latency=_qdq_fastest, options={"floor": 0.9, "mode": "static", "reduce_range": "true"})
    g = gs.import_onnx(model)
    result = get_pass("quantize").run(g, ctx)
    assert any("tried instead: the weighted layers alone" in n for n in result.notes), result.notes
    assert result.changed and "layers" in result.stats["recipe"]


def test_static_int8_of_a_cnn_also_scores_its_best_variant_with_bias_correction():
    _, result = _cnn_pass(latency=_qdq_fastest, scored=4)
    scored = next(n for n in result.notes if n.startswith("static int8, every layer"))
    listed = scored.rsplit(": ", 1)[0]                       # the variants scored, then the one chosen
    assert listed.count(", bias-corrected") == 1


def test_the_first_convolution_stays_float_where_the_model_times_faster_so():
    def slow_first_conv(graphs):      # as _qdq_fastest, but an int8 convolution on the raw input costs a lot
        def entry_int8(g):
            return any(n.op == "Conv" and n.inputs[0].inputs and n.inputs[0].inputs[0].op == "DequantizeLinear"
                       and n.inputs[0].inputs[0].inputs[0].inputs[0].op == "QuantizeLinear"
                       and n.inputs[0].inputs[0].inputs[0].inputs[0].inputs[0].name == "x" for n in g.nodes)
        return [t + (100.0 if entry_int8(g) else 0.0) for t, g in zip(_qdq_fastest(graphs), graphs, strict=True)]

    graph, result = _cnn_pass(latency=slow_first_conv, mode="static", ops="Conv,Gemm")
    assert result.changed and result.stats["recipe"].endswith("[input layers float]")
    assert len(result.stats["float_layers"]) == 1 and result.stats["quantized"] == 2
    assert any("(the input layers) because the model timed faster with them float" in n for n in result.notes)
    first = next(n for n in graph.nodes if n.op == "Conv")
    assert first.inputs[0].name == "x"                                         # float, on the raw input


def test_gptq_rounding_is_not_tried_when_turned_off():
    from calib import apply_pass, fidelity_probe

    model = models.mlp_model("gelu", blocks=2)
    judge = fidelity_probe(model, models.feeds(model, 4, seed=3, seq=20))
    _, on = apply_pass("quantize", model, models.feeds(model, 8, seq=20), judge=judge, mode="static")
    _, off = apply_pass("quantize", model, models.feeds(model, 8, seq=20), judge=judge, mode="static",
                        round_weights=False)
    assert any("GPTQ" in n for n in on.notes) and not any("GPTQ" in n for n in off.notes)
