"""The original model as the reference: the probe, the teacher and the capture it hands the passes."""

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest

from edgec.compiler.calibration.feeds import feed_set
from edgec.compiler.calibration.spec import CalibrationSpec
from edgec.compiler.reference import Reference
from edgec.runtime.session import SessionConfig, create_session

import models


def _reference(model, tmp_path, judged=None) -> Reference:
    session = create_session(model.SerializeToString(), SessionConfig())
    feeds = feed_set(session, 1000, CalibrationSpec(samples=12), 0, tmp_path / "m.onnx", [])
    return Reference(model, SessionConfig(), session, feeds, judged=judged)


def _scaled_fc2(graph: gs.Graph, scale: float) -> gs.Graph:
    matmuls = [n for n in graph.nodes if n.op == "MatMul"]
    weight = matmuls[1].inputs[1]
    matmuls[1].inputs[1] = gs.Constant(weight.name + ".scaled", np.asarray(weight.values * scale, np.float32))
    return graph


def test_the_probe_scores_the_original_as_exact_and_a_damaged_graph_lower(tmp_path):
    model = models.mlp_model("gelu", residual=False)
    reference = _reference(model, tmp_path)
    probe = reference.probe()
    assert probe(gs.import_onnx(model)) == 1.0
    assert probe(_scaled_fc2(gs.import_onnx(model), -1.0)) < 0.0       # the block's output points the other way
    assert probe.calls == 2


def test_the_teacher_gives_intermediates_on_any_feed_and_names_what_compression_changed(tmp_path):
    model = models.mlp_model("gelu", blocks=2)
    reference = _reference(model, tmp_path, judged=[model.graph.output[0].name])
    teacher = reference.teacher()
    hidden = next(n.output[0] for n in model.graph.node if n.op_type == "Gelu" or "Erf" in n.op_type)
    feed = models.feeds(model, 1, seed=7)[0]
    out, inner = teacher.run(feed, [model.graph.output[0].name, hidden])
    np.testing.assert_allclose(out, models.run(model, feed)[0], rtol=1e-6)
    assert inner.shape[-1] == models.H and teacher.has_tensor(hidden) and not teacher.has_tensor("nope")
    assert list(teacher.search_feeds) == reference.feeds.search and teacher.judged == [model.graph.output[0].name]
    changed = onnx.ModelProto()
    changed.CopyFrom(onnx.shape_inference.infer_shapes(model))
    first = changed.graph.initializer[0]
    first.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(first) * 2, first.name))
    assert teacher.changed_initializers(changed) == frozenset({first.name})


def test_the_capture_takes_statistics_over_the_fit_feeds_only(tmp_path):
    model = models.mlp_model("gelu", blocks=1)
    reference = _reference(model, tmp_path)
    capture = reference.capture()
    assert list(capture.feeds) == reference.feeds.fit
    name = model.graph.output[0].name
    gram = capture.grams(gs.import_onnx(model), [name])[name]
    rows = sum(int(np.prod(f["x"].shape[:-1])) for f in reference.feeds.fit)
    assert gram.rows == rows


def test_the_originals_outputs_are_run_once_per_feed_list_and_candidates_are_measured_against_them(tmp_path):
    model = models.mlp_model("gelu", residual=False)
    reference = _reference(model, tmp_path)
    feeds = reference.feeds.held_out[:3]
    first = reference.outputs_on(feeds)
    assert reference.outputs_on(feeds) is first                      # the same list: kept, not run again
    assert reference.outputs_on(list(feeds)) is not first            # another list: run anew, same numbers
    np.testing.assert_array_equal(reference.outputs_on(list(feeds))[0][0], first[0][0])
    assert reference.relative_change(model, feeds) == 0.0
    doubled = _doubled_output(model)
    assert reference.relative_change(doubled, feeds) == pytest.approx(1.0, rel=1e-5)
    assert reference.relative_change(doubled, feeds, pooled=True) == pytest.approx(1.0, rel=1e-5)
    assert [f.cosine for f in reference.compare(model, feeds)] == pytest.approx([1.0])
    assert reference.compare(doubled, feeds)[0].rel_l2 == pytest.approx(1.0, rel=1e-5)


def _doubled_output(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with its output times 2, under the same name."""
    graph = gs.import_onnx(model)
    out = graph.outputs[0]
    raw = gs.Variable(out.name + ".raw", dtype=out.dtype, shape=out.shape)
    graph.nodes[[i for i, n in enumerate(graph.nodes) if out in n.outputs][0]].outputs = [raw]
    graph.layer(op="Mul", inputs=[raw, np.asarray(2.0, np.float32)], outputs=[out])
    return gs.export_onnx(graph.cleanup().toposort())


def test_the_teacher_scores_a_probability_output_the_way_the_verification_does(tmp_path):
    b = models.Builder()
    model = b.model("x", b.op("Sigmoid", ["x"]))
    teacher = _reference(model, tmp_path).teacher()
    name = model.graph.output[0].name
    refs = [np.full((1, 4), 1e-4 + 1e-5 * i, np.float32) for i in range(8)]
    gots = [r + np.float32(2e-4) for r in refs]
    assert teacher.cosine(name, refs, gots, [{}] * 8) > 0.999          # 2e-4 of the unit interval, not 200 %
