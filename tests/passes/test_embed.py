"""embed: large Gather tables in 8 or 4 bits, through GatherBlockQuantized or int8 + DequantizeLinear."""

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from edgec.compiler.modelio import to_model
from edgec.compiler.report.compile_report import ModelSummary
from edgec.passes import PassContext, get_pass
from edgec.runtime.session import SessionConfig, create_session

VOCAB, WIDTH = 2000, 64


def _text_model(tied: bool = False, rows: int = VOCAB) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    inits = [nh.from_array(rng.standard_normal((rows, WIDTH)).astype(np.float32), "word_embeddings"),
             nh.from_array(rng.standard_normal((16, WIDTH)).astype(np.float32), "position_embeddings"),
             nh.from_array(np.arange(8, dtype=np.int64).reshape(1, 8), "positions"),
             nh.from_array(rng.standard_normal((WIDTH, WIDTH)).astype(np.float32) / 8, "w")]
    nodes = [h.make_node("Gather", ["word_embeddings", "ids"], ["words"]),
             h.make_node("Gather", ["position_embeddings", "positions"], ["pos"]),
             h.make_node("Add", ["words", "pos"], ["x"]),
             h.make_node("MatMul", ["x", "w"], ["y"])]
    outputs = [h.make_tensor_value_info("y", T.FLOAT, [1, 8, WIDTH])]
    if tied:     # the table is also the output projection
        nodes.append(h.make_node("Gemm", ["y2d", "word_embeddings"], ["logits"], transB=1))
        nodes.insert(4, h.make_node("Reshape", ["y", "shape"], ["y2d"]))
        inits.append(nh.from_array(np.array([8, WIDTH], np.int64), "shape"))
        outputs = [h.make_tensor_value_info("logits", T.FLOAT, [8, rows])]
    graph = h.make_graph(nodes, "text", [h.make_tensor_value_info("ids", T.INT64, [1, 8])], outputs, inits)
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, ids: np.ndarray) -> np.ndarray:
    return create_session(model.SerializeToString(), SessionConfig()).run(None, {"ids": ids})[0]


@pytest.mark.parametrize("bits,fmt,tolerance", [(8, "gather", 0.01), (4, "gather", 0.2), (8, "dequantize", 0.02)])
def test_the_word_table_shrinks_and_the_model_computes_nearly_the_same(bits, fmt, tolerance):
    model = _text_model()
    graph = gs.import_onnx(model)
    result = get_pass("embed").run(graph, PassContext(options={"bits": bits, "format": fmt}))
    assert result.changed and [t["table"] for t in result.stats["tables"]] == ["word_embeddings"]
    if fmt == "gather":       # by default a scale per 128 values at 8 bits (here the whole row of 64), 32 at 4
        assert result.stats["tables"][0]["block"] == (64 if bits == 8 else 32)
    compiled = to_model(graph, model)
    ids = np.random.default_rng(1).integers(0, VOCAB, (1, 8))
    ref, got = _run(model, ids), _run(compiled, ids)
    assert np.linalg.norm(got - ref) / np.linalg.norm(ref) < tolerance
    before, after = ModelSummary.of(model).components, ModelSummary.of(compiled).components
    assert after["embedding tables"] < before["embedding tables"] * (0.3 if bits == 8 else 0.2)
    assert after["linear layers"] == before["linear layers"]      # the small position table stays float
    ops = {n.op_type for n in compiled.graph.node}
    assert ("GatherBlockQuantized" in ops) == (fmt == "gather")


def test_small_and_shared_tables_stay_float_with_a_note():
    for model, note in ((_text_model(rows=500), None), (_text_model(tied=True), "also feeds Gemm")):
        result = get_pass("embed").run(gs.import_onnx(model), PassContext())
        assert not result.changed
        if note:
            assert any(note in n for n in result.notes)


def test_a_floor_above_what_the_probe_scores_keeps_the_float_table():
    graph = gs.import_onnx(_text_model())
    result = get_pass("embed").run(graph, PassContext(options={"bits": 4, "floor": 0.999}, fidelity=lambda g: 0.99))
    assert not result.changed and result.stats["calibration_score"] == 0.99
    assert not any(n.op == "GatherBlockQuantized" for n in graph.nodes)
