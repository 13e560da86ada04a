"""Shared fixtures. The tests folder is on sys.path (rootdir conftest), so `import models` works. `ray_cluster`:
a real Ray cluster (`ray start --head` on 127.0.0.1, two CPUs) for the executor tests, once per session."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
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


@pytest.fixture(scope="session")
def ray_cluster():
    """The cluster's address (host:port) for `--executor ray:ADDRESS`. Its own temporary folder lets teardown
    stop exactly its processes (`ray stop` would stop every cluster on the machine)."""
    if importlib.util.find_spec("ray") is None:      # not imported here: Ray reads its settings when imported
        pytest.skip("ray is not installed")
    ray_cli = shutil.which("ray", path=str(Path(sys.executable).parent))
    if ray_cli is None:
        pytest.skip("the ray command line is not installed")
    port, folder = _free_port(), tempfile.mkdtemp(prefix="edgec-ray-", dir="/tmp")   # short: socket paths
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    started = subprocess.run([ray_cli, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                              "--num-cpus", "2", "--object-store-memory", str(300 * 2 ** 20), "--temp-dir", folder,
                              "--include-dashboard", "false", "--disable-usage-stats"],
                             capture_output=True, text=True, env=env, timeout=180)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run(["pkill", "-9", "-f", folder], capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)
