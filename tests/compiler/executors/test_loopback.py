"""Nothing a test or `--executor ray` starts listens beyond loopback (127.0.0.0/8, ::1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

psutil = pytest.importorskip("psutil")
from listeners import beyond_loopback, is_loopback, listening, processes_naming  # noqa: E402

TESTS = Path(__file__).resolve().parents[2]


def test_loopback_addresses_are_told_apart():
    assert all(map(is_loopback, ["127.0.0.1", "127.3.2.1", "::1", "::ffff:127.0.0.1"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "192.0.2.2", "10.1.2.3", "::ffff:192.0.2.2"]))


def test_the_test_cluster_listens_on_loopback_only(ray_test_cluster):
    sockets = listening(processes_naming(ray_test_cluster.folder))
    port = int(ray_test_cluster.address.rsplit(":", 1)[1])
    names = {name for _, _, name in sockets}
    assert any(p == port for _, p, _ in sockets) and {"gcs_server", "raylet"} <= names, sockets
    assert beyond_loopback(sockets) == [], sockets


# a fresh process: Ray reads its settings when it is imported, and the executor must set them itself
_LOCAL_CLUSTER = """
import json, os, sys
sys.path.insert(0, sys.argv[1])
import psutil
from listeners import listening
from edgec.compiler.executors import Task, open_executor

executor = open_executor("ray")
try:
    import ray
    runs = executor.run([Task("pid", os.getpid)])
    print(json.dumps({"sockets": listening([psutil.Process()]), "node": ray.util.get_node_ip_address(),
                      "worker": runs[0].value}))
finally:
    executor.close()
"""


@pytest.mark.slow
def test_a_cluster_that_executor_ray_starts_listens_on_loopback_only(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_TOKEN="edgec-test-token", HOME=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", _LOCAL_CLUSTER, str(TESTS)], capture_output=True, text=True,
                          env=env, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    sockets = [tuple(s) for s in found["sockets"]]
    assert found["node"] == "127.0.0.1" and found["worker"] != os.getpid()
    assert {"gcs_server", "raylet"} <= {name for _, _, name in sockets}, sockets
    assert beyond_loopback(sockets) == [], sockets
