"""Recovery distillation as a compile stage, and the unlabeled-data sources that feed it."""

import json
import sys

import numpy as np
import onnx
import pytest

import models
from clirun import run_cli

pytest.importorskip("torch")


def _compile(src, tmp_path, name, *extra):
    out = tmp_path / f"{name}.onnx"
    code, text = run_cli("compile", src, "--passes", "cleanup,prune", "--pass-option", "prune.keep=0.25",
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
    code, text = run_cli("compile", src, "--passes", "cleanup,prune,quantize", "--pass-option", "prune.keep=0.5",
                         "--recover", "--train-minutes", "0.02", "--no-measure", "--min-cosine", "0",
                         "-o", tmp_path / "q.onnx")
    assert code == 0, text
    report = json.loads((tmp_path / "q.report.json").read_text())
    assert [p["name"] for p in report["passes"]] == ["cleanup", "prune", "recover", "quantize"]


def test_a_graph_the_view_cannot_run_falls_back_to_block_wise_training(save, tmp_path):
    b = models.Builder(opset=20)
    x = "x"
    y = models.linear(b, models.activation(b, models.linear(b, x, models.D, models.H), "gelu"), models.H, models.D)
    b.inits.append(onnx.numpy_helper.from_array(np.array(2, np.int64), "axis"))
    y = b.op("CumSum", [b.op("Add", [x, y]), "axis"])
    src = save(b.model("x", y))
    out, report = _compile(src, tmp_path, "fallback", "--recover", "--train-minutes", "0.05")
    recover = report["passes"][-1]
    assert recover["stats"]["mode"] == "block-wise"
    assert "CumSum" in recover["notes"][0] and "block-wise" in recover["notes"][0]


def test_calib_text_needs_a_tokenizer(save, tmp_path):
    src = save(models.mlp_model("gelu"))
    (tmp_path / "t.txt").write_text("hello world\n")
    code, text = run_cli("compile", src, "--calib-text", tmp_path / "t.txt", "-o", tmp_path / "o.onnx")
    assert code == 2 and "--tokenizer" in text


def _token_specs():
    from edgec.runtime.inputs import InputSpec

    return [InputSpec(n, np.dtype(np.int64), ("batch", "sequence"))
            for n in ("input_ids", "attention_mask", "token_type_ids")]


def test_text_source_tokenizes_and_streams():
    pytest.importorskip("transformers")
    import tempfile
    from pathlib import Path

    from edgec.compiler.data_sources import text_source
    from edgec.samples.minilm import model_dir

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lines.txt"
        path.write_text("\n".join(f"sentence number {i} about something" for i in range(50)) + "\n")
        source = text_source(path, model_dir(), _token_specs(), count=10, batch=16)
        assert len(source.calibration) == 10
        assert set(source.calibration[0]) == {"input_ids", "attention_mask", "token_type_ids"}
        batches = list(source.training())
        assert [b["input_ids"].shape[0] for b in batches] == [16, 16, 8]      # the 40 lines after the first 10
        assert len(list(source.training())) == 3                              # a fresh stream each time


def test_image_source_resizes_to_the_input(tmp_path):
    from PIL import Image

    from edgec.compiler.data_sources import image_source
    from edgec.runtime.inputs import InputSpec

    for i in range(5):
        Image.fromarray(np.full((40, 50, 3), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
    spec = InputSpec("pixel_values", np.dtype(np.float32), ("batch", 3, 32, 32))
    source = image_source(tmp_path, [spec], count=3)
    assert [f["pixel_values"].shape for f in source.calibration] == [(1, 3, 32, 32)] * 3
    assert len(list(source.training())) == 2
    assert source.calibration[1]["pixel_values"].max() == pytest.approx(40 / 255)


def test_hook_source(tmp_path, monkeypatch):
    from edgec.compiler.data_sources import hook_source

    (tmp_path / "my_feeds.py").write_text(
        "import numpy as np\n"
        "def feeds(specs):\n"
        "    for i in range(6):\n"
        "        yield {'x': np.full((1, 4, 16), i, np.float32)}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    source = hook_source("my_feeds:feeds", [], count=4)
    assert len(source.calibration) == 4 and len(list(source.training())) == 2
    sys.modules.pop("my_feeds", None)


def test_a_corrupt_image_is_a_clear_error(tmp_path):
    from edgec.compiler.data_sources import image_source
    from edgec.compiler.errors import InputError
    from edgec.runtime.inputs import InputSpec

    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    spec = InputSpec("pixel_values", np.dtype(np.float32), ("batch", 3, 32, 32))
    with pytest.raises(InputError, match="broken.png: not a readable image"):
        image_source(tmp_path, [spec], count=3)


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
    code, text = run_cli("compile", src, "--passes", "cleanup,prune", "--calib-hook", "flaky_feeds:feeds",
                         "--calib-count", "24", "--recover", "--train-minutes", "0.05", "--no-measure",
                         "-o", tmp_path / "out.onnx")
    sys.modules.pop("flaky_feeds", None)
    assert code == 2, text
    assert "flaky_feeds:feeds failed: OSError: the camera went away" in text and "Traceback" not in text
    assert not (tmp_path / "out.onnx").exists()
