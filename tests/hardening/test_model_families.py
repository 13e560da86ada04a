"""The default pipeline on exported models of several families: it improves them or leaves them
numerically unchanged, keeps input/output names, and never crashes."""

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from clirun import run_cli

sys.path.insert(0, str(Path(__file__).parent))

FAMILIES = {  # name → (export source, exporter, MLP blocks discovery must find)
    "vit": ("vit", "legacy", 4),
    "mixer-dynamo": ("mixer", "dynamo", 8),
    "convnext-1x1": ("families:tiny_convnext", "legacy", 0),
    "speech-lstm": ("families:speech_lstm", "legacy", 1),
    "speech-lstm-dynamo": ("families:speech_lstm", "dynamo", 1),
    "speech-wave-dynamo": ("families:wave_encoder", "dynamo", 2),   # raw audio in, a gated MLP inside
}


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_default_pipeline_on_family(family, tmp_path):
    source, exporter, blocks = FAMILIES[family]
    src = tmp_path / f"{family}.onnx"
    code, out = run_cli("export", source, "-o", src, "--exporter", exporter)
    assert code == 0, out
    info = json.loads(run_cli("inspect", src, "--format", "json")[1])
    assert len(info["mlp_blocks"]) == blocks
    if family.startswith("convnext"):
        assert any("Conv" in m["reason"] for m in info["near_misses"])
    dst = tmp_path / "out.onnx"
    # synthesized inputs, opted in: the lossy passes run, and the default pipeline steps back rather than fail
    code, out = run_cli("compile", src, "--target", "arm", "-o", dst, "--runs", "10", "--format", "json",
                        "--allow-synthetic")
    assert code == 0, out
    report = json.loads(out)
    assert report["ok"] and all(f["score"] >= 0.99 for f in report["fidelity"])
    compiled, original = onnx.load(str(dst)), onnx.load(str(src))
    assert [i.name for i in compiled.graph.input] == [i.name for i in original.graph.input]
    assert [o.name for o in compiled.graph.output] == [o.name for o in original.graph.output]
    if not any(p["changed"] for p in report["passes"] if p["name"] != "cleanup"):
        feed = _feed(ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]))
        a = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, feed)
        b = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"]).run(None, feed)
        for x, y in zip(a, b, strict=True):
            np.testing.assert_allclose(y, x, atol=1e-5, rtol=1e-5)


def _feed(session):
    from edgec.runtime.inputs import input_specs, synthesize_feed

    return synthesize_feed(input_specs(session), np.random.default_rng(0), {"sequence": 8})
