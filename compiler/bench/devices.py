"""Where a benchmark runs: this machine, a device over ssh, or aarch64 ONNX Runtime under qemu-user."""

from __future__ import annotations

import io
import json
import os
import shlex
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np

import edgec.runtime
from edgec.compiler.errors import DeviceError, InputError
from edgec.runtime.device import job_from_config
from edgec.runtime.session import SessionConfig
from edgec.runtime.zo.job import JobResult, ZOJob

SSH_OPTIONS = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "StrictHostKeyChecking=accept-new",
               "-o", "LogLevel=ERROR"]
ARMLAB_CACHE = Path(os.environ.get("EDGEC_ARMLAB_CACHE", Path.home() / ".cache" / "edgec" / "armlab"))


def stage_runtime(folder: Path) -> None:
    """Copy the numpy + onnxruntime runner package (edgec/runtime, its subpackages too) into folder/edgec/runtime."""
    root = Path(edgec.runtime.__file__).parent
    for src in root.rglob("*.py"):
        dst = folder / "edgec" / "runtime" / src.relative_to(root)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)


def _stage_job(folder: Path, model: Path, config: SessionConfig, feed: dict | None, settings: dict) -> list[str]:
    stage_runtime(folder)
    shutil.copy2(model, folder / "model.onnx")
    if model.with_name(model.name + ".data").exists():
        shutil.copy2(model.with_name(model.name + ".data"), folder / "model.onnx.data")
    (folder / "job.json").write_text(json.dumps(job_from_config(config, **settings)))
    args = ["--config", "job.json"]
    if feed is not None:
        np.savez(folder / "inputs.npz", **feed)
        args += ["--inputs", "inputs.npz"]
    return args


class SSHDevice:
    """ssh://user@host[:port][?python=/path/to/python&key=/path/to/key]"""

    def __init__(self, url: str):
        parsed = urlparse(url)
        if parsed.scheme != "ssh" or not parsed.hostname:
            raise InputError(f"--device {url}: expected ssh://user@host[:port]")
        query = parse_qs(parsed.query)
        self.url = url
        self.target = f"{parsed.username}@{parsed.hostname}" if parsed.username else parsed.hostname
        self.port = str(parsed.port or 22)
        self.python = query.get("python", ["python3"])[0]
        self.key = query.get("key", [None])[0]

    def _ssh(self, command: str) -> list[str]:
        return ["ssh", *SSH_OPTIONS, "-p", self.port, *(["-i", self.key] if self.key else []), self.target, command]

    def _run(self, cmd: list[str], what: str, timeout: float = 600, stdin: bytes | None = None):
        try:
            proc = subprocess.run(cmd, capture_output=True, timeout=timeout, input=stdin)
        except FileNotFoundError:
            raise DeviceError(f"{self.url}: '{cmd[0]}' is not installed on this machine") from None
        except subprocess.TimeoutExpired:
            raise DeviceError(f"{self.url}: timed out while {what}") from None
        err = proc.stderr.decode(errors="replace")
        if proc.returncode == 255:
            raise DeviceError(f"{self.url}: unreachable ({_last_line(err)})")
        if proc.returncode != 0:
            raise DeviceError(f"{self.url}: failed while {what} ({_last_line(err)})")
        return proc.stdout

    def bench(self, model: Path, config: SessionConfig, feed: dict | None, settings: dict) -> dict:
        def stage(folder: Path) -> str:
            args = _stage_job(folder, model, config, feed, settings)
            return f"bench model.onnx {' '.join(args)}"

        result = self._remote_job(stage, "", "running the benchmark", 600)
        result["device"] = self.url
        return result

    def tune(self, tuning: bytes, teacher: Path, data: str, job: ZOJob, timeout: float) -> JobResult:
        """Zeroth-order tuning on the device, on data that stays there (`data`: a path on the device, absolute or
        from the login directory); only the tuned affines and figures come back."""
        def stage(folder: Path) -> str:
            stage_runtime(folder)
            (folder / "tuning.onnx").write_bytes(tuning)
            shutil.copy2(teacher, folder / "teacher.onnx")
            if teacher.with_name(teacher.name + ".data").exists():
                shutil.copy2(teacher.with_name(teacher.name + ".data"), folder / "teacher.onnx.data")
            (folder / "job.json").write_text(json.dumps(job.to_json()))
            return 'tune tuning.onnx --teacher teacher.onnx --inputs "$DATA" --config job.json'

        prefix = f"DATA=$(cd ~ && readlink -f -- {shlex.quote(data)}) && test -f \"$DATA\" && "
        return JobResult.from_json(self._remote_job(stage, prefix, "tuning on the device (is --data a file there?)",
                                                    timeout))

    def _remote_job(self, stage, prefix: str, what: str, timeout: float) -> dict:
        """Files go over the ssh connection itself as a tar stream: the device needs sh, tar and Python."""
        remote = self._run(self._ssh("mktemp -d"), "creating a work folder").decode().strip()
        quoted = shlex.quote(remote)
        try:
            with tempfile.TemporaryDirectory() as tmp:
                args = stage(Path(tmp))
                self._run(self._ssh(f"tar -C {quoted} -xf -"), "copying the model and runner", stdin=_tar(Path(tmp)))
            cmd = (f"{prefix}cd {quoted} && PYTHONPATH=. {shlex.quote(self.python)} -m edgec.runtime.device "
                   f"{args} --out result.json && cat result.json")
            return json.loads(self._run(self._ssh(cmd), what, timeout=timeout))
        finally:
            subprocess.run(self._ssh(f"rm -rf {quoted}"), capture_output=True, timeout=60)


def _tar(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted(folder.iterdir()):
            tar.add(path, arcname=path.name)
    return buffer.getvalue()


class QemuDevice:
    """aarch64 ONNX Runtime under qemu-user: proves the model loads and computes on ARM; timings mean nothing."""

    def __init__(self, python: Path | None = None):
        self.python = python or ARMLAB_CACHE / "bin" / "arm-python"
        if not self.python.exists():
            raise DeviceError(f"qemu-aarch64: no emulated aarch64 Python at {self.python} "
                              "(run `edgec device-setup qemu-aarch64` first)")

    def _run(self, folder: Path, args: list[str], timeout: float = 1800) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
        env["ARM_PYTHONPATH"] = str(folder)
        try:
            proc = subprocess.run([str(self.python), "-m", "edgec.runtime.device", *args], cwd=folder, env=env,
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise DeviceError("qemu-aarch64: the emulated run timed out") from None
        if proc.returncode != 0:
            errors = [line for line in proc.stderr.splitlines() if "cpuinfo" not in line.lower()]
            raise DeviceError(f"qemu-aarch64: the emulated run failed ({_last_line(chr(10).join(errors))})")

    def bench(self, model: Path, config: SessionConfig, feed: dict | None, settings: dict) -> dict:
        with tempfile.TemporaryDirectory() as tmp:
            args = _stage_job(Path(tmp), model, config, feed, {**settings, "placement": False})
            self._run(Path(tmp), ["bench", "model.onnx", *args, "--out", "result.json"])
            result = json.loads((Path(tmp) / "result.json").read_text())
        result["device"] = "qemu-aarch64"
        result["latency_meaningful"] = False
        return result

    def run(self, model: Path, feed: dict[str, np.ndarray], config: SessionConfig | None = None) -> dict:
        with tempfile.TemporaryDirectory() as tmp:
            args = _stage_job(Path(tmp), model, config or SessionConfig(), feed, {})
            self._run(Path(tmp), ["run", "model.onnx", *args, "--out", "outputs.npz"])
            with np.load(Path(tmp) / "outputs.npz") as data:
                return {k: data[k] for k in data.files}


def open_device(spec: str):
    if spec.startswith("ssh://"):
        return SSHDevice(spec)
    if spec in ("qemu-aarch64", "qemu"):
        return QemuDevice()
    raise InputError(f"--device {spec}: expected ssh://user@host[:port] or qemu-aarch64")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else "no message"
