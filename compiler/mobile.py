"""Mobile output for ORT-format targets: the `.ort` model and ONNX Runtime's per-EP usability summary.

Both tools come with the onnxruntime wheel. The converter writes temporary folders next to its input
and may constant-fold a model to many times its size, so it runs on a copy in a temporary folder. The
usability checker always exits 0 and judges dynamic shapes harshly, so it runs on a fixed-shape copy
and its log is parsed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import onnx
from onnxruntime.tools.onnx_model_utils import fix_output_shapes, make_dim_param_fixed

from edgec.compiler.errors import InputError
from edgec.compiler.modelio import make_tempfile
from edgec.runtime.inputs import InputSpec, concrete_shape

_PARTITIONS = re.compile(r"(\d+) partitions with a total of (\d+)/(\d+) nodes can be handled by the (.+?) EP")
_UNSUPPORTED = re.compile(r"Unsupported ops: (.*)")
_VERDICT = re.compile(r"Model should perform well with (.+?) as is: (YES|NO)")
_ADVICE = re.compile(r"For optimal performance the model should be used with (.*)")


def convert_to_ort(model_path: Path, output: Path, platform: str = "arm") -> int:
    """Write `output` (.ort) from an ONNX file; returns its size in bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "model.onnx"
        shutil.copy2(model_path, src)
        proc = subprocess.run([sys.executable, "-m", "onnxruntime.tools.convert_onnx_models_to_ort", str(src),
                               "--output_dir", str(Path(tmp) / "out"), "--target_platform", platform],
                              capture_output=True, text=True)
        produced = Path(tmp) / "out" / "model.ort"
        if proc.returncode != 0 or not produced.is_file():
            raise InputError(f"{model_path}: ONNX Runtime could not convert it to ORT format "
                             f"({(proc.stderr or proc.stdout).strip().splitlines()[-1:] or ['no message']})")
        staged = make_tempfile(output)
        shutil.copyfile(produced, staged)
        os.replace(staged, output)
    return output.stat().st_size


def fixed_shape_copy(model: onnx.ModelProto, dims: dict[str, int], path: Path) -> dict[str, int]:
    """Save a copy with every symbolic input dimension fixed; returns the values used."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    used: dict[str, int] = {}
    initializers = {i.name for i in model.graph.initializer}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        shape = tuple(d.dim_param or (d.dim_value or None) for d in value.type.tensor_type.shape.dim)
        dtype = onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
        fixed = concrete_shape(InputSpec(value.name, dtype, shape), dims)
        for declared, size in zip(shape, fixed, strict=True):
            if isinstance(declared, str) and declared not in used:
                used[declared] = size
    for name, size in used.items():
        make_dim_param_fixed(model.graph, name, size)
    fix_output_shapes(model)
    onnx.save_model(model, str(path))
    return used


def usability(model: onnx.ModelProto, dims: dict[str, int]) -> dict:
    """Per-EP partition summary from ONNX Runtime's mobile usability checker, on fixed shapes."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fixed.onnx"
        fixed = fixed_shape_copy(model, dims, path)
        proc = subprocess.run([sys.executable, "-m", "onnxruntime.tools.check_onnx_model_mobile_usability",
                               str(path)], capture_output=True, text=True, cwd=tmp)
    summary = parse_usability(proc.stdout + proc.stderr)
    summary["fixed_dims"] = fixed
    return summary


def parse_usability(log: str) -> dict:
    eps: dict[str, dict] = {}
    current = None
    for line in log.splitlines():
        if m := _PARTITIONS.search(line):
            current = m.group(4)
            entry = eps.setdefault(current, {})
            entry.setdefault("partitions", int(m.group(1)))
            entry.setdefault("nodes_supported", int(m.group(2)))
            entry.setdefault("nodes_total", int(m.group(3)))
        elif (m := _UNSUPPORTED.search(line)) and current:
            eps[current].setdefault("unsupported_ops", [op.strip() for op in m.group(1).split(",") if op.strip()])
        elif m := _VERDICT.search(line):
            eps.setdefault(m.group(1), {})["recommended"] = m.group(2) == "YES"
    advice = next((m.group(1).strip() for m in map(_ADVICE.search, log.splitlines()) if m), None)
    if not eps:
        return {"error": "the usability checker printed no partition summary", "log_tail": log[-400:]}
    return {"execution_providers": eps, "advice": advice}
