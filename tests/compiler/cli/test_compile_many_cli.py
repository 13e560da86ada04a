"""edgec compile-many: five models × two targets on a local Ray cluster (and in process), a summary table, one
model and report per pair, exit 1 naming the pairs that fail their gate."""

from __future__ import annotations

import json

import onnx
import pytest

import models
from clirun import run_cli

FLEET = [models.mlp_model("relu", blocks=2, seed=1), models.gated_mlp_model(seed=2), models.attention_model(seed=3),
         models.conv_mlp_model(seed=4), models.no_mlp_model(seed=5)]


@pytest.fixture
def fleet(tmp_path):
    paths = []
    for i, model in enumerate(FLEET):
        paths.append(tmp_path / f"m{i}.onnx")
        onnx.save(model, paths[-1])
    return paths


def test_five_models_times_two_targets_on_a_ray_cluster(fleet, tmp_path, ray_cluster):
    out = tmp_path / "out"
    code, text = run_cli("compile-many", *fleet, "--target", "x86,arm", "-o", out, "--runs", "3",
                         "--executor", f"ray:{ray_cluster}")
    assert code == 0, text
    rows = json.loads((out / "summary.json").read_text())
    assert [(r["model"].rsplit("/", 1)[1], r["target"]) for r in rows] == \
           [(f"m{i}.onnx", t) for i in range(5) for t in ("x86", "arm")]
    assert all(r["status"] == "ok" and r["attempts"] == 1 for r in rows)
    for i in range(5):
        for target in ("x86", "arm"):
            assert (out / f"m{i}.{target}.onnx").is_file()
            report = json.loads((out / f"m{i}.{target}.report.json").read_text())
            assert report["target"] == target and report["latency"]["compiled"]["runs"] == 3
            assert report["input"] == str(fleet[i])          # the user's path, not the worker's copy
            assert report["resources"]["seconds"] > 0 and report["resources"]["peak_memory_mb"] > 0
    assert "m4.onnx  arm" in text and "status" in text


def test_a_pair_below_its_gate_exits_1_naming_it(fleet, tmp_path):
    out = tmp_path / "out"
    code, text = run_cli("compile-many", fleet[0], fleet[1], "--target", "x86", "-o", out, "--no-measure",
                         "--passes", "cleanup,prune", "--pass-option", "prune.keep=0.25", "--allow-synthetic",
                         "--min-cosine", "0.9999", "--jobs", "2")
    assert code == 1, text
    assert "failed their fidelity gate: m0.onnx → x86, m1.onnx → x86" in text
    assert not (out / "m0.x86.onnx").exists() and (out / "m0.x86.report.json").is_file()


def test_a_manifest_gives_each_model_its_data_and_targets(fleet, tmp_path):
    import numpy as np

    np.savez(tmp_path / "m0.npz", x=np.random.default_rng(0).standard_normal((24, 5, models.D)).astype(np.float32))
    manifest = tmp_path / "fleet.toml"
    manifest.write_text('targets = ["x86"]\n[[model]]\npath = "m0.onnx"\ncalib = "m0.npz"\ntargets = ["arm", "x86"]\n'
                        '[[model]]\npath = "m4.onnx"\n')
    code, text = run_cli("compile-many", "--manifest", manifest, "-o", tmp_path / "out", "--no-measure",
                         "--format", "json")
    assert code == 0, text
    rows = json.loads(text)
    assert [(r["model"].rsplit("/", 1)[1], r["target"]) for r in rows] == \
           [("m0.onnx", "arm"), ("m0.onnx", "x86"), ("m4.onnx", "x86")]
    report = json.loads((tmp_path / "out" / "m0.arm.report.json").read_text())
    assert report["calibration"]["source"].endswith("m0.npz")


def test_bad_fleets_are_input_errors(fleet, tmp_path):
    code, text = run_cli("compile-many", "-o", tmp_path / "out")
    assert code == 2 and "no model" in text
    code, text = run_cli("compile-many", fleet[0], "--target", "x86,mars", "-o", tmp_path / "out")
    assert code == 2 and "unknown target 'mars'" in text
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    code, text = run_cli("compile-many", fleet[0], broken, "-o", tmp_path / "out", "--no-measure")
    assert code == 2 and "could not be compiled: broken.onnx → x86 (input error)" in text
    assert (tmp_path / "out" / "m0.x86.onnx").is_file()         # the good pair is still written


def test_executor_flags_without_a_goal_point_to_compile_many(fleet):
    code, text = run_cli("compile", fleet[0], "--executor", "ray", "--allow-synthetic")
    assert code == 2 and "compile-many" in text


@pytest.mark.parametrize("text, error", [
    ('targets = "arm"\n[[model]]\npath = "m0.onnx"\n', "targets must be a list of strings"),
    ('target = ["x86"]\n[[model]]\npath = "m0.onnx"\n', "(not target)"),
    ('[[model]]\npath = "m0.onnx"\npasses = "cleanup"\n', "passes must be a list of strings"),
    ('[[model]]\npath = "m0.onnx"\nmin_cosine = "high"\n', "min_cosine must be a number in [0, 1]"),
    ('[[model]]\npath = "nowhere.onnx"\n', "no such model file"),
])
def test_manifest_mistakes_fail_before_any_task_runs(fleet, tmp_path, text, error):
    manifest = tmp_path / "fleet.toml"
    manifest.write_text(text)
    code, out = run_cli("compile-many", "--manifest", manifest, "-o", tmp_path / "out")
    assert code == 2 and error in out, out
    assert not (tmp_path / "out").exists()                      # an early failure leaves no folder


def test_the_command_lines_calib_is_not_a_manifest_models(fleet, tmp_path):
    import numpy as np

    np.savez(tmp_path / "seq.npz", x=np.zeros((24, 5, models.D), np.float32))
    manifest = tmp_path / "fleet.toml"
    manifest.write_text('[[model]]\npath = "m3.onnx"\n')         # the conv model: seq.npz does not fit it
    code, text = run_cli("compile-many", fleet[0], "--manifest", manifest, "--calib", tmp_path / "seq.npz",
                         "-o", tmp_path / "out", "--no-measure", "--format", "json")
    assert code == 0, text
    sources = {r["model"].rsplit("/", 1)[1]: r for r in json.loads(text)}
    assert set(sources) == {"m0.onnx", "m3.onnx"}


def test_unusable_outputs_and_executors_are_input_errors(fleet, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for out in (afile, afile / "sub"):
        code, text = run_cli("compile-many", fleet[0], "-o", out)
        assert code == 2 and "not a folder" in text, text
    code, text = run_cli("compile-many", fleet[0], "-o", tmp_path / "o", "--executor", "ray:127.0.0.1:1")
    assert code == 2 and "cannot reach the Ray cluster at 127.0.0.1:1" in text
    code, text = run_cli("compile-many", fleet[0], "-o", tmp_path / "o", "--executor", "ray", "--jobs", "2")
    assert code == 2 and "--jobs is for --executor local" in text
    code, text = run_cli("compile-many", fleet[0], fleet[0], "-o", tmp_path / "o")
    assert code == 2 and "would write the same outputs" in text
    assert not (tmp_path / "o").exists()
