"""The default pipeline never fails its own gate: it steps back, down to the original, with a note."""

import json

import numpy as np
import onnx

from edgec.passes import REGISTRY

import models
from broken_passes import ZeroFirstFc2
from clirun import run_cli


class _Raises:
    name = "raises"
    needs: frozenset[str] = frozenset()
    lossless = False

    def run(self, graph, ctx):
        raise ZeroDivisionError("a bug inside a pass")


def _board(tmp_path, pipeline):
    path = tmp_path / "board.toml"
    path.write_text(f'name = "board"\nexecution_providers = [{{ name = "CPUExecutionProvider" }}]\n'
                    f'pipeline = {json.dumps(pipeline)}\nmin_cosine = 0.99\n')
    return path


def _calib(tmp_path):
    path = tmp_path / "calib.npz"
    np.savez(path, x=np.random.default_rng(0).standard_normal((24, 5, models.D)).astype(np.float32))
    return path


def test_a_default_pipeline_the_held_out_inputs_reject_steps_back_to_the_original(save, tmp_path, monkeypatch):
    monkeypatch.setitem(REGISTRY, "zero_fc2", ZeroFirstFc2)
    src, out = save(models.mlp_model("gelu", residual=False)), tmp_path / "o.onnx"
    code, text = run_cli("compile", src, "--target", _board(tmp_path, ["cleanup", "zero_fc2"]), "--calib",
                         _calib(tmp_path), "-o", out, "--no-measure", "--format", "json")
    assert code == 0, text
    report = json.loads(text)
    assert report["ok"] and report["pipeline"] == ["cleanup"]
    assert any("stepped back from as planned (the held-out inputs reject it: output" in n for n in report["notes"])
    assert not any(n.startswith("output") for n in report["notes"])   # the rejected attempt's own notes are gone
    feed = models.feeds(onnx.load(str(src)))[0]
    np.testing.assert_allclose(models.run(onnx.load(str(out)), feed)[0], models.run(onnx.load(str(src)), feed)[0],
                               atol=1e-5)


def test_a_pass_that_raises_in_the_default_pipeline_is_a_note_not_a_crash(save, tmp_path, monkeypatch):
    monkeypatch.setitem(REGISTRY, "raises", _Raises)
    code, text = run_cli("compile", save(models.mlp_model("gelu")), "--target", _board(tmp_path, ["raises"]),
                         "--calib", _calib(tmp_path), "-o", tmp_path / "o.onnx", "--no-measure", "--format", "json")
    assert code == 0, text
    assert any("a bug inside a pass" in n and "please report" in n for n in json.loads(text)["notes"])


def test_the_same_pass_asked_for_explicitly_fails_with_exit_1(save, tmp_path, monkeypatch):
    monkeypatch.setitem(REGISTRY, "zero_fc2", ZeroFirstFc2)
    code, _ = run_cli("compile", save(models.mlp_model("gelu", residual=False)), "--passes", "zero_fc2",
                      "--calib", _calib(tmp_path), "-o", tmp_path / "o.onnx", "--no-measure")
    assert code == 1
