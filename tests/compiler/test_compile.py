"""`edgec compile` end to end on models built in code."""

import json

import numpy as np
import onnx
import pytest

from edgec.passes import REGISTRY, PassResult

import models
from broken_passes import ZeroFirstFc2
from clirun import run_cli
from conftest import sha256


def _compile(*args):
    return run_cli("compile", *args)


@pytest.mark.parametrize("act, style", [("gelu", "matmul"), ("erf_new", "gemm"), ("tanh", "constant_node"),
                                        ("silu", "identity"), ("fastgelu", "matmul")])
def test_cleanup_only_keeps_outputs(save, tmp_path, act, style):
    model = models.mlp_model(act, style)
    src = save(model)
    before = sha256(src)
    out = tmp_path / "out.onnx"
    code, text = _compile(src, "--target", "arm", "--passes", "cleanup", "-o", out, "--runs", "5")
    assert code == 0, text
    assert sha256(src) == before
    compiled = onnx.load(str(out))
    for feed in models.feeds(model):
        np.testing.assert_allclose(models.run(compiled, feed)[0], models.run(model, feed)[0], atol=1e-5)
    report = json.loads((tmp_path / "out.report.json").read_text())
    assert report["ok"] and report["mlp_blocks"] == 2 and report["target"] == "arm"
    assert report["fidelity"][0]["cosine"] > 0.99999
    assert report["latency"]["runs"] == 5 and report["latency"]["ratio_p50"] > 0
    assert report["resources"]["seconds"] > 0 and report["resources"]["peak_memory_mb"] > 10   # this process's RSS
    assert "peak of" in text


def test_when_only_cleanup_changes_the_graph_the_original_bytes_are_written(save, tmp_path):
    model = models.mlp_model("silu", "identity")         # Identity nodes: cleanup removes them, nothing else changes
    src, out = save(model), tmp_path / "out.onnx"
    code, text = _compile(src, "--target", "arm", "--passes", "cleanup", "-o", out, "--no-measure",
                          "--report", tmp_path / "r.json")
    assert code == 0, text
    assert sha256(out) == sha256(src)
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["ok"] and any("only cleanup changed the graph" in n for n in report["notes"])


def test_no_mlp_model_is_a_noop_with_a_note(save, tmp_path):
    src = save(models.no_mlp_model())
    code, text = _compile(src, "-o", tmp_path / "out.onnx", "--no-measure", "--report", tmp_path / "r.json")
    assert code == 0, text
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["mlp_blocks"] == 0
    assert any("no MLP blocks found" in n for n in report["notes"])
    assert "no MLP blocks found" in text


def test_metadata_and_io_names_survive(save, tmp_path):
    model = models.mlp_model("relu")
    onnx.helper.set_model_props(model, {"author": "test", "license": "MIT"})
    model.doc_string = "a doc string"
    out = tmp_path / "out.onnx"
    assert _compile(save(model), "-o", out, "--no-measure")[0] == 0
    compiled = onnx.load(str(out))
    assert {p.key: p.value for p in compiled.metadata_props} == {"author": "test", "license": "MIT"}
    assert compiled.doc_string == "a doc string"
    assert [i.name for i in compiled.graph.input] == [i.name for i in model.graph.input]
    assert [o.name for o in compiled.graph.output] == [o.name for o in model.graph.output]


def test_a_pass_that_breaks_numbers_fails_the_gate(save, tmp_path, monkeypatch):
    monkeypatch.setitem(REGISTRY, "break", ZeroFirstFc2)
    out = tmp_path / "out.onnx"
    code, text = _compile(save(models.mlp_model("gelu", residual=False)), "--passes", "break", "--allow-synthetic", "-o", out,
                          "--no-measure")
    assert code == 1
    assert not out.exists()
    assert "below the gate" in text
    report = json.loads((tmp_path / "out.report.json").read_text())
    assert not report["ok"] and report["fidelity"][0]["cosine"] < 0.99
    code, _ = _compile(save(models.mlp_model("gelu", residual=False), "again"), "--passes", "break", "--allow-synthetic", "-o", out,
                       "--no-measure", "--min-cosine", "0")
    assert code == 0 and out.exists()


def test_calibration_npz_is_used_and_split(save, tmp_path):
    model = models.mlp_model("gelu")
    calib = tmp_path / "calib.npz"
    np.savez(calib, x=np.random.default_rng(0).standard_normal((12, 7, models.D)).astype(np.float32))
    code, text = _compile(save(model), "--calib", calib, "-o", tmp_path / "o.onnx", "--no-measure",
                          "--format", "json")
    assert code == 0, text
    report = json.loads(text)
    assert report["calibration"] == {"source": str(calib), "calibration": 8, "held_out": 4}


def test_the_originals_outputs_are_computed_once_and_kept_aligned(save, tmp_path):
    import onnxruntime as ort

    from edgec.compiler.calibration.feeds import feed_set
    from edgec.compiler.calibration.spec import CalibrationSpec

    path = save(models.mlp_model("gelu"))
    calib = tmp_path / "calib.npz"
    np.savez(calib, x=np.random.default_rng(0).standard_normal((12, 7, models.D)).astype(np.float32))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    split = feed_set(session, 1000, CalibrationSpec(npz=calib), 0, path, [])
    search = split.search
    assert len(split.held_out_outputs) == len(split.held_out) == 4 and len(split.search_outputs) == len(search) == 4
    for feeds, outputs in ((split.held_out, split.held_out_outputs), (search, split.search_outputs)):
        for feed, kept in zip(feeds, outputs, strict=True):
            np.testing.assert_array_equal(kept[0], session.run(None, feed)[0])


class _MakeSlower:
    """Adds a heavy branch scaled by zero: same outputs, much slower (a CI machine where Ray's processes are still
    shutting down from an earlier test must not read it as noise)."""

    name = "slower"
    needs: frozenset[str] = frozenset()
    lossless = False

    def run(self, graph, ctx):
        import onnx_graphsurgeon as gs

        out = graph.outputs[0]
        z = out
        pre = gs.Variable("pre_slow", dtype=np.float32)
        graph.nodes[-1].outputs[0] = pre if graph.nodes[-1].outputs[0] is out else graph.nodes[-1].outputs[0]
        z = pre
        widths = [models.D] + [512] * 11 + [models.D]      # ~3 M multiply-adds a row: slower beyond any noise
        rng = np.random.default_rng(0)
        for i in range(12):
            w = gs.Constant(f"slow_w{i}", (0.01 * rng.standard_normal(widths[i:i + 2])).astype(np.float32))
            nxt = gs.Variable(f"slow_{i}", dtype=np.float32)
            graph.nodes.append(gs.Node("MatMul", inputs=[z, w], outputs=[nxt]))
            z = nxt
        scaled = gs.Variable("slow_scaled", dtype=np.float32)
        graph.nodes.append(gs.Node("Mul", inputs=[z, gs.Constant("zero", np.zeros(1, np.float32))], outputs=[scaled]))
        graph.nodes.append(gs.Node("Add", inputs=[pre, scaled], outputs=[out]))
        return PassResult(changed=True)


def test_a_slower_compile_is_rolled_back(save, tmp_path, monkeypatch):
    monkeypatch.setitem(REGISTRY, "slower", _MakeSlower)
    src = save(models.mlp_model("relu", blocks=1))
    out = tmp_path / "out.onnx"
    code, text = _compile(src, "--passes", "slower", "--allow-synthetic", "-o", out, "--runs", "40", "--format", "json")
    assert code == 0, text
    report = json.loads(text)
    assert report["rolled_back"] and report["latency"]["ratio_p50"] > 1
    assert out.read_bytes() == onnx.load(str(src)).SerializeToString()
    code, text = _compile(src, "--passes", "slower", "--allow-synthetic", "-o", out, "--runs", "10", "--allow-slower", "--force",
                          "--format", "json")
    assert code == 0 and not json.loads(text)["rolled_back"]
    assert sum(n.op_type == "MatMul" for n in onnx.load(str(out)).graph.node) > 12


def test_token_ids_are_synthesized_inside_a_small_vocabulary(save, tmp_path):
    from onnx import TensorProto as T
    from onnx import helper as h
    from onnx import numpy_helper

    table = numpy_helper.from_array(np.random.default_rng(0).standard_normal((37, models.D)).astype(np.float32), "emb")
    graph = h.make_graph([h.make_node("Gather", ["emb", "input_ids"], ["y"])], "g",
                         [h.make_tensor_value_info("input_ids", T.INT64, ["batch", "sequence"])],
                         [h.make_tensor_value_info("y", T.FLOAT, ["batch", "sequence", models.D])], [table])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    code, text = _compile(save(model), "-o", tmp_path / "o.onnx", "--no-measure")
    assert code == 0, text


def test_goal_search_keeps_the_best_pipeline_or_exits_1(save, tmp_path):
    src = save(models.mlp_model("gelu", blocks=2))
    out = tmp_path / "goal.onnx"
    code, text = _compile(src, "--goal", "size=0.9", "--allow-synthetic", "-o", out, "--runs", "5", "--min-cosine", "0.9")
    assert code == 0, text
    assert "meets the goal" in text and out.exists()
    assert "goal size=0.9: chose" in json.loads(out.with_suffix(".report.json").read_text())["notes"][-1]
    code, text = _compile(src, "--goal", "speedup=1000", "--allow-synthetic", "-o", tmp_path / "g2.onnx", "--runs", "5")
    assert code == 1 and "no pipeline meets --goal speedup=1000" in text
    code, text = _compile(src, "--goal", "faster=yes")
    assert code == 2 and "expected speedup=2" in text


def test_markdown_report(save, tmp_path):
    src = save(models.mlp_model("gelu"))
    report = tmp_path / "report.md"
    code, text = _compile(src, "--allow-synthetic", "-o", tmp_path / "o.onnx", "--runs", "3", "--report", report)
    assert code == 0, text
    md = report.read_text()
    assert md.startswith("# edgec compile → x86") and "| latency p50 (ms) |" in md
    assert "| cosine | worst cosine |" in md and "pass **prune**" in md


def test_goal_search_with_recovery_trains_every_compressing_candidate(save, tmp_path):
    pytest.importorskip("torch")
    src = save(models.mlp_model("gelu", blocks=2))
    out = tmp_path / "goal.onnx"
    code, text = _compile(src, "--goal", "size=0.9", "--allow-synthetic", "--recover", "--train-minutes", "0.01", "-o", out,
                          "--runs", "3", "--min-cosine", "0.9", "--format", "json")
    assert code == 0, text
    report = json.loads(text[text.index("{"):])                     # stdout is one JSON document
    chosen = next(c for c in report["candidates"] if c["chosen"])
    names = [p["name"] for p in report["passes"]]
    assert ("prune" in names) == ("recover" in names)           # a pruned winner was trained before int8
    if "quantize" in names and "recover" in names:
        assert names.index("recover") < names.index("quantize")
    assert chosen["ok"] and chosen["bytes_ratio"] <= 0.9


def test_without_real_inputs_weights_are_stored_in_8_bits_at_the_tighter_floor(save, tmp_path):
    from edgec.passes.weights import SYNTHESIZED_FLOOR

    b, x = models.Builder(0), "x"
    for n_in, n_out in [(16, 64), (64, 64), (64, 64)]:       # the last two are stored in 8 bits
        x = b.op("Relu", [models.linear(b, x, n_in, n_out)])
    x = models.linear(b, x, 64, 16)
    src = save(b.model("x", x))
    code, text = _compile(src, "--target", "x86", "-o", tmp_path / "out.onnx", "--no-measure",
                          "--report", tmp_path / "r.json")
    assert code == 0, text
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["calibration"]["source"] == "synthesized"
    ran = {p["name"]: p for p in report["passes"]}
    assert set(ran) == {"cleanup", "weights"}            # prune, quantize and embed need real inputs
    assert ran["weights"]["changed"], (ran["weights"]["notes"], ran["weights"]["stats"])
    assert ran["weights"]["stats"]["calibration_score"] >= SYNTHESIZED_FLOOR
    assert any("only lossless passes and weights" in n for n in report["notes"])
    assert (tmp_path / "out.onnx").stat().st_size < 0.6 * src.stat().st_size
