"""`edgec recover` here: forward-only tuning of a model's group affines against the original."""

import collections
import json

import numpy as np
import onnx
import pytest

import models
from clirun import run_cli


def _setup(save, tmp_path, count=40):
    teacher, student = models.distorted_student()
    data = tmp_path / "data.npz"
    np.savez(data, x=np.random.default_rng(5).standard_normal((count, 5, 16)).astype(np.float32))
    return save(teacher, "teacher"), save(student, "student"), student, data


@pytest.mark.parametrize("rule", ["gauss-newton", "jacobian"])
def test_recover_tunes_and_folds_the_affines(save, tmp_path, rule):
    teacher, src, student, data = _setup(save, tmp_path)
    before = src.read_bytes()
    out = tmp_path / "tuned.onnx"
    code, text = run_cli("recover", src, "--teacher", teacher, "--data", data, "--minutes", "0.1", "--optimizer", rule,
                         "-o", out)
    assert code == 0, text
    assert "held-out score" in text and "same ops" in text and f"wrote {out}" in text
    tuned = onnx.load(str(out))
    assert collections.Counter(n.op_type for n in tuned.graph.node) == collections.Counter(
        n.op_type for n in student.graph.node)
    assert src.read_bytes() == before                     # the input is never touched
    feed = {"x": np.random.default_rng(9).standard_normal((2, 5, 16)).astype(np.float32)}
    ref = models.run(onnx.load(str(teacher)), feed)[0]
    gap = [np.linalg.norm(models.run(m, feed)[0] - ref) for m in (student, tuned)]
    assert gap[1] < 0.7 * gap[0]


def test_itemized_data_as_compile_takes_it(save, tmp_path):
    teacher, src, _, _ = _setup(save, tmp_path)
    data = tmp_path / "items.npz"
    rng = np.random.default_rng(5)
    np.savez(data, **{f"{i}/x": rng.standard_normal((1, 3 + i % 3, 16)).astype(np.float32) for i in range(20)})
    code, text = run_cli("recover", src, "--teacher", teacher, "--data", data, "--minutes", "0.05",
                         "-o", tmp_path / "t.onnx", "--format", "json")
    assert code == 0, text
    r = json.loads(text)
    assert r["training_batches"] == 16 and r["held_out_samples"] == 4       # one feed per item, the last fifth held


def test_recover_reports_in_json(save, tmp_path):
    teacher, src, _, data = _setup(save, tmp_path)
    code, text = run_cli("recover", src, "--teacher", teacher, "--data", data, "--minutes", "0.05", "--optimizer",
                         "spsa", "--groups", "2", "-o", tmp_path / "t.onnx", "--format", "json")
    assert code == 0, text
    r = json.loads(text)
    assert r["device"] == "local" and r["trainable"] == 4 * 2 * 2 and r["sites"] == 4
    assert set(r["groups_per_site"].values()) == {2} and r["forward_passes"] > 0


def test_bad_inputs_are_clear_errors(save, tmp_path):
    teacher, src, _, data = _setup(save, tmp_path)
    other = onnx.load(str(teacher))
    other.graph.node.append(onnx.helper.make_node("Identity", [other.graph.output[0].name], ["renamed"]))
    other.graph.output[0].name = "renamed"
    cases = [
        (["--data", tmp_path / "missing.npz"], "data file not found"),
        (["--data", data, "--teacher", save(other, "other")], "is it the original model?"),
        (["--data", data, "--minutes", "0"], "--minutes must be > 0"),
    ]
    for extra, message in cases:
        args = ["recover", src, "--teacher", teacher, "-o", tmp_path / "o.onnx", *extra]
        code, text = run_cli(*args)
        assert code == 2 and message in text and "Traceback" not in text, text
    (tmp_path / "corrupt.npz").write_bytes(b"not a zip")
    code, text = run_cli("recover", src, "--teacher", teacher, "--data", tmp_path / "corrupt.npz", "-o", tmp_path / "o.onnx")
    assert code == 2 and "not a readable .npz file" in text and "Traceback" not in text, text
    np.savez(tmp_path / "wrong.npz", y=np.zeros((4, 5, 16), np.float32))
    code, text = run_cli("recover", src, "--teacher", teacher, "--data", tmp_path / "wrong.npz", "-o", tmp_path / "o.onnx")
    assert code == 2 and "no array for input(s) ['x']" in text
    assert not (tmp_path / "o.onnx").exists()
