"""Random-weight Hugging Face architectures, exported as users export them (TorchScript at opset 14/17,
torch.export at 18; some with a fixed batch of 1), through pruning and whole-model recovery: every
compile succeeds, trains the graph as a torch module (no fallback) and verifies the result."""

import json
import sys
from pathlib import Path

import pytest

from clirun import run_cli

pytest.importorskip("transformers")
pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).parent))

ARCHITECTURES = {  # factory → (exporter, opset)
    "vit": ("dynamo", 18), "whisper_encoder": ("legacy", 17), "wav2vec2": ("legacy", 14),
    "clip_text": ("legacy", 14), "t5_gated": ("legacy", 17), "llama": ("dynamo", 18), "deit": ("legacy", 17),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_prune_and_recover_on_architecture(name, tmp_path):
    exporter, opset = ARCHITECTURES[name]
    src = tmp_path / f"{name}.onnx"
    code, out = run_cli("export", f"hf_models:{name}", "-o", src, "--exporter", exporter, "--opset", str(opset))
    assert code == 0, out
    dst = tmp_path / "out.onnx"
    code, out = run_cli("compile", src, "--allow-synthetic", "--passes", "cleanup,prune", "--pass-option", "prune.keep=0.5",
                        "--recover", "--train-minutes", "0.03", "--min-cosine", "0", "--no-measure", "-o", dst)
    assert code == 0, out
    report = json.loads(dst.with_suffix(".report.json").read_text())
    prune, recover = report["passes"][1], report["passes"][2]
    assert prune["stats"]["blocks"] == 2
    assert "mode" not in recover["stats"] and recover["stats"]["steps"] > 0, recover   # whole-model, no fallback
    assert recover["stats"]["round_trip_rel_error"] <= 1e-5
    assert report["fidelity"] and all(0 < f["cosine"] <= 1.0 + 1e-6 for f in report["fidelity"])


def test_an_export_torch_refuses_is_a_clear_input_error(tmp_path):
    import os
    import subprocess

    src = tmp_path / "old.onnx"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    proc = subprocess.run([str(Path(sys.executable).with_name("edgec")), "export", "hf_models:clip_text", "-o",
                           str(src), "--exporter", "legacy", "--opset", "11"], capture_output=True, text=True, env=env)
    assert proc.returncode == 2 and not src.exists()
    assert proc.stdout == ""                            # torch's page-long IR dump is dropped on failure
    last = proc.stderr.strip().splitlines()[-1]
    assert "torch could not export the model (legacy exporter, opset 11)" in last
    assert "scaled_dot_product_attention" in last and "--exporter dynamo" in last
