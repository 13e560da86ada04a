"""edgec fold on a real fine-tune made here: the sample ViT trained on a shapes task, then fine-tuned."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import models
from clirun import run_cli


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    pytest.importorskip("torch")
    from edgec.samples.finetune import make_pair

    folder = tmp_path_factory.mktemp("finetune")
    accuracy = make_pair(folder, base_steps=150, tune_steps=150)
    assert accuracy["tuned_fine_accuracy"] > accuracy["base_fine_accuracy"] + 0.2   # a real fine-tune
    return folder


def _fold(pair, tmp_path, method, drop, *extra):
    out = tmp_path / f"{method}-{drop}.onnx"
    code, text = run_cli("fold", pair / "base.onnx", pair / "tuned.onnx", "-o", out, "--method", method,
                      "--drop", drop, "--calib", pair / "inputs.npz", "--format", "json", *extra)
    assert code == 0, text
    return out, json.loads(text)


@pytest.mark.slow
def test_exact_fold_reproduces_the_fine_tune(pair, tmp_path):
    out, report = _fold(pair, tmp_path, "exact", 0.0)
    assert report["unmatched"] == [] and report["matched"] > 10
    feed = {"pixel_values": np.load(pair / "inputs.npz")["pixel_values"][:4]}
    a = ort.InferenceSession(str(pair / "tuned.onnx"), providers=["CPUExecutionProvider"]).run(None, feed)[0]
    b = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, feed)[0]
    np.testing.assert_allclose(b, a, atol=1e-5)


@pytest.mark.slow
def test_dare_and_darex_keep_fidelity_at_p09_and_the_delta_is_small(pair, tmp_path):
    for method in ("dare", "darex-q"):
        _, report = _fold(pair, tmp_path, method, 0.9, "--emit-delta", tmp_path / f"{method}.npz")
        assert report["fidelity"][0]["cosine"] >= 0.99, (method, report["fidelity"])
        assert report["delta_bytes"] <= 0.15 * report["tuned_bytes"]
        assert 0.05 < report["kept_fraction"] < 0.15


@pytest.mark.slow
def test_darex_q_beats_dare_at_p099(pair, tmp_path):
    _, dare = _fold(pair, tmp_path, "dare", 0.99)
    _, darex = _fold(pair, tmp_path, "darex-q", 0.99)
    assert darex["q"] > 0.01
    assert darex["fidelity"][0]["rel_l2"] <= dare["fidelity"][0]["rel_l2"]


@pytest.mark.slow
def test_delta_file_rebuilds_the_variant(pair, tmp_path):
    folded, _ = _fold(pair, tmp_path, "magnitude", 0.9, "--emit-delta", tmp_path / "v.npz")
    rebuilt = tmp_path / "rebuilt.onnx"
    code, text = run_cli("fold", pair / "base.onnx", "--apply", tmp_path / "v.npz", "-o", rebuilt)
    assert code == 0, text
    a, b = onnx.load(str(folded)), onnx.load(str(rebuilt))
    for x, y in zip(a.graph.initializer, b.graph.initializer, strict=True):
        np.testing.assert_allclose(onnx.numpy_helper.to_array(y), onnx.numpy_helper.to_array(x), atol=2e-3)


def test_fold_usage_errors(tmp_path, save):
    base = save(models.mlp_model("relu"), "base")
    code, text = run_cli("fold", base, "-o", tmp_path / "o.onnx")
    assert code == 2 and "BASE and TUNED" in text
    code, text = run_cli("fold", base, base, "-o", base)
    assert code == 2 and "input" in text
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"nope")
    code, text = run_cli("fold", base, "--apply", bad, "-o", tmp_path / "o.onnx")
    assert code == 2 and "not an edgec delta file" in text


def test_lora_adapter_folds_into_the_exported_model(tmp_path):
    safetensors = pytest.importorskip("safetensors.numpy")
    torch, net, example = _exported_mlp(tmp_path)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((4, 16)).astype(np.float32), rng.standard_normal((64, 4)).astype(np.float32) * 0.1
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4, "lora_alpha": 8}))
    safetensors.save_file({"base_model.model.block.fc1.lora_A.weight": a,
                           "base_model.model.block.fc1.lora_B.weight": b}, str(adapter / "adapter_model.safetensors"))
    code, text = run_cli("fold", tmp_path / "base.onnx", "--lora", adapter, "-o", tmp_path / "lora.onnx", "--format", "json")
    assert code == 0, text
    assert json.loads(text)["folded"] == ["block.fc1"]
    with torch.no_grad():
        net.block.fc1.weight += 2.0 * torch.from_numpy(b @ a)
        expected = net(example[0]).numpy()
    got = ort.InferenceSession(str(tmp_path / "lora.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"input_0": example[0].numpy()})[0]
    np.testing.assert_allclose(got, expected, atol=1e-4)


def _exported_mlp(tmp_path):
    """A torch MLP block exported to tmp_path/base.onnx (legacy exporter): (torch, the module, its example)."""
    torch = pytest.importorskip("torch")
    from edgec.compiler.export import torch_export
    from edgec.samples.models import MLP

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.block = MLP(16, 64)

        def forward(self, x):
            return self.block(x)

    torch.manual_seed(0)
    net = Net().eval()
    example = (torch.randn(1, 5, 16),)
    torch_export(net, example, tmp_path / "base.onnx", "legacy", 17)
    return torch, net, example


def test_grasp_adapter_folds_into_the_exported_model(tmp_path):
    torch, net, example = _exported_mlp(tmp_path)
    rng = np.random.default_rng(0)
    adapter = {"block.fc1.gamma": 1 + 0.2 * rng.standard_normal(4), "block.fc1.beta": 0.1 * rng.standard_normal(4),
               "block.fc2.input_gamma": 1 + 0.2 * rng.standard_normal(8),
               "block.fc2.input_beta": 0.1 * rng.standard_normal(8)}
    np.savez(tmp_path / "grasp.npz", **{k: v.astype(np.float32) for k, v in adapter.items()})
    code, text = run_cli("fold", tmp_path / "base.onnx", "--grasp", tmp_path / "grasp.npz", "-o", tmp_path / "g.onnx",
                         "--format", "json")
    assert code == 0, text
    assert json.loads(text)["folded"] == ["block.fc1", "block.fc2"]

    def expand(values, channels):        # group g covers channels [g·C/K, (g+1)·C/K)
        return torch.from_numpy(np.repeat(values, channels // len(values)).astype(np.float32))

    with torch.no_grad():
        h = net.block.fc1(example[0]) * expand(adapter["block.fc1.gamma"], 64) + expand(adapter["block.fc1.beta"], 64)
        a = net.block.act(h) * expand(adapter["block.fc2.input_gamma"], 64) + expand(adapter["block.fc2.input_beta"], 64)
        expected = net.block.fc2(a).numpy()
    got = ort.InferenceSession(str(tmp_path / "g.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"input_0": example[0].numpy()})[0]
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_a_grasp_adapter_that_fits_no_layer_is_a_clear_error(tmp_path):
    _exported_mlp(tmp_path)
    np.savez(tmp_path / "bad.npz", **{"decoder.proj.gamma": np.ones(4, np.float32)})
    code, text = run_cli("fold", tmp_path / "base.onnx", "--grasp", tmp_path / "bad.npz", "-o", tmp_path / "g.onnx")
    assert code == 2 and "none of the adapter's 1 modules matched" in text
    np.savez(tmp_path / "wide.npz", **{"block.fc1.gamma": np.ones(100, np.float32)})
    code, text = run_cli("fold", tmp_path / "base.onnx", "--grasp", tmp_path / "wide.npz", "-o", tmp_path / "g.onnx")
    assert code == 2 and "100 groups do not fit 64 channels" in text
    assert not (tmp_path / "g.onnx").exists()
