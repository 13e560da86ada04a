"""bench, compare and check on models built in code (bounded run counts)."""

import json
import xml.etree.ElementTree as ET

import numpy as np

import models
from clirun import run_cli


def heavy_model(extra_branch: bool, seed: int = 0):
    """An MLP over [batch, 64, 256]; optionally with a heavy extra branch whose result is scaled by 0."""
    b = models.Builder(seed)
    d, h = 256, 1024
    x = "x"
    y = models.linear(b, models.activation(b, models.linear(b, x, d, h), "relu"), h, d)
    if extra_branch:
        z = y
        for _ in range(6):
            z = b.op("Relu", [b.op("MatMul", [z, b.const(b.weight((d, d)))])])
            z = b.op("MatMul", [b.op("MatMul", [z, b.const(b.weight((d, 4 * d)))]), b.const(b.weight((4 * d, d)))])
        y = b.op("Add", [y, b.op("Mul", [z, b.const(0.0)])])
    return b.model("x", y, ("batch", 64, d), ("batch", 64, d))


def test_bench_reports_percentiles_placement_and_baseline(save, tmp_path):
    path = save(models.mlp_model("gelu"))
    base = tmp_path / "base.json"
    code, out = run_cli("bench", path, "--runs", "8", "--warmup", "1", "--format", "json", "--save-baseline", base)
    assert code == 0, out
    r = json.loads(out)
    assert r["latency"]["runs"] == 8 and len(r["samples_ms"]) == 8
    assert r["latency"]["min_ms"] <= r["latency"]["p50_ms"] <= r["latency"]["p99_ms"] <= r["latency"]["max_ms"]
    assert r["session_create_ms"] > 0 and r["first_inference_ms"] > 0 and r["peak_rss_mb"] > 10
    assert r["model_bytes"] == path.stat().st_size
    assert r["placement"]["CPUExecutionProvider"] > 0
    assert json.loads(base.read_text())["edgec_baseline"] == 1


def test_bench_names_missing_providers(save):
    code, out = run_cli("bench", save(models.mlp_model("relu")), "--target", "gpu", "--runs", "3", "--format", "json")
    assert code == 0
    notes = json.loads(out)["notes"]
    assert any("CUDAExecutionProvider" in n and "fell back" in n for n in notes)


def test_compare_gives_ratio_interval_and_fidelity(save):
    path = save(models.mlp_model("gelu"))
    code, out = run_cli("compare", path, path, "--runs", "10", "--warmup", "1", "--format", "json")
    assert code == 0, out
    r = json.loads(out)
    assert r["ratio_ci95"][0] <= r["ratio"] <= r["ratio_ci95"][1]
    assert r["fidelity"][0]["cosine"] > 0.99999 and r["fidelity"][0]["max_abs"] == 0


def test_check_against_fails_on_a_slower_model_and_passes_a_copy(save, tmp_path):
    fast, slow = save(heavy_model(False), "fast"), save(heavy_model(True), "slow")
    junit = tmp_path / "junit.xml"
    code, out = run_cli("check", slow, "--against", fast, "--runs", "15", "--warmup", "2", "--junit", junit)
    assert code == 1, out
    assert "REGRESSION" in out
    suite = ET.parse(junit).getroot()
    assert suite.tag == "testsuite" and suite.get("failures") == "1"
    assert suite.find("testcase/failure") is not None
    copy = tmp_path / "copy.onnx"
    copy.write_bytes(fast.read_bytes())
    code, out = run_cli("check", copy, "--against", fast, "--runs", "15", "--warmup", "2", "--junit", junit)
    assert code == 0, out
    assert ET.parse(junit).getroot().get("failures") == "0"


def test_check_against_a_baseline_file_and_github_outputs(save, tmp_path, monkeypatch):
    fast, slow = save(heavy_model(False), "fast"), save(heavy_model(True), "slow")
    base = tmp_path / "base.json"
    assert run_cli("bench", fast, "--runs", "25", "--warmup", "5", "--save-baseline", base)[0] == 0
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    code, out = run_cli("check", slow, "--baseline", base, "--runs", "25", "--warmup", "5")
    assert code == 1, out
    assert code == 1
    assert "::error" in out and "edgec latency regression" in out
    assert "❌ edgec latency check: regression" in summary.read_text()


def test_check_usage_errors(save, tmp_path):
    path = save(models.mlp_model("relu"))
    code, out = run_cli("check", path)
    assert code == 2 and "exactly one of" in out
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    code, out = run_cli("check", path, "--baseline", bad)
    assert code == 2 and "not an edgec baseline" in out


def test_bench_inputs_from_npz(save, tmp_path):
    model = models.mlp_model("relu")
    inputs = tmp_path / "in.npz"
    np.savez(inputs, x=np.ones((2, 3, models.D), np.float32))
    code, out = run_cli("bench", save(model), "--inputs", inputs, "--runs", "3", "--format", "markdown")
    assert code == 0 and "| runs | 3 |" in out


def test_min_ep_share_is_checked_in_bench_and_compile(save, tmp_path):
    board = tmp_path / "board.toml"
    board.write_text('execution_providers = ["XnnpackExecutionProvider", "CPUExecutionProvider"]\n'
                     'min_ep_share = 0.5\npipeline = ["cleanup"]\n')
    path = save(models.mlp_model("relu"))
    code, out = run_cli("bench", path, "--target", board, "--runs", "3", "--format", "json")
    assert code == 0 and any("0% of nodes ran on XnnpackExecutionProvider" in n for n in json.loads(out)["notes"])
    code, out = run_cli("compile", path, "--target", board, "-o", tmp_path / "o.onnx", "--runs", "3", "--format", "json")
    report = json.loads(out)
    assert code == 0 and report["placement"]["CPUExecutionProvider"] > 0
    assert any("XnnpackExecutionProvider" in n and "asks for" in n for n in report["notes"])


def test_bench_and_compare_keep_token_ids_within_a_small_vocabulary(tmp_path):
    import onnx
    from onnx import TensorProto as T
    from onnx import helper as h
    from onnx import numpy_helper as nh

    table = nh.from_array(np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32), "table")
    graph = h.make_graph([h.make_node("Gather", ["table", "input_ids"], ["y"], axis=0)], "embed",
                         [h.make_tensor_value_info("input_ids", T.INT64, ["batch", "sequence"])],
                         [h.make_tensor_value_info("y", T.FLOAT, ["batch", "sequence", 8])], [table])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "embed.onnx"
    onnx.save(model, str(path))
    assert run_cli("bench", path, "--runs", "3")[0] == 0
    assert run_cli("compare", path, path, "--runs", "3")[0] == 0
