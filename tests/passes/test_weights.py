"""weights: Conv/MatMul/Gemm weights stored in 8 bits behind Cast·Mul, which ONNX Runtime folds at load."""

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import onnxruntime as ort
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from edgec.compiler.modelio import to_model
from edgec.passes import PassContext, get_pass

import models


def _stored(model: onnx.ModelProto, **options) -> tuple[onnx.ModelProto, dict, list[str]]:
    options.setdefault("edges_float", False)
    graph = gs.import_onnx(model)
    result = get_pass("weights").run(graph, PassContext(options=options))
    return to_model(graph, model), result.stats, result.notes


def _int8_bytes(model: onnx.ModelProto) -> int:
    return sum(nh.to_array(t).nbytes for t in model.graph.initializer if t.data_type == T.INT8)


def _float_bytes(model: onnx.ModelProto) -> int:
    return sum(nh.to_array(t).nbytes for t in model.graph.initializer if t.data_type == T.FLOAT)


def test_a_cnn_keeps_its_outputs_in_a_quarter_of_the_weight_bytes():
    model = models.wide_cnn_model()
    compiled, stats, _ = _stored(model, min_elements=64)
    assert stats["weights"] >= 5 and stats["worst_rel_error"] < 0.01
    assert _float_bytes(compiled) + _int8_bytes(compiled) < 0.35 * _float_bytes(model)
    x = {"x": np.random.default_rng(2).standard_normal((2, 3, 16, 16)).astype(np.float32)}
    ref, got = models.run(model, x)[0].ravel(), models.run(compiled, x)[0].ravel()
    assert ref @ got / (np.linalg.norm(ref) * np.linalg.norm(got)) > 0.999     # seven layers of rounded weights


@pytest.mark.parametrize("style, block", [("gemm", 32), ("matmul", 32), ("matmul", 0)])
def test_matmul_and_gemm_weights_are_scaled_per_output_column(style, block):
    model = models.mlp_model("gelu", style)
    compiled, stats, _ = _stored(model, min_elements=16, block=block)
    assert stats["weights"] >= 4
    for feed in models.feeds(model):
        ref, got = models.run(model, feed)[0], models.run(compiled, feed)[0]
        assert np.linalg.norm(got - ref) / np.linalg.norm(ref) < 0.01


def test_onnx_runtime_folds_the_restored_weights_when_it_loads_the_model(tmp_path):
    compiled, _, _ = _stored(models.wide_cnn_model(), min_elements=64)
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(compiled.SerializeToString(), options, providers=["CPUExecutionProvider"])
    optimized = onnx.load(str(tmp_path / "optimized.onnx"))
    assert not {n.op_type for n in optimized.graph.node} & {"Cast", "Reshape", "Transpose"}
    assert all(t.data_type == T.FLOAT for t in optimized.graph.initializer if t.dims and np.prod(t.dims) >= 64)


def test_the_layers_at_the_graph_inputs_and_outputs_stay_float_by_default():
    model = models.wide_cnn_model()
    every, _, _ = _stored(model, min_elements=64)
    inner, stats, _ = _stored(model, min_elements=64, edges_float=True)
    first_conv = next(n for n in model.graph.node if n.op_type == "Conv").input[1]
    head = next(n for n in model.graph.node if n.op_type == "Gemm").input[1]
    floats = {t.name for t in inner.graph.initializer if t.data_type == T.FLOAT}
    assert {first_conv, head} <= floats and 0 < _int8_bytes(inner) < _int8_bytes(every)


def test_a_weight_something_else_reads_too_stays_float():
    rng = np.random.default_rng(0)
    w = nh.from_array(rng.standard_normal((64, 64)).astype(np.float32), "w")
    graph = h.make_graph([h.make_node("MatMul", ["x", "w"], ["y"]), h.make_node("Add", ["y", "w"], ["z"])], "g",
                         [h.make_tensor_value_info("x", T.FLOAT, [64, 64])],
                         [h.make_tensor_value_info("z", T.FLOAT, [64, 64])], [w])
    compiled, stats, notes = _stored(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]))
    assert stats["weights"] == 0 and notes and _int8_bytes(compiled) == 0


def test_a_floor_above_what_the_probe_scores_keeps_the_float_weights():
    model = models.wide_cnn_model()
    graph = gs.import_onnx(model)
    result = get_pass("weights").run(graph, PassContext(options={"floor": 0.999, "min_elements": 64, "edges_float": False},
                                                        fidelity=lambda g: 0.99))
    assert not result.changed and "kept float" in result.notes[0]
    assert _int8_bytes(to_model(graph, model)) == 0


def test_a_filterbank_over_a_raw_signal_stays_float():
    rng = np.random.default_rng(0)
    basis = nh.from_array(rng.standard_normal((64, 1, 128)).astype(np.float32), "basis")
    mix = nh.from_array(rng.standard_normal((32, 64, 3)).astype(np.float32), "mix")
    graph = h.make_graph([h.make_node("Conv", ["x", "basis"], ["spectrum"], strides=[64]),
                          h.make_node("Conv", ["spectrum", "mix"], ["y"], pads=[1, 1])], "g",
                         [h.make_tensor_value_info("x", T.FLOAT, [1, 1, 1024])],
                         [h.make_tensor_value_info("y", T.FLOAT, [1, 32, 15])], [basis, mix])
    compiled, stats, _ = _stored(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]))
    assert stats["weights"] == 1 and "basis" in {t.name for t in compiled.graph.initializer if t.data_type == T.FLOAT}


def test_a_model_that_hands_its_state_to_the_next_run_keeps_float_weights():
    compiled, stats, notes = _stored(models.stateful_model())
    assert stats["weights"] == 0 and "state → stateN" in notes[0] and _int8_bytes(compiled) == 0


def test_below_the_floor_only_the_sensitive_weights_stay_float():
    model = models.wide_cnn_model()
    graph = gs.import_onnx(model)
    sensitive = [n for n in model.graph.node if n.op_type == "Conv"][2].input[1]
    # the probe's verdict: the graph falls below the floor whenever that one weight is rounded
    result = get_pass("weights").run(graph, PassContext(
        options={"floor": 0.995, "min_elements": 64, "edges_float": False},
        fidelity=lambda g: 0.999 if sensitive in g.tensors() else 0.9))
    compiled = to_model(graph, model)
    floats = {t.name for t in compiled.graph.initializer if t.data_type == T.FLOAT}
    assert result.changed and sensitive in floats and sensitive in result.notes[0]
    assert result.stats["kept_float"] == 1 and result.stats["weights"] >= 5
    assert result.stats["bytes_after"] < result.stats["bytes_before"] and _int8_bytes(compiled) > 0


def _embed_layer_norm_model(vocab: int = 300, hidden: int = 64, positions: int = 32) -> onnx.ModelProto:
    """input_ids → ONNX Runtime's fused EmbedLayerNormalization (word + position + segment tables, LayerNorm)."""
    r = np.random.default_rng(5)
    tables = {"word": r.standard_normal((vocab, hidden)), "position": r.standard_normal((positions, hidden)),
              "segment": r.standard_normal((2, hidden)), "gamma": np.ones(hidden), "beta": np.zeros(hidden)}
    node = h.make_node("EmbedLayerNormalization", ["ids", "", "word", "position", "segment", "gamma", "beta"],
                       ["y", "mask_index"], domain="com.microsoft", epsilon=1e-12)
    graph = h.make_graph([node], "embed", [h.make_tensor_value_info("ids", T.INT32, [1, 16])],
                         [h.make_tensor_value_info("y", T.FLOAT, [1, 16, hidden])],
                         [nh.from_array(v.astype(np.float32), k) for k, v in tables.items()])
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17), h.make_opsetid("com.microsoft", 1)])


def test_the_fused_embeddings_word_and_position_tables_are_stored_too():
    model = _embed_layer_norm_model()
    compiled, stats, _ = _stored(model, min_elements=1024)
    assert stats["weights"] == 2                                       # the segment table is too small to matter
    assert _float_bytes(compiled) < 0.35 * _float_bytes(model)
    feed = {"ids": np.arange(16, dtype=np.int32).reshape(1, 16) * 7}
    ref, got = models.run(model, feed)[0], models.run(compiled, feed)[0]
    assert np.linalg.norm(got - ref) / np.linalg.norm(ref) < 0.01
