"""Benchmarks on devices: a real sshd on 127.0.0.1, and aarch64 ONNX Runtime under qemu-user."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgec.compiler.bench.devices import ARMLAB_CACHE, QemuDevice

import models
from clirun import run_cli


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ensure_sshd() -> str:
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    if not Path(sshd).exists() and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "openssh-server"], env=env, capture_output=True)
    if not Path(sshd).exists():
        pytest.skip("openssh-server is not installed and cannot be installed here")
    return sshd


@pytest.fixture(scope="module")
def device_python(tmp_path_factory):
    """A Python with nothing but numpy and onnxruntime: proves the runner is self-contained."""
    import numpy
    import onnxruntime

    venv = tmp_path_factory.mktemp("device") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"numpy=={numpy.__version__}",
                    f"onnxruntime=={onnxruntime.__version__}"], check=True, capture_output=True)
    return venv / "bin" / "python"


@pytest.fixture(scope="module")
def sshd_server(tmp_path_factory, device_python):
    """(the device URL, sshd's process id) of a real sshd that listens on 127.0.0.1 only."""
    binary = _ensure_sshd()
    folder = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / name)], check=True)
    (folder / "authorized_keys").write_text((folder / "client_key.pub").read_text())
    port = _free_port()
    config = folder / "sshd_config"
    config.write_text(f"Port {port}\nListenAddress 127.0.0.1\nHostKey {folder / 'host_key'}\n"
                      f"AuthorizedKeysFile {folder / 'authorized_keys'}\nPasswordAuthentication no\n"
                      "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nStrictModes no\n"
                      f"UsePAM no\nPidFile {folder / 'sshd.pid'}\n")
    Path("/run/sshd").mkdir(exist_ok=True)
    proc = subprocess.Popen([binary, "-D", "-f", str(config), "-E", str(folder / "sshd.log")])
    deadline = time.time() + 10
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    user = os.environ.get("USER") or "root"
    yield f"ssh://{user}@127.0.0.1:{port}?python={device_python}&key={folder / 'client_key'}", proc.pid
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def sshd(sshd_server):
    return sshd_server[0]


def test_the_test_sshd_listens_on_loopback_only(sshd_server):
    psutil = pytest.importorskip("psutil")
    from listeners import beyond_loopback, listening

    sockets = listening([psutil.Process(sshd_server[1])])
    assert sockets and beyond_loopback(sockets) == [], sockets


@pytest.mark.slow
def test_bench_over_ssh_brings_the_json_back(sshd, save):
    path = save(models.mlp_model("gelu"))
    code, out = run_cli("bench", path, "--device", sshd, "--runs", "5", "--warmup", "1", "--format", "json")
    assert code == 0, out
    r = json.loads(out)
    assert r["device"] == sshd and r["latency"]["runs"] == 5 and len(r["samples_ms"]) == 5
    assert r["placement"]["CPUExecutionProvider"] > 0 and r["model_bytes"] == path.stat().st_size


def test_unreachable_device_exits_4(save):
    code, out = run_cli("bench", save(models.mlp_model("relu")), "--device", "ssh://nobody@127.0.0.1:1", "--runs", "2")
    assert code == 4
    assert out.strip().startswith("edgec: error:") and "unreachable" in out and "Traceback" not in out


def test_bad_device_spec_is_a_usage_error(save):
    code, out = run_cli("bench", save(models.mlp_model("relu")), "--device", "carrier-pigeon")
    assert code == 2 and "ssh://" in out


@pytest.fixture(scope="module")
def qemu():
    if os.environ.get("EDGEC_SKIP_QEMU") == "1":
        pytest.skip("EDGEC_SKIP_QEMU=1")
    if not (ARMLAB_CACHE / "bin" / "arm-python").exists():
        if os.geteuid() != 0:
            pytest.skip("building the aarch64 sysroot needs root")
        code, out = run_cli("device-setup", "qemu-aarch64")
        assert code == 0, out
    return QemuDevice()


@pytest.mark.slow
def test_compiled_mlp_runs_under_qemu_aarch64_like_on_x86(qemu, save, tmp_path):
    src = save(models.mlp_model("gelu", blocks=2))
    out = tmp_path / "compiled.onnx"
    code, text = run_cli("compile", src, "--target", "arm", "-o", out, "--min-cosine", "0", "--no-measure", "--allow-synthetic",
                      "--pass-option", "prune.floor=0", "--pass-option", "prune.keep=0.5")
    assert code == 0, text
    feed = models.feeds(onnx.load(str(out)), 1, seq=7)[0]
    arm = qemu.run(out, feed)
    x86 = models.run(onnx.load(str(out)), feed)[0]
    np.testing.assert_allclose(next(iter(arm.values())), x86, atol=1e-4, rtol=1e-4)
    code, text = run_cli("bench", out, "--device", "qemu-aarch64", "--format", "json")
    r = json.loads(text)
    assert code == 0 and r["latency_meaningful"] is False and max(r["host_agreement"].values()) < 1e-4


def _tuning_data(tmp_path, teacher, count=40):
    rng = np.random.default_rng(5)
    path = tmp_path / "data.npz"
    np.savez(path, x=rng.standard_normal((count, 5, 16)).astype(np.float32))
    return path


@pytest.mark.slow
def test_recover_tunes_on_the_device_with_data_that_stays_there(sshd, save, tmp_path):
    teacher, student = models.distorted_student()
    t, s = save(teacher, "teacher"), save(student, "student")
    data = _tuning_data(tmp_path, teacher)        # on loopback the device's disk is this one: an absolute path there
    out = tmp_path / "tuned.onnx"
    code, text = run_cli("recover", s, "--teacher", t, "--data", data, "--device", sshd, "--minutes", "0.1",
                         "-o", out, "--format", "json")
    assert code == 0, text
    r = json.loads(text)
    assert r["device"] == sshd and r["changed"] and r["held_out_best"] > r["held_out_before"]
    assert r["training_batches"] == 4 and r["held_out_samples"] == 8 and r["fold_rel_error"] < 1e-4
    assert [n.op_type for n in onnx.load(str(out)).graph.node] == [n.op_type for n in student.graph.node]


def test_recover_on_a_device_without_the_data_file_is_a_clear_error(sshd, save, tmp_path):
    teacher, student = models.distorted_student()
    code, text = run_cli("recover", save(student, "student"), "--teacher", save(teacher, "teacher"), "--data",
                         "/nonexistent/data.npz", "--device", sshd, "--minutes", "0.05", "-o", tmp_path / "o.onnx")
    assert code == 4 and "is --data a file there?" in text and "Traceback" not in text
    assert not (tmp_path / "o.onnx").exists()
