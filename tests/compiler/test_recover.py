"""Recovery distillation as a compile stage (the data sources that feed it: test_data_sources.py)."""

import json
import sys

import onnx
import pytest

import models
from clirun import run_cli

pytest.importorskip("torch")


def _compile(src, tmp_path, name, *extra):
    out = tmp_path / f"{name}.onnx"
    code, text = run_cli("compile", src, "--allow-synthetic", "--passes", "cleanup,prune", "--pass-option", "prune.keep=0.25",
                         "--no-measure", "--min-cosine", "0", "-o", out, *extra)
    assert code == 0, text
    return out, json.loads(out.with_suffix(".report.json").read_text())


def test_recover_trains_the_weights_and_keeps_the_structure(save, tmp_path):
    src = save(models.mlp_model("gelu", blocks=2))
    plain, plain_report = _compile(src, tmp_path, "plain")
    out, report = _compile(src, tmp_path, "recovered", "--recover", "--train-minutes", "0.15",
                           "--pass-option", "recover.lr=0.003", "--pass-option", "recover.eval_every=10")
    assert [p["name"] for p in report["passes"]] == ["cleanup", "prune", "recover"]
    stats = report["passes"][-1]["stats"]
    assert stats["round_trip_rel_error"] <= 1e-5 and stats["steps"] > 10
    assert stats["held_out_best"] > stats["held_out_before"]
    assert [n.op_type for n in onnx.load(str(out)).graph.node] == [n.op_type for n in onnx.load(str(plain)).graph.node]
    assert report["fidelity"][0]["cosine"] > plain_report["fidelity"][0]["cosine"]


def test_recover_runs_before_quantize(save, tmp_path):
    src = save(models.mlp_model("gelu", blocks=1))
    code, text = run_cli("compile", src, "--allow-synthetic", "--passes", "cleanup,prune,quantize", "--pass-option", "prune.keep=0.5",
                         "--recover", "--train-minutes", "0.02", "--no-measure", "--min-cosine", "0",
                         "-o", tmp_path / "q.onnx")
    assert code == 0, text
    report = json.loads((tmp_path / "q.report.json").read_text())
    assert [p["name"] for p in report["passes"]] == ["cleanup", "prune", "recover", "quantize"]


def test_a_graph_the_view_cannot_run_falls_back_to_block_wise_training(save, tmp_path):
    b = models.Builder(opset=20)
    x = "x"
    y = models.linear(b, models.activation(b, models.linear(b, x, models.D, models.H), "gelu"), models.H, models.D)
    y = b.op("Hardmax", [b.op("Add", [x, y])])
    src = save(b.model("x", y))
    out, report = _compile(src, tmp_path, "fallback", "--recover", "--train-minutes", "0.05")
    recover = report["passes"][-1]
    assert recover["stats"]["mode"] == "block-wise"
    assert any("Hardmax" in n and "fell back to block-wise" in n for n in recover["notes"])


def test_an_operator_variant_the_view_fails_on_falls_back_with_a_note(save, tmp_path, monkeypatch):
    from edgec.passes.training import ops as torch_ops

    def declined(inputs, attrs):
        raise NotImplementedError("this Gelu variant")

    monkeypatch.setitem(torch_ops.OPS, "Gelu", declined)
    src = save(models.mlp_model("gelu", blocks=1))
    _, report = _compile(src, tmp_path, "declined", "--recover", "--train-minutes", "0.02")
    recover = report["passes"][-1]
    assert recover["stats"]["mode"] == "block-wise"
    assert any("cannot run this graph (NotImplementedError: this Gelu variant)" in n for n in recover["notes"])


def test_a_model_exported_for_batch_one_trains_on_feeds_one_at_a_time(save, tmp_path):
    model = models.mlp_model("gelu", blocks=1)
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    _, report = _compile(save(model), tmp_path, "batch1", "--recover", "--train-minutes", "0.05")
    stats = report["passes"][-1]["stats"]
    assert "mode" not in stats and stats["steps"] > 0 and stats["round_trip_rel_error"] <= 1e-5


@pytest.mark.parametrize("second, mode", [(1e-7, "whole-model"), (3e-4, "block-wise")])
def test_a_failed_round_trip_is_measured_again_before_falling_back(save, tmp_path, monkeypatch, second, mode):
    from edgec.passes.training import round_trip

    readings = iter([(5e-4, "y"), (second, "y")])
    monkeypatch.setattr(round_trip, "view_error", lambda view, model, feeds: next(readings))
    src = save(models.mlp_model("gelu", blocks=1))
    _, report = _compile(src, tmp_path, mode, "--recover", "--train-minutes", "0.02",
                         "--pass-option", "recover.blockwise=0")          # the round trip's notes come first
    stats, notes = report["passes"][-1]["stats"], report["passes"][-1]["notes"]
    assert next(readings, None) is None                                   # measured exactly twice
    if mode == "whole-model":
        assert stats["round_trip_rel_error"] == 1e-7 and "first measured 5.0e-04" in notes[0]
    else:
        assert stats["mode"] == "block-wise" and "3.0e-04 (relative, on 'y'; 5.0e-04 when first" in notes[0]


def test_calib_text_needs_a_tokenizer(save, tmp_path):
    src = save(models.mlp_model("gelu"))
    (tmp_path / "t.txt").write_text("hello world\n")
    code, text = run_cli("compile", src, "--calib-text", tmp_path / "t.txt", "-o", tmp_path / "o.onnx")
    assert code == 2 and "--tokenizer" in text


def test_a_hook_that_fails_mid_stream_is_an_input_error(save, tmp_path, monkeypatch):
    (tmp_path / "flaky_feeds.py").write_text(
        "import numpy as np\n"
        "def feeds(specs):\n"
        "    for i in range(40):\n"
        "        if i == 30:\n"
        "            raise OSError('the camera went away')\n"
        "        yield {'x': np.random.default_rng(i).standard_normal((1, 5, 16)).astype(np.float32)}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    src = save(models.mlp_model("gelu", blocks=1))
    code, text = run_cli("compile", src, "--allow-synthetic", "--passes", "cleanup,prune", "--calib-hook", "flaky_feeds:feeds",
                         "--calib-count", "24", "--recover", "--train-minutes", "0.05", "--no-measure",
                         "-o", tmp_path / "out.onnx")
    sys.modules.pop("flaky_feeds", None)
    assert code == 2, text
    assert "flaky_feeds:feeds failed: OSError: the camera went away" in text and "Traceback" not in text
    assert not (tmp_path / "out.onnx").exists()


def test_the_report_says_where_recovery_trained(save, tmp_path):
    src = save(models.mlp_model("gelu"))
    _, report = _compile(src, tmp_path, "cpu", "--recover", "--train-steps", "3", "--train-device", "cpu")
    assert report["passes"][-1]["stats"]["device"] == "cpu"


def test_train_device_cuda_without_cuda_is_an_input_error(save, tmp_path, monkeypatch):
    from edgec.passes.training import device

    monkeypatch.setattr(device, "cuda_available", lambda: False)
    code, text = run_cli("compile", save(models.mlp_model("gelu")), "--allow-synthetic", "--recover",
                         "--train-device", "cuda", "-o", tmp_path / "out.onnx")
    assert code == 2 and "--train-device cuda" in text and "Traceback" not in text
    assert not (tmp_path / "out.onnx").exists()


def test_a_block_wise_phase_trains_the_mlp_blocks_on_the_originals_activations_first(save, tmp_path):
    src = save(models.mlp_model("gelu", blocks=2))
    _, report = _compile(src, tmp_path, "phased", "--recover", "--train-steps", "40",
                         "--pass-option", "recover.blockwise=0.5", "--pass-option", "recover.eval_every=10")
    stats, notes = report["passes"][-1]["stats"], report["passes"][-1]["notes"]
    blocks = stats["blockwise"]["blocks"]
    assert len(blocks) == 2 and stats["blockwise"]["rows"] > 0
    assert all(b["rel_error_after"] <= b["rel_error_before"] and b["steps"] == 10 for b in blocks)   # 20 steps, 2 blocks
    assert stats["steps"] == 20 and notes[0].startswith("block-wise: 2 MLP blocks")              # then end to end


def test_without_an_mlp_block_the_block_wise_share_goes_to_end_to_end_training(save, tmp_path):
    src = save(models.wide_cnn_model())
    out = tmp_path / "cnn.onnx"
    code, text = run_cli("compile", src, "--allow-synthetic", "--passes", "cleanup,channels,recover", "--pass-option",
                         "channels.keep=0.5", "--pass-option", "channels.scope=layer", "--no-measure", "--min-cosine", "0",
                         "--train-steps", "6", "--pass-option", "recover.blockwise=0.5", "-o", out)
    assert code == 0, text
    stats = json.loads(out.with_suffix(".report.json").read_text())["passes"][-1]["stats"]
    assert "blockwise" not in stats and stats["steps"] == 6


def test_the_block_wise_phase_keeps_a_sparse_pass_zeros_and_skips_untouched_blocks(save, tmp_path):
    import numpy as np
    from onnx import numpy_helper

    src = save(models.mlp_model("gelu", blocks=2))
    out = tmp_path / "sparse.onnx"
    code, text = run_cli("compile", src, "--allow-synthetic", "--passes", "cleanup,sparse", "--no-measure",
                         "--min-cosine", "0", "--train-steps", "20", "-o", out)
    assert code == 0, text
    stats = json.loads(out.with_suffix(".report.json").read_text())["passes"][-1]["stats"]
    assert stats["blockwise"]["blocks"]
    weights = [numpy_helper.to_array(i) for i in onnx.load(str(out)).graph.initializer if len(i.dims) == 2]
    assert all(np.mean(w == 0) >= 0.5 for w in weights if w.size >= models.D * models.H)
    _, untouched = _compile(src, tmp_path, "untouched", "--recover", "--train-steps", "5",
                            "--pass-option", "prune.keep=1.0")
    assert "blockwise" not in untouched["passes"][-1]["stats"]
