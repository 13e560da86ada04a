"""Awkward but valid models, and broken ones: each is a no-op with a note or exit 2 — never a traceback."""

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper

import models
from clirun import run_cli
from conftest import sha256


def _compile(*args):
    return run_cli("compile", *args)


def _report(path):
    return json.loads(path.with_suffix(".report.json").read_text())


def _check_one_line(out: str) -> str:
    assert "Traceback" not in out
    lines = [x for x in out.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("edgec: error:"), out
    return lines[0]


def to_float16(model: onnx.ModelProto) -> onnx.ModelProto:
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for i, init in enumerate(model.graph.initializer):
        array = numpy_helper.to_array(init)
        if array.dtype == np.float32:
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(array.astype(np.float16), init.name))
    for value in [*model.graph.input, *model.graph.output]:
        value.type.tensor_type.elem_type = T.FLOAT16
    return model


def test_float16_model_compiles(save, tmp_path):
    src = save(to_float16(models.mlp_model("relu")))
    out = tmp_path / "o.onnx"
    code, text = _compile(src, "-o", out, "--runs", "3", "--min-cosine", "0.98")
    assert code == 0, text
    assert onnx.load(str(out)).graph.input[0].type.tensor_type.elem_type == T.FLOAT16


def test_float16_model_with_recovery_is_not_an_error(save, tmp_path):
    pytest.importorskip("torch")
    src = save(to_float16(models.mlp_model("relu")))
    out = tmp_path / "o.onnx"
    code, text = _compile(src, "-o", out, "--passes", "cleanup,prune", "--allow-synthetic", "--recover", "--train-minutes", "0.03",
                          "--no-measure", "--min-cosine", "0")
    assert code == 0, text
    assert onnx.load(str(out)).graph.input[0].type.tensor_type.elem_type == T.FLOAT16


def test_quantized_model_is_left_alone_with_a_note(save, tmp_path):
    model = models.mlp_model("relu")
    out = tmp_path / "q.onnx"
    assert _compile(save(model), "--passes", "cleanup,quantize", "-o", out, "--no-measure", "--min-cosine", "0",
                    "--allow-synthetic")[0] == 0
    code, text = _compile(out, "-o", tmp_path / "again.onnx", "--no-measure", "--min-cosine", "0")
    assert code == 0, text
    assert any("quantized layers" in n and "left alone" in n for n in _report(tmp_path / "again.onnx")["notes"])


def test_nan_weights_are_ordinary_constants_compared_as_equal(save, tmp_path):
    # -inf mask fills and NaN constants are ordinary in real exports: what matters is an output difference
    model = models.mlp_model("relu")
    array = numpy_helper.to_array(model.graph.initializer[0]).copy()
    array.flat[0] = np.nan
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(array, model.graph.initializer[0].name))
    code, out = _compile(save(model), "-o", tmp_path / "o.onnx", "--no-measure")
    assert code == 0, out


def test_unknown_custom_op_is_exit_2(save):
    node = h.make_node("Frobnicate", ["x"], ["y"], domain="com.example")
    graph = h.make_graph([node], "g", [h.make_tensor_value_info("x", T.FLOAT, [2])],
                         [h.make_tensor_value_info("y", T.FLOAT, [2])])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17), h.make_opsetid("com.example", 1)])
    code, out = _compile(save(model), "--no-measure")
    assert code == 2 and "cannot load" in _check_one_line(out)


def test_old_opset_is_exit_2(save):
    graph = h.make_graph([h.make_node("Relu", ["x"], ["y"])], "g", [h.make_tensor_value_info("x", T.FLOAT, [2])],
                         [h.make_tensor_value_info("y", T.FLOAT, [2])])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 6)])
    model.ir_version = 3
    code, out = _compile(save(model), "--no-measure")
    assert code == 2 and "opset 6" in _check_one_line(out)


def test_graph_without_nodes_is_a_noop(save, tmp_path):
    graph = h.make_graph([], "g", [h.make_tensor_value_info("x", T.FLOAT, [2])],
                         [h.make_tensor_value_info("x", T.FLOAT, [2])])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    code, out = _compile(save(model), "-o", tmp_path / "o.onnx", "--no-measure")
    assert code in (0, 2) and "Traceback" not in out


def test_external_data_model_and_missing_data(tmp_path):
    model = models.mlp_model("gelu")
    src = tmp_path / "ext.onnx"
    onnx.save_model(onnx.ModelProto.FromString(model.SerializeToString()), str(src), save_as_external_data=True,
                    all_tensors_to_one_file=True,
                    location="ext.onnx.data", size_threshold=0)
    out = tmp_path / "o.onnx"
    code, text = _compile(src, "-o", out, "--runs", "3")
    assert code == 0, text
    feed = models.feeds(model)[0]
    np.testing.assert_allclose(models.run(onnx.load(str(out)), feed)[0], models.run(model, feed)[0], atol=1e-4)
    (tmp_path / "ext.onnx.data").unlink()
    code, text = _compile(src, "-o", tmp_path / "o2.onnx", "--no-measure")
    assert code == 2 and "ext.onnx" in _check_one_line(text)


def test_large_models_are_saved_with_external_data(tmp_path, monkeypatch):
    import edgec.compiler.modelio as modelio

    monkeypatch.setattr(modelio, "_TWO_GB", 1024)
    model = models.mlp_model("relu")
    out = tmp_path / "big.onnx"
    size = modelio.save_model_atomic(model, out)
    assert (tmp_path / "big.onnx.data").exists() and size < model.ByteSize()
    feed = models.feeds(model)[0]
    np.testing.assert_array_equal(models.run(onnx.load(str(out)), feed)[0], models.run(model, feed)[0])
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def _if_model():
    """An If whose branches are small graphs: subgraphs must survive untouched."""
    then_graph = h.make_graph([h.make_node("Relu", ["x"], ["t"])], "then", [],
                              [h.make_tensor_value_info("t", T.FLOAT, ["n", 4])])
    else_graph = h.make_graph([h.make_node("Neg", ["x"], ["e"])], "else", [],
                              [h.make_tensor_value_info("e", T.FLOAT, ["n", 4])])
    nodes = [h.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
             h.make_node("Greater", ["s", "zero"], ["cond"]),
             h.make_node("If", ["cond"], ["y"], then_branch=then_graph, else_branch=else_graph)]
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", T.FLOAT, ["n", 4])],
                         [h.make_tensor_value_info("y", T.FLOAT, ["n", 4])],
                         [numpy_helper.from_array(np.array(0, np.float32), "zero")])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_models_with_subgraphs_keep_their_outputs(save, tmp_path):
    model = _if_model()
    out = tmp_path / "o.onnx"
    code, text = _compile(save(model), "-o", out, "--no-measure")
    assert code == 0, text
    compiled = onnx.load(str(out))
    assert any(n.op_type == "If" for n in compiled.graph.node)
    for sign in (1, -1):
        feed = {"x": sign * np.abs(np.random.default_rng(0).standard_normal((3, 4))).astype(np.float32)}
        np.testing.assert_array_equal(models.run(compiled, feed)[0], models.run(model, feed)[0])


def test_same_inputs_give_byte_identical_outputs(save, tmp_path):
    src = save(models.mlp_model("gelu", blocks=2))
    outs = []
    for i in range(2):
        out = tmp_path / f"o{i}.onnx"
        code, text = _compile(src, "-o", out, "--no-measure", "--passes", "cleanup,prune,lowrank", "--allow-synthetic",
                              "--pass-option", "prune.keep=0.5", "--min-cosine", "0", "--seed", "3")
        assert code == 0, text
        outs.append(sha256(out))
    assert outs[0] == outs[1]


def test_runtime_failure_on_synthesized_inputs_is_a_clear_error(save):
    b = models.Builder()
    idx = b.op("Cast", ["x"], to=T.INT64)
    b.inits.append(numpy_helper.from_array(np.array(7, np.int64), "seven"))
    y = b.op("Gather", [b.const(np.ones((1, 4))), b.op("Mul", [idx, "seven"])], axis=0)
    graph = h.make_graph(b.nodes, "g", [h.make_tensor_value_info("x", T.FLOAT, [2])],
                         [h.make_tensor_value_info(y, T.FLOAT, [2, 4])], b.inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    code, out = _compile(save(model), "--no-measure")
    line = _check_one_line(out)
    assert code == 2 and "synthesized inputs" in line and "--calib" in line
