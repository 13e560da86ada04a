"""Bad input exits 2 with one line naming the problem, never a traceback, and never touches the input."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import models
from clirun import run_cli
from conftest import sha256


def _one_line_error(output: str) -> str:
    lines = [line for line in output.strip().splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert "Traceback" not in output and lines[0].startswith("edgec: error:")
    return lines[0]


@pytest.fixture
def model_path(save):
    return save(models.mlp_model("gelu"), "mlp")


def test_missing_file(tmp_path):
    code, out = run_cli("compile", tmp_path / "nope.onnx", "--no-measure")
    assert code == 2 and "no such file" in _one_line_error(out)


def test_directory_instead_of_file(tmp_path):
    code, out = run_cli("compile", tmp_path, "--no-measure", "-o", tmp_path / "out.onnx")
    assert code == 2 and "directory" in _one_line_error(out)


def test_file_that_is_not_onnx(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_text("hello, this is not a model\n" * 20)
    code, out = run_cli("inspect", path)
    assert code == 2 and "not" in _one_line_error(out)


def test_truncated_onnx(model_path):
    data = model_path.read_bytes()
    model_path.write_bytes(data[: len(data) // 2])
    before = sha256(model_path)
    code, out = run_cli("compile", model_path, "--no-measure")
    assert code == 2 and str(model_path) in _one_line_error(out)
    assert sha256(model_path) == before


def test_unknown_target(model_path):
    code, out = run_cli("compile", model_path, "--target", "toaster", "--no-measure")
    line = _one_line_error(out)
    assert code == 2 and "toaster" in line and "arm" in line and "x86" in line


def test_unknown_pass(model_path):
    code, out = run_cli("compile", model_path, "--passes", "cleanup,magic", "--no-measure")
    line = _one_line_error(out)
    assert code == 2 and "magic" in line and "cleanup" in line


def test_output_equal_to_input(model_path):
    before = sha256(model_path)
    code, out = run_cli("compile", model_path, "-o", model_path, "--no-measure", "--force")
    assert code == 2 and "input" in _one_line_error(out)
    assert sha256(model_path) == before


def test_existing_output_needs_force(model_path, tmp_path):
    out_path = tmp_path / "out.onnx"
    out_path.write_bytes(b"keep me")
    code, out = run_cli("compile", model_path, "-o", out_path, "--no-measure")
    assert code == 2 and "--force" in _one_line_error(out)
    assert out_path.read_bytes() == b"keep me"
    code, _ = run_cli("compile", model_path, "-o", out_path, "--no-measure", "--force")
    assert code == 0 and out_path.read_bytes() != b"keep me"


@pytest.mark.parametrize("arrays, message", [
    ({"wrong_name": np.zeros((4, 5, models.D), np.float32)}, "do not match"),
    ({"x": np.zeros((4, 5, models.D + 1), np.float32)}, "shape"),
    ({"x": np.zeros((4, models.D), np.float32)}, "rank"),
    ({"x": np.zeros((4, 5, models.D), np.int64)}, "expects float32"),
])
def test_calibration_file_that_does_not_match(model_path, tmp_path, arrays, message):
    calib = tmp_path / "calib.npz"
    np.savez(calib, **arrays)
    code, out = run_cli("compile", model_path, "--calib", calib, "--no-measure")
    line = _one_line_error(out)
    assert code == 2 and message in line and "calib.npz" in line


def test_bad_min_cosine(model_path):
    code, out = run_cli("compile", model_path, "--min-cosine", "1.5", "--no-measure")
    assert code == 2 and "min-cosine" in _one_line_error(out)


def test_bad_pass_option(model_path):
    code, out = run_cli("compile", model_path, "--pass-option", "cleanup.nonsense=1", "--no-measure")
    assert code == 2 and "nonsense" in _one_line_error(out)


@pytest.mark.parametrize("passes,option,named", [
    ("cleanup,prune", "prune.keep=2", "keep"),
    ("cleanup,prune", "prune.scope=everywhere", "scope"),
    ("cleanup,lowrank", "lowrank.method=magic", "method"),
    ("cleanup,sparse", "sparse.pattern=5:4", "5:4"),
    ("cleanup,share", "share.group=0", "group"),
    ("cleanup,quantize", "quantize.mode=int3", "mode"),
])
def test_bad_pass_option_value_is_an_input_error(model_path, passes, option, named):
    # checked with the plan, before calibration: no data is needed to hear about a typo
    code, out = run_cli("compile", model_path, "--passes", passes, "--pass-option", option, "--no-measure")
    line = _one_line_error(out)
    assert code == 2 and named in line and "internal" not in line


def test_a_misspelt_option_fails_before_pruning_and_training(model_path, tmp_path):
    import time

    start = time.perf_counter()
    code, out = run_cli("compile", model_path, "--pass-option", "quantize.mdoe=static", "--passes",
                        "cleanup,prune,quantize", "--recover", "--train-minutes", "30", "--calib-text",
                        tmp_path / "missing.txt", "--tokenizer", tmp_path)
    assert code == 2 and "mdoe" in _one_line_error(out) and time.perf_counter() - start < 30


def test_real_console_script_prints_no_traceback(tmp_path):
    exe = Path(sys.executable).with_name("edgec")
    cmd = [str(exe)] if exe.exists() else [shutil.which("edgec") or "edgec"]
    proc = subprocess.run([*cmd, "compile", str(tmp_path / "missing.onnx")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr


def test_an_option_for_a_pass_the_pipeline_does_not_run_is_an_error_not_ignored(model_path, tmp_path):
    import time

    start = time.perf_counter()      # x86's pipeline has no lowrank: a lowrank option would do nothing
    code, out = run_cli("compile", model_path, "--pass-option", "lowrank.params=0.5", "--recover",
                        "--train-minutes", "30", "-o", tmp_path / "o.onnx")
    line = _one_line_error(out)
    assert code == 2 and "'lowrank' is not in the pipeline (cleanup, prune, recover, quantize, embed, weights)" in line
    assert time.perf_counter() - start < 30
    code, out = run_cli("compile", model_path, "--pass-option", "quantize.mdoe=static", "-o", tmp_path / "o.onnx")
    assert code == 2 and "mdoe" in _one_line_error(out)           # the typo is named first
    code, out = run_cli("compile", model_path, "--pass-option", "recover.lr=0.001", "-o", tmp_path / "o.onnx")
    assert code == 2 and "add --recover" in _one_line_error(out)


def test_the_training_flags_budget_recover_whether_asked_for_or_listed():
    from edgec.compiler.cli.common import recovery_budget

    assert recovery_budget(True, None, None, None) == (5.0, 0)              # --recover alone: 5 minutes
    assert recovery_budget(True, None, 2.0, None) == (2.0, 0)
    assert recovery_budget(False, ["prune", "recover"], 2.0, None) == (2.0, 0)  # a listed recover takes the flag
    assert recovery_budget(False, ["prune", "recover"], None, None) == (0.0, 0)  # … or keeps its own options
    assert recovery_budget(False, ["prune"], 2.0, None) == (0.0, 0)          # nothing recovers: no budget
    assert recovery_budget(False, None, None, 40) == (0.0, 40)              # steps ask for recovery by themselves
