import json

import numpy as np
import onnxruntime as ort

from edgec.compiler.mobile import parse_usability

import models
from clirun import run_cli


def test_android_compile_writes_a_loadable_ort_model_and_usability(save, tmp_path):
    model = models.mlp_model("relu")
    out = tmp_path / "m.android.onnx"
    code, text = run_cli("compile", save(model), "--target", "android", "-o", out, "--passes", "cleanup",
                         "--no-measure")
    assert code == 0, text
    report = json.loads(out.with_suffix(".report.json").read_text())
    ort_path = out.with_suffix(".ort")
    assert report["mobile"]["ort_model"] == str(ort_path) and ort_path.stat().st_size == report["mobile"]["ort_bytes"]
    sess = ort.InferenceSession(str(ort_path), providers=["CPUExecutionProvider"])
    feed = models.feeds(model)[0]
    np.testing.assert_allclose(sess.run(None, feed)[0], models.run(model, feed)[0], atol=1e-5)
    eps = report["mobile"]["usability"]["execution_providers"]
    assert "NNAPI" in eps and eps["NNAPI"]["nodes_total"] > 0
    assert report["mobile"]["usability"]["fixed_dims"] == {"batch": 1, "seq": 128}
    assert any("NnapiExecutionProvider" in n for n in report["notes"])


def test_usability_parser_reads_the_first_verdict_per_ep():
    log = """INFO:  Checking NNAPI
INFO:  3 partitions with a total of 10/12 nodes can be handled by the NNAPI EP.
INFO:  	Unsupported ops: ai.onnx:Erf,ai.onnx:Shape
INFO:  Model should perform well with NNAPI as is: YES
INFO:  5 partitions with a total of 11/12 nodes can be handled by the NNAPI EP.
INFO:  For optimal performance the model should be used with the CPU EP."""
    parsed = parse_usability(log)
    nnapi = parsed["execution_providers"]["NNAPI"]
    assert nnapi == {"partitions": 3, "nodes_supported": 10, "nodes_total": 12,
                     "unsupported_ops": ["ai.onnx:Erf", "ai.onnx:Shape"], "recommended": True}
    assert parsed["advice"] == "the CPU EP."
