"""Ctrl-C leaves nothing behind; random MLP graphs survive every pass at lossless settings."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx_graphsurgeon as gs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgec.compiler.modelio import to_model
from edgec.passes import PassContext, get_pass

import models
from calib import OrtCalibration


@pytest.mark.slow
def test_ctrl_c_mid_compile_leaves_no_partial_file(tmp_path):
    edgec = [str(Path(sys.executable).with_name("edgec"))]
    src, out = tmp_path / "vit.onnx", tmp_path / "vit.out.onnx"
    subprocess.run([*edgec, "export", "vit", "-o", str(src)], check=True, capture_output=True)
    before = src.read_bytes()
    proc = subprocess.Popen([*edgec, "compile", str(src), "--target", "arm", "-o", str(out), "--runs", "20000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # a test run started in the background (`make test &`) inherits SIGINT ignored
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(4)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted; nothing was written" in err and "Traceback" not in err
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vit.onnx"]
    assert src.read_bytes() == before


ACTS = sorted(models.PATTERNS)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(act=st.sampled_from(ACTS), style=st.sampled_from(["matmul", "gemm", "constant_node", "identity"]),
       blocks=st.integers(1, 3), bias=st.booleans(), residual=st.booleans(), seed=st.integers(0, 10_000),
       hidden=st.sampled_from([8, 24, 48]))
def test_random_mlps_survive_every_pass_losslessly(act, style, blocks, bias, residual, seed, hidden, monkeypatch):
    monkeypatch.setattr(models, "H", hidden)
    model = models.mlp_model(act, style, blocks=blocks, seed=seed, residual=residual, bias=bias)
    feeds = models.feeds(model, 4, seed=seed, seq=6)
    for name, options in (("cleanup", {}), ("prune", {"keep": 1.0}), ("lowrank", {"rank": 10**6})):
        graph = gs.import_onnx(model)
        get_pass(name).run(graph, PassContext(calibration=OrtCalibration(feeds), options=options))
        graph.cleanup().toposort()
        rewritten = to_model(graph, model)
        for feed in feeds:
            np.testing.assert_allclose(models.run(rewritten, feed)[0], models.run(model, feed)[0],
                                       atol=1e-5, rtol=1e-4, err_msg=f"{name} {act} {style}")
