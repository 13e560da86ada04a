"""Shared fixtures. The tests folder is on sys.path (rootdir conftest), so `import models` works. `ray_cluster`:
a real Ray cluster (`ray start --head` on 127.0.0.1 only, two CPUs, token authentication) for the executor tests,
once per session."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import onnx
import pytest


@pytest.fixture
def save(tmp_path: Path):
    """Write a ModelProto to tmp_path/<name>.onnx and return the path."""

    def _save(model: onnx.ModelProto, name: str = "model") -> Path:
        path = tmp_path / f"{name}.onnx"
        onnx.save_model(model, str(path))
        return path

    return _save


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class TestCluster:
    address: str          # host:port, for `--executor ray:ADDRESS`
    folder: str           # its temporary folder: every process of the cluster names it on its command line


@pytest.fixture(scope="session")
def ray_test_cluster():
    """A real Ray cluster on 127.0.0.1 only, with token authentication. Its own temporary folder lets teardown
    stop exactly its processes (`ray stop` would stop every cluster on the machine)."""
    if importlib.util.find_spec("ray") is None:      # not imported here: Ray reads its settings when imported
        pytest.skip("ray is not installed")
    ray_cli = shutil.which("ray", path=str(Path(sys.executable).parent))
    if ray_cli is None:
        pytest.skip("the ray command line is not installed")
    port, folder = _free_port(), tempfile.mkdtemp(prefix="edgec-ray-", dir="/tmp")   # short: socket paths
    # Ray's own settings, read by `ray start` and by this process's driver when it imports Ray: every server on
    # loopback (else Ray swaps 127.0.0.1 for the network address and listens on all interfaces), and a token
    settings = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    saved = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    started = subprocess.run([ray_cli, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                              "--num-cpus", "2", "--object-store-memory", str(300 * 2 ** 20), "--temp-dir", folder,
                              "--include-dashboard", "false", "--disable-usage-stats",
                              "--ray-client-server-port", str(_free_port())],
                             capture_output=True, text=True, env=env, timeout=180)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        yield TestCluster(f"127.0.0.1:{port}", folder)
    finally:
        _kill_cluster(folder, f"address=127.0.0.1:{port} ")
        shutil.rmtree(folder, ignore_errors=True)
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)


def _kill_cluster(*marks: str) -> None:
    """Every process of the test cluster: those that name its folder or address on their command line, and their
    children (Ray's dashboard and runtime-env agents retitle themselves `ray::…` and name neither; the client
    server's proxy names only the address): a teardown by folder alone left three alive after every session."""
    import psutil

    found: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter(["cmdline"]):
        line = " ".join(proc.info["cmdline"] or []) + " "
        if proc.pid != os.getpid() and any(mark in line for mark in marks):
            for member in [proc, *_children(proc)]:
                found[member.pid] = member
    for proc in found.values():
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(list(found.values()), timeout=30)


def _children(proc):
    import psutil

    try:
        return proc.children(recursive=True)
    except psutil.Error:
        return []


@pytest.fixture(scope="session")
def ray_cluster(ray_test_cluster):
    """The test cluster's address (host:port) for `--executor ray:ADDRESS`."""
    return ray_test_cluster.address
