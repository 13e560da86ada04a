import numpy as np
import onnx_graphsurgeon as gs

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


def test_fuse_pass_fuses_a_real_bert_and_is_a_noop_elsewhere():
    from edgec.passes.fuse import FusePass

    b = models.Builder()
    graph = gs.import_onnx(b.model("x", b.op("Relu", ["x"])))
    result = FusePass().run(graph, PassContext())
    assert not result.changed and "nothing to fuse" in result.notes[0]


def test_static_qdq_quantizes_weights_and_activations_from_calibration():
    from calib import apply_pass, rel_err

    model = models.mlp_model("gelu", blocks=2)
    feeds = models.feeds(model, 8, seq=20)
    out, result = apply_pass("quantize", model, feeds, mode="static")
    ops = [n.op_type for n in out.graph.node]
    assert result.changed and result.stats["quantized"] == 4
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
