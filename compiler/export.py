"""`edgec export`: a PyTorch module (`package.module:factory` or a sample name) or a Hugging Face
model directory → ONNX with dynamic batch / sequence axes."""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

from edgec.compiler import modelio
from edgec.compiler.errors import InputError
from edgec.samples import SAMPLES

EXPORTERS = ("legacy", "dynamo")


def resolve_factory(spec: str):
    """A callable that returns an nn.Module, from a sample name or `package.module:factory`."""
    target = SAMPLES.get(spec, spec)
    if ":" not in target:
        raise InputError(f"'{spec}': not a sample ({', '.join(SAMPLES)}), a 'package.module:factory' "
                         "or a Hugging Face model directory")
    module_name, attr = target.split(":", 1)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(f"'{spec}': cannot import {module_name} ({exc})") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise InputError(f"'{spec}': {module_name} has no callable '{attr}'")
    return factory


def export(spec: str, output: Path, exporter: str = "legacy", opset: int = 17, force: bool = False) -> Path:
    modelio.ensure_writable_output(output, [], force)
    if Path(spec).is_dir():
        return export_hf(Path(spec), output, opset)
    try:
        import torch
    except ImportError:
        raise InputError("exporting a PyTorch model needs torch (pip install 'edgec[torch]')") from None
    try:
        module = resolve_factory(spec)()
    except RuntimeError as exc:
        raise InputError(f"'{spec}': {exc}") from None
    if not isinstance(module, torch.nn.Module):
        raise InputError(f"'{spec}': the factory returned {type(module).__name__}, not a torch.nn.Module")
    module.eval()
    example = _example_inputs(module, spec)
    with tempfile.TemporaryDirectory(dir=output.parent) as tmp:
        tmp_path = Path(tmp) / output.name
        torch_export(module, example, tmp_path, exporter, opset)
        model = modelio.load_model(tmp_path)
        modelio.save_model_atomic(model, output)
    return output


def _example_inputs(module, spec: str) -> tuple:
    make = getattr(module, "example_inputs", None)
    if make is None:
        raise InputError(f"'{spec}': the module has no example_inputs() method, so edgec cannot trace it")
    example = make()
    return example if isinstance(example, tuple) else (example,)


def torch_export(module, example: tuple, path: Path, exporter: str, opset: int) -> None:
    import torch

    input_names = list(getattr(module, "input_names", [f"input_{i}" for i in range(len(example))]))
    output_names = getattr(module, "output_names", None)
    axes = getattr(module, "dynamic_axes", None) or {n: {0: "batch"} for n in input_names}
    if exporter not in EXPORTERS:
        raise InputError(f"unknown exporter '{exporter}' (known: {', '.join(EXPORTERS)})")
    try:
        with torch.no_grad(), _output_kept_on_success():
            if exporter == "legacy":
                torch.onnx.export(module, example, str(path), input_names=input_names, output_names=output_names,
                                  dynamic_axes=axes, opset_version=opset, dynamo=False)
            else:
                example = _widen_unit_dims(example, axes, input_names)
                shapes = _dynamic_shapes(axes, input_names, example)
                varargs = _varargs_name(module)
                if varargs:      # forward(self, *inputs): torch.export wants the specs grouped under that name
                    shapes = {varargs: shapes}
                program = torch.onnx.export(module, example, input_names=input_names, output_names=output_names,
                                            dynamic_shapes=shapes, opset_version=max(opset, 18), dynamo=True,
                                            verbose=False)
                if program is None:
                    raise RuntimeError("torch.onnx.export returned no program")
                program.save(str(path))
    except Exception as exc:  # noqa: BLE001 - torch's exporters fail in many ways, all about the user's model
        other = "dynamo" if exporter == "legacy" else "legacy"
        raise InputError(f"torch could not export the model ({exporter} exporter, opset {opset}): "
                         f"{_export_reason(exc)} — try another --opset or --exporter {other}") from None
    if exporter != "legacy":
        _name_dynamic_dims(path, axes)


@contextlib.contextmanager
def _output_kept_on_success():
    """What the exporter prints (fds 1 and 2: torch's C++ logging too) is passed on if it succeeds and
    dropped if it fails: the TorchScript exporter dumps the whole IR graph before raising."""
    streams = {1: sys.stdout, 2: sys.stderr}
    saved, files = {}, {}
    for fd, stream in streams.items():
        stream.flush()
        saved[fd], files[fd] = os.dup(fd), tempfile.TemporaryFile()
        os.dup2(files[fd].fileno(), fd)
    try:
        yield
        failed = False
    except BaseException:
        failed = True
        raise
    finally:
        for fd, stream in streams.items():
            stream.flush()
            os.dup2(saved[fd], fd)
            os.close(saved[fd])
            files[fd].seek(0)
            text = files[fd].read().decode(errors="replace")
            files[fd].close()
            if not failed:
                stream.write(text)


def _export_reason(exc: Exception) -> str:
    """The line of a torch export error that says what went wrong (torch.export's are pages long)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if "## Exception summary" in lines:
        lines = lines[lines.index("## Exception summary") + 1:]
    return f"{type(exc).__name__}: {lines[0][:240] if lines else ''}"


def _varargs_name(module) -> str | None:
    import inspect

    params = inspect.signature(module.forward).parameters.values()
    return next((p.name for p in params if p.kind is inspect.Parameter.VAR_POSITIONAL), None)


def _widen_unit_dims(example: tuple, axes: dict, input_names: list[str]) -> tuple:
    """torch.export specializes dimensions of size 1, so a dynamic axis of size 1 is doubled first."""
    import torch

    widened = []
    for name, tensor in zip(input_names, example, strict=True):
        for axis in axes.get(name, {}):
            if tensor.shape[axis] == 1:
                tensor = torch.cat([tensor, tensor], dim=axis)
        widened.append(tensor)
    return tuple(widened)


def _dynamic_shapes(axes: dict, input_names: list[str], example: tuple):
    from torch.export import Dim

    dims: dict[str, object] = {}
    shapes = []
    for name, tensor in zip(input_names, example, strict=True):
        spec = {}
        for axis, label in axes.get(name, {}).items():
            if label not in dims:
                dims[label] = Dim.AUTO
            spec[axis] = dims[label]
        shapes.append(spec or None)
        del tensor
    return tuple(shapes)


def _name_dynamic_dims(path: Path, axes: dict) -> None:
    """torch.export names dynamic dims s0, s1, …: give them the labels of `dynamic_axes` everywhere."""
    import onnx

    model = onnx.load(str(path))
    rename: dict[str, str] = {}
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        for axis, label in axes.get(value.name, {}).items():
            if axis < len(dims) and dims[axis].dim_param:
                rename.setdefault(dims[axis].dim_param, label)
    for value in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in rename:
                dim.dim_param = rename[dim.dim_param]
    onnx.save_model(model, str(path))


def export_hf(model_dir: Path, output: Path, opset: int) -> Path:
    """A Hugging Face checkpoint directory through optimum (feature-extraction task)."""
    try:
        from optimum.exporters.onnx import main_export
    except ImportError:
        raise InputError("exporting a Hugging Face directory needs optimum-onnx (pip install 'edgec[hf]')") from None
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            main_export(str(model_dir), output=tmp, task="feature-extraction", opset=opset, local_files_only=True,
                        do_validation=False, no_post_process=True)
        except Exception as exc:  # noqa: BLE001 - optimum raises many types for unsupported models
            raise InputError(f"{model_dir}: optimum could not export it ({str(exc).splitlines()[0][:200]})") from None
        produced = Path(tmp) / "model.onnx"
        if not produced.is_file():
            raise InputError(f"{model_dir}: optimum wrote no model.onnx")
        staged = modelio.make_tempfile(output)
        shutil.copyfile(produced, staged)
        os.replace(staged, output)
    return output
