"""--eval-text: a second held-out source of another domain, judged and gated like the held-out inputs."""

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from clirun import run_cli

pytest.importorskip("transformers")

VOCAB, D, HIDDEN = 30522, 16, 64      # the MiniLM tokenizer's vocabulary


def _token_model() -> onnx.ModelProto:
    """ids → embedding → an MLP block with a residual → mean over tokens."""
    rng = np.random.default_rng(0)
    inits = [nh.from_array(rng.standard_normal((VOCAB, D)).astype(np.float32), "emb"),
             nh.from_array(rng.standard_normal((D, HIDDEN)).astype(np.float32) / 4, "w1"),
             nh.from_array(np.zeros(HIDDEN, np.float32), "b1"),
             nh.from_array(rng.standard_normal((HIDDEN, D)).astype(np.float32) / 8, "w2"),
             nh.from_array(np.zeros(D, np.float32), "b2"), nh.from_array(np.array([1], np.int64), "axis1")]
    nodes = [h.make_node("Gather", ["emb", "input_ids"], ["x"]),
             h.make_node("MatMul", ["x", "w1"], ["h0"]), h.make_node("Add", ["h0", "b1"], ["h1"]),
             h.make_node("Relu", ["h1"], ["a"]), h.make_node("MatMul", ["a", "w2"], ["o0"]),
             h.make_node("Add", ["o0", "b2"], ["o1"]), h.make_node("Add", ["x", "o1"], ["r"]),
             h.make_node("Cast", ["attention_mask"], ["m"], to=T.FLOAT),
             h.make_node("Unsqueeze", ["m", "minus1"], ["m3"]), h.make_node("Mul", ["r", "m3"], ["rm"]),
             h.make_node("ReduceSum", ["rm", "axis1"], ["pooled"], keepdims=0)]
    inits.append(nh.from_array(np.array([-1], np.int64), "minus1"))
    inputs = [h.make_tensor_value_info(n, T.INT64, ["batch", "sequence"])
              for n in ("input_ids", "attention_mask", "token_type_ids")]
    graph = h.make_graph(nodes, "tokens", inputs, [h.make_tensor_value_info("pooled", T.FLOAT, ["batch", D])], inits)
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])


def _texts(tmp_path):
    prose = tmp_path / "prose.txt"
    prose.write_text("\n".join(f"the cat number {i} sat on the mat and looked at the rain" for i in range(40)) + "\n")
    code = tmp_path / "code.txt"
    code.write_text("\n".join(f"def f{i}(x): return x ** {i} % 7  # mod arithmetic" for i in range(12)) + "\n")
    return prose, code


def test_the_report_shows_fidelity_on_both_sources_and_the_gate_covers_the_second(save, tmp_path):
    from edgec.samples.minilm import model_dir

    model, (prose, code) = save(_token_model()), _texts(tmp_path)
    common = ["--calib-text", prose, "--tokenizer", model_dir(), "--passes", "cleanup,prune", "--no-measure",
              "--pass-option", "prune.keep=0.5"]
    code_, out = run_cli("compile", model, *common, "--eval-text", code, "--min-cosine", "0", "-o", tmp_path / "a.onnx")
    assert code_ == 0, out
    report = json.loads((tmp_path / "a.report.json").read_text())
    assert report["calibration"]["evaluation"] == 12 and "code.txt" in report["calibration"]["evaluation_source"]
    assert [f["name"] for f in report["fidelity_eval"]] == ["pooled"] and "inputs of" in out
    held_out, other = report["fidelity"][0]["score"], report["fidelity_eval"][0]["score"]
    assert other < held_out       # pruning fitted on prose carries less well to code
    gate = (held_out + other) / 2  # one the held-out inputs pass and the other domain fails: exit 1, named
    code_, out = run_cli("compile", model, *common, "--eval-text", code, "--min-cosine", str(gate),
                         "-o", tmp_path / "b.onnx")
    assert code_ == 1 and "code.txt" in out and not (tmp_path / "b.onnx").exists()


def test_eval_text_needs_a_tokenizer(save, tmp_path):
    model, (prose, code) = save(_token_model()), _texts(tmp_path)
    code_, out = run_cli("compile", model, "--calib", prose, "--eval-text", code)
    assert code_ == 2 and "--eval-text needs --tokenizer" in out
