"""The factorizing passes on the easiest case there is: residual GELU MLP blocks whose weights have rank 16 plus
1e-3 noise (d 64, hidden 256), 64 random-normal calibration samples × 16 tokens, through `edgec compile`."""

import json

import numpy as np
import onnx
import pytest

import models
from clirun import run_cli


@pytest.fixture(scope="module")
def low_rank(tmp_path_factory):
    folder = tmp_path_factory.mktemp("low_rank")
    onnx.save(models.low_rank_mlp_model(), str(folder / "m.onnx"))
    np.savez(folder / "calib.npz", x=np.random.default_rng(0).standard_normal((64, 16, 64)).astype(np.float32))
    return folder


def _compile(folder, passes: str, *options: str) -> dict:
    args = ["compile", folder / "m.onnx", "--target", "x86", "--passes", passes, "--calib", folder / "calib.npz",
            "-o", folder / "out.onnx", "--report", folder / "r.json", "--force", "--no-measure", "--min-cosine", "0"]
    for option in options:
        args += ["--pass-option", option]
    code, out = run_cli(*args)
    assert code == 0, out
    return json.loads((folder / "r.json").read_text())


def test_lowrank_keeps_its_parameter_budget(low_rank):
    # ranks are allocated in the target's tiles (16) within the budget: rounding 17 up to 32 kept 0.67 of the model
    report = _compile(low_rank, "cleanup,lowrank", "lowrank.params=0.5", "lowrank.max_rank_ratio=1.0")
    assert report["after"]["params"] / report["before"]["params"] <= 0.6
    assert report["fidelity"][0]["cosine"] >= 0.999


def test_share_neither_blows_up_nor_starves_a_layer(low_rank):
    # two blocks' layers use four different 16-dim subspaces: a shared rank-30 basis cannot hold them (cosine
    # 0.67, max |Δ| far past the output's range); one basis per block at the same budget can
    report = _compile(low_rank, "cleanup,share", "share.params=0.5")
    fidelity = report["fidelity"][0]
    out_range = 2 * float(np.abs(np.concatenate([r.ravel() for r in _original_outputs(low_rank)])).max())
    assert fidelity["max_abs"] < out_range and fidelity["cosine"] >= 0.99
    assert 0.4 <= report["after"]["params"] / report["before"]["params"] <= 0.6
    notes = next(p["notes"] for p in report["passes"] if p["name"] == "share")
    assert any("one basis per block" in n for n in notes)


def _original_outputs(folder):
    model = onnx.load(str(folder / "m.onnx"))
    x = np.load(folder / "calib.npz")["x"][:4]
    return [models.run(model, {"x": x[i:i + 1]})[0] for i in range(4)]
