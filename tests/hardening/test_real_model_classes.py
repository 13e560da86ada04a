"""The failure classes real third-party models showed: each compiles now, or exits 2 naming the fix."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from clirun import run_cli
from real_model_shapes import ir3_model, masked_model, ml_only_model, sample_rate_model, unnamed_model


def _calib(tmp_path, model: onnx.ModelProto, rows: int = 64, name: str = "calib.npz"):
    dims = [d.dim_value or rows for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(1).standard_normal([rows if i == 0 else d for i, d in enumerate(dims)])
    path = tmp_path / name
    np.savez(path, **{model.graph.input[0].name: x.astype(np.float32)})
    return path


def _runs(path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_an_ir3_model_with_initializers_among_its_inputs_compiles(save, tmp_path):
    model = ir3_model()
    out = tmp_path / "o.onnx"
    items = {f"{i}/x": np.random.default_rng(i).standard_normal((4, 16)).astype(np.float32) for i in range(24)}
    np.savez(tmp_path / "c.npz", **items)
    code, text = run_cli("compile", save(model), "--calib", tmp_path / "c.npz", "--passes", "cleanup,prune",
                         "--pass-option", "prune.keep=0.5", "--min-cosine", "0", "-o", out, "--no-measure")
    assert code == 0, text
    compiled = onnx.load(str(out))
    onnx.checker.check_model(compiled)
    assert compiled.graph.node and _runs(out).run(None, {"x": items["0/x"]})[0].shape == (4, 16)


def test_minus_infinity_constants_are_ordinary_and_compared_as_equal(save, tmp_path):
    model = masked_model()
    code, text = run_cli("compile", save(model), "--calib", _calib(tmp_path, model), "-o", tmp_path / "o.onnx",
                         "--no-measure", "--format", "json")
    assert code == 0, text
    assert "NaN" not in text or "holds NaN" not in text


def test_a_model_with_only_the_ml_domain_is_a_no_op_not_an_error(save, tmp_path):
    code, text = run_cli("compile", save(ml_only_model()), "-o", tmp_path / "o.onnx", "--no-measure")
    assert code == 0, text


def test_unnamed_nodes_get_unique_names_in_a_low_rank_rewrite(save, tmp_path):
    model = unnamed_model()
    out = tmp_path / "o.onnx"
    code, text = run_cli("compile", save(model), "--calib", _calib(tmp_path, model), "--passes", "cleanup,lowrank",
                         "--pass-option", "lowrank.params=0.3", "--min-cosine", "0", "-o", out, "--no-measure")
    assert code == 0, text
    names = [n.name for n in onnx.load(str(out)).graph.node if n.name]
    assert len(names) == len(set(names)) and any("lowrank" in n for n in names)
    _runs(out)


def test_a_scalar_sample_rate_and_a_chunk_size_are_found_for_synthesized_inputs(save, tmp_path):
    code, text = run_cli("compile", save(sample_rate_model()), "-o", tmp_path / "o.onnx", "--no-measure")
    assert code == 0, text
    assert "sr=16000" in text and "samples=512" in text


def test_when_nothing_runs_the_error_names_the_scalar_input_and_the_flag(save, tmp_path):
    code, text = run_cli("compile", save(sample_rate_model()), "-o", tmp_path / "o.onnx", "--no-measure",
                         "--input", "sr=44100")
    assert code == 2 and "--dim" in text and "internal" not in text
    code, text = run_cli("compile", save(sample_rate_model()), "-o", tmp_path / "o2.onnx", "--no-measure",
                         "--input", "sr=16000", "--dim", "samples=512")
    assert code == 0, text


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_calibration_arrays_are_an_input_error(save, tmp_path, bad):
    model = unnamed_model()
    path = _calib(tmp_path, model)
    x = np.load(path)["x"]
    x[3, 2] = bad
    np.savez(path, x=x)
    code, text = run_cli("compile", save(model), "--calib", path, "-o", tmp_path / "o.onnx", "--no-measure",
                         "--allow-synthetic")
    assert code == 2 and "NaN or Inf" in text


def test_without_real_inputs_only_lossless_passes_run_and_the_flag_is_named(save, tmp_path):
    code, text = run_cli("compile", save(unnamed_model()), "-o", tmp_path / "o.onnx", "--no-measure",
                         "--format", "json")
    assert code == 0 and "--allow-synthetic" in text
    code, text = run_cli("compile", save(unnamed_model()), "-o", tmp_path / "o2.onnx", "--no-measure",
                         "--allow-synthetic", "--format", "json")
    assert code == 0 and '"prune"' in text


def test_bench_rejects_a_negative_run_count(save):
    code, text = run_cli("bench", save(unnamed_model()), "--runs", "-5")
    assert code == 2 and "internal" not in text


def test_an_eight_kilohertz_detector_gets_its_rate_and_chunk(save, tmp_path):
    # only the sizes that change some input's shape are tried, so sr=8000 with 256 samples is reached
    from real_model_shapes import sample_rate_model as vad

    model = vad()
    for init in model.graph.initializer:
        if init.name == "k16000":
            init.CopyFrom(onnx.numpy_helper.from_array(np.array(8000, np.int64), "k16000"))
        if init.name == "W":
            w = onnx.numpy_helper.to_array(init)[:256]
            init.CopyFrom(onnx.numpy_helper.from_array(w, "W"))
        if init.name == "n512":
            init.CopyFrom(onnx.numpy_helper.from_array(np.array([256], np.int64), "n512"))
    code, text = run_cli("compile", save(model), "-o", tmp_path / "o.onnx", "--no-measure")
    assert code == 0 and "sr=8000" in text and "samples=256" in text, text


def test_a_ragged_input_value_is_an_input_error(save, tmp_path):
    code, text = run_cli("compile", save(sample_rate_model()), "-o", tmp_path / "o.onnx", "--no-measure",
                         "--input", "input=[[1],[1,2]]")
    assert code == 2 and "--input" in text and "internal" not in text


def test_indices_that_must_name_existing_nodes_are_tried_as_zeros(save, tmp_path):
    from real_model_shapes import graph_network_model

    code, text = run_cli("compile", save(graph_network_model()), "-o", tmp_path / "o.onnx", "--no-measure")
    assert code == 0 and "edge_index=0" in text, text


LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


@pytest.mark.parametrize("name", ["light_squeezenet", "light_shufflenet", "light_inception_v1"])
@pytest.mark.parametrize("target", ["x86", "arm"])
def test_the_onnx_packages_ir3_opset9_networks_compile(name, target, tmp_path):
    # real architectures (constant weights) of the old model zoo: IR 3, every initializer a graph input
    src = LIGHT / f"{name}.onnx"
    if not src.exists():
        pytest.skip(f"{src} is not in this onnx wheel")
    out = tmp_path / "o.onnx"
    code, text = run_cli("compile", src, "--target", target, "-o", out, "--no-measure", "--format", "json")
    assert code == 0, text
    assert any("IR version 3 → 4" in n for n in json.loads(text)["notes"])
    _runs(out)
