"""Few-parameter recovery as a compile stage: GRASP affines by backprop and by forward passes (zeroth-order)."""

import collections
import json
import os
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

import models
from clirun import run_cli


def _compile(src, tmp_path, name, *extra, passes="cleanup,prune"):
    out = tmp_path / f"{name}.onnx"
    code, text = run_cli("compile", src, "--allow-synthetic", "--passes", passes, "--pass-option", "prune.keep=0.25",
                         "--no-measure", "--min-cosine", "0", "-o", out, *extra)
    assert code == 0, text
    return out, json.loads(out.with_suffix(".report.json").read_text())


def _ops(path):
    return collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node)


@pytest.mark.parametrize("rule", ["gauss-newton", "jacobian"])
def test_zeroth_order_recovery_raises_fidelity_and_keeps_the_ops(save, tmp_path, rule):
    src = save(models.mlp_model("gelu", blocks=2))
    plain, plain_report = _compile(src, tmp_path, "plain")
    out, report = _compile(src, tmp_path, "zo", "--recover", "--train-minutes", "0.1",
                           "--pass-option", "recover.method=zo", "--pass-option", f"recover.zo_optimizer={rule}")
    recover = report["passes"][-1]
    stats = recover["stats"]
    assert recover["changed"] and stats["method"] == "zo" and stats["params"] == "grasp"
    assert stats["score_folded"] > stats["score_before"] and stats["forward_passes"] > 100
    assert stats["trainable"] == 4 * 8 * 2 and stats["site_kinds"] == {"linear": 4}
    assert "forward passes" in recover["notes"][0]
    assert _ops(out) == _ops(plain)
    assert report["fidelity"][0]["score"] > plain_report["fidelity"][0]["score"]


def test_grasp_by_backprop_trains_the_affines_only(save, tmp_path):
    pytest.importorskip("torch")
    src = save(models.mlp_model("gelu", blocks=2))
    plain, plain_report = _compile(src, tmp_path, "plain")
    out, report = _compile(src, tmp_path, "grasp", "--recover", "--train-minutes", "0.1",
                           "--pass-option", "recover.params=grasp", "--pass-option", "recover.affine_lr=2e-3",
                           "--pass-option", "recover.groups=4")
    stats = report["passes"][-1]["stats"]
    assert stats["method"] == "backprop" and stats["trainable"] == 4 * 4 * 2
    assert stats["held_out_best"] > stats["held_out_before"]
    assert report["fidelity"][0]["score"] > plain_report["fidelity"][0]["score"]     # the fold kept the gain
    assert _ops(out) == _ops(plain)


def _softsign_model():
    """An MLP block, then Softsign: an operator recovery's torch view does not have."""
    b = models.Builder(opset=20)
    y = models.linear(b, models.activation(b, models.linear(b, "x", models.D, models.H), "gelu"), models.H, models.D)
    return b.model("x", b.op("Softsign", [b.op("Add", ["x", y])]))


def test_a_graph_the_torch_view_cannot_run_recovers_by_forward_passes(save, tmp_path):
    src = save(_softsign_model())
    _, fallback = _compile(src, tmp_path, "fallback", "--recover", "--train-minutes", "0.05")
    assert fallback["passes"][-1]["stats"]["mode"] == "block-wise"            # full recovery falls back
    out, report = _compile(src, tmp_path, "zo", "--recover", "--train-minutes", "0.1",
                           "--pass-option", "recover.method=zo")
    stats = report["passes"][-1]["stats"]
    assert stats["method"] == "zo" and stats["score_folded"] > stats["score_before"]
    if __import__("importlib").util.find_spec("torch"):       # params=grasp asks for backprop, gets forward passes
        _, grasp = _compile(src, tmp_path, "grasp", "--recover", "--train-minutes", "0.05",
                            "--pass-option", "recover.params=grasp")
        assert grasp["passes"][-1]["stats"]["method"] == "zo"
        assert "Softsign" in grasp["passes"][-1]["notes"][0] and "forward passes" in grasp["passes"][-1]["notes"][0]


BLOCK_TORCH = """
import importlib.abc, sys
class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is made unimportable for this test")
sys.meta_path.insert(0, NoTorch())
from edgec.compiler.cli import main
try:
    main(sys.argv[1:], standalone_mode=False)
finally:
    assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules), "torch was imported"
"""


def test_the_zeroth_order_path_imports_no_torch(save, tmp_path):
    src = save(models.mlp_model("gelu", blocks=1))
    out = tmp_path / "zo.onnx"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run([sys.executable, "-c", BLOCK_TORCH, "compile", str(src), "--allow-synthetic", "--passes",
                           "cleanup,prune", "--pass-option", "prune.keep=0.25", "--no-measure", "--min-cosine", "0",
                           "--recover", "--train-minutes", "0.05", "--pass-option", "recover.method=zo", "-o", str(out)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.with_suffix(".report.json").read_text())
    assert report["passes"][-1]["stats"]["method"] == "zo"


def test_zeroth_order_recovery_tunes_an_int8_graph_in_place(save, tmp_path):
    src = save(models.mlp_model("gelu", blocks=2))
    plain, _ = _compile(src, tmp_path, "int8", "--pass-option", "quantize.floor=0", passes="cleanup,prune,quantize")
    out, report = _compile(src, tmp_path, "int8zo", "--pass-option", "quantize.floor=0", "--pass-option",
                           "recover.method=zo", "--pass-option", "recover.minutes=0.1",
                           passes="cleanup,prune,quantize,recover")
    recover = report["passes"][-1]
    assert recover["name"] == "recover" and recover["stats"]["site_kinds"] == {"int8": 4}
    assert _ops(out) == _ops(plain) and _ops(out)["MatMulInteger"] == 4
