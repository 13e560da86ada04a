"""Packing a compile's files for a worker that shares no filesystem with the host."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from edgec.compiler.calibration.spec import CalibrationSpec
from edgec.compiler.report.compile_report import CompileReport
from edgec.compiler.tasks.bundle import pack

import models


def test_a_bundle_carries_the_model_its_external_data_and_every_named_file(tmp_path):
    model = models.mlp_model("gelu")
    path = tmp_path / "src" / "m.onnx"
    path.parent.mkdir()
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location="m.data",
                    size_threshold=0)
    np.savez(tmp_path / "calib.npz", x=np.zeros((2, 5, models.D), np.float32))
    tok = tmp_path / "tok"
    (tok / "sub").mkdir(parents=True)
    (tok / "tokenizer.json").write_text("{}")
    (tok / "sub" / "vocab.txt").write_text("a")
    (tok / "model.safetensors").write_bytes(b"x" * 100)       # weights beside a tokenizer are not shipped
    spec = CalibrationSpec(text=tmp_path / "s.txt", tokenizer=tok, eval_text=tmp_path / "missing.txt")
    (tmp_path / "s.txt").write_text("hello\n")

    bundle = pack(path, spec)
    assert not any(name.endswith(".safetensors") for name in bundle.files)
    root = tmp_path / "worker"
    model_path, moved = bundle.unpack(root)
    loaded = onnx.load(str(model_path))                      # external data found beside it
    assert [i.name for i in loaded.graph.initializer] == [i.name for i in model.graph.initializer]
    assert (moved.tokenizer / "tokenizer.json").read_text() == "{}" and (moved.tokenizer / "sub" / "vocab.txt").exists()
    assert moved.text.read_text() == "hello\n" and not moved.eval_text.exists()   # missing: the compile says so

    report = CompileReport(str(model_path), None, "x86", [], [], notes=[f"read {moved.text}"],
                           calibration={"source": str(moved.text)})
    bundle.restore_paths(report, root)
    assert report.input == str(path) and report.calibration["source"] == str(tmp_path / "s.txt")
    assert report.notes == [f"read {tmp_path / 's.txt'}"] and str(root) not in repr(report)
    assert Path(report.input).exists()
