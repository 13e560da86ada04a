"""`edgec device-setup`: the cached aarch64 Python + ONNX Runtime that --device qemu-aarch64 runs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import click

from edgec.compiler.cli.common import debug_option, handle_errors, main
from edgec.compiler.errors import DeviceError


@main.command("device-setup")
@click.argument("device", type=click.Choice(["qemu-aarch64"]))
@debug_option
@handle_errors
def device_setup_cmd(device, debug):
    """Build the cached aarch64 Python + ONNX Runtime used by --device qemu-aarch64 (needs root and apt)."""
    import numpy
    import onnxruntime

    from edgec.compiler.bench.devices import ARMLAB_CACHE

    script = Path(__file__).parent.parent / "bench" / "qemu_aarch64.sh"
    env = {**os.environ, "EDGEC_ARMLAB_CACHE": str(ARMLAB_CACHE),
           "EDGEC_ARM_PACKAGES": f"onnxruntime=={onnxruntime.__version__} numpy=={numpy.__version__}"}
    # the script's output is relayed line by line through click, not handed our file descriptors: under
    # pytest, a notebook or any captured stream sys.stdout has no fileno
    with subprocess.Popen(["bash", str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, errors="replace") as proc:
        for line in proc.stdout:
            click.echo(line.rstrip("\n"), err=True)
    if proc.returncode != 0:
        raise DeviceError(f"{device}: set-up failed (exit {proc.returncode}); see the messages above")
