"""Reading models with clear errors, and writing them atomically (never over the input)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import onnx
import onnx_graphsurgeon as gs

from edgec.compiler.errors import InputError

MIN_OPSET = 7
IR_INITIALIZERS_NOT_INPUTS = 4
_TWO_GB = 2**31 - 1


def load_model(path: str | Path) -> onnx.ModelProto:
    """Load an ONNX model (with its external data) or raise InputError naming the file and the problem."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if p.is_dir():
        raise InputError(f"{p}: is a directory, not an ONNX file")
    if p.stat().st_size == 0:
        raise InputError(f"{p}: file is empty")
    try:
        model = onnx.load(str(p))
    except FileNotFoundError as exc:
        raise InputError(f"{p}: external data file missing ({exc.filename or exc})") from None
    except Exception as exc:  # noqa: BLE001 - protobuf raises several unrelated types
        raise InputError(f"{p}: not a valid ONNX model ({_short(exc)})") from None
    check_model(model, p)
    return model


def check_model(model: onnx.ModelProto, path: Path) -> None:
    """Refuse only what is not a model at all: a graph the ONNX checker rejects may still be one that
    ONNX Runtime runs (old exporters), and the session that loads it is the judge (`checker_error` says why)."""
    if not model.graph.node and not model.graph.output:
        raise InputError(f"{path}: not an ONNX model (no graph: truncated or a different file type)")
    opset = model_opset(model)
    if opset and opset < MIN_OPSET:
        raise InputError(f"{path}: opset {opset} is below the minimum edgec supports ({MIN_OPSET})")


def checker_error(model: onnx.ModelProto, path: Path | None = None) -> str | None:
    """What the ONNX checker objects to in this model, or None when it passes."""
    try:
        if model.ByteSize() < _TWO_GB or path is None:
            onnx.checker.check_model(model)
        else:
            onnx.checker.check_model(str(path))
    except Exception as exc:  # noqa: BLE001
        return _short(exc)
    return None


def model_opset(model: onnx.ModelProto) -> int:
    """The default-domain opset, or 0 for a model with none (e.g. only ai.onnx.ml operators)."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def to_graph(model: onnx.ModelProto) -> gs.Graph:
    return gs.import_onnx(model)


def rewrite_blocker(model: onnx.ModelProto) -> str | None:
    """Why edgec cannot rewrite this model (onnx-graphsurgeon cannot round-trip it), or None."""
    try:
        to_model(to_graph(model), model)
    except Exception as exc:  # noqa: BLE001 - e.g. optional or sequence types in the graph
        return f"onnx-graphsurgeon cannot represent this graph ({type(exc).__name__}: {str(exc)[:120]})"
    return None


def to_model(graph: gs.Graph, original: onnx.ModelProto) -> onnx.ModelProto:
    """Export a graph, keeping the original model's metadata, doc string, IR version and opsets."""
    model = gs.export_onnx(graph, do_type_check=False)
    # IR 4 only relaxed "every initializer is a graph input"; the export lists initializers as inputs no more
    model.ir_version = max(original.ir_version, IR_INITIALIZERS_NOT_INPUTS)
    model.producer_name = original.producer_name or "edgec"
    model.producer_version = original.producer_version
    model.domain = original.domain
    model.model_version = original.model_version
    model.doc_string = original.doc_string
    model.graph.doc_string = original.graph.doc_string
    del model.metadata_props[:]
    model.metadata_props.extend(original.metadata_props)
    opsets = {o.domain: o.version for o in original.opset_import}
    for o in model.opset_import:           # a pass may have raised one (static int8 needs opset 13)
        opsets[o.domain] = max(o.version, opsets.get(o.domain, 0))
    del model.opset_import[:]
    model.opset_import.extend(onnx.helper.make_opsetid(d, v) for d, v in sorted(opsets.items()))
    hoist_shared_constants(model)
    return model


def hoist_shared_constants(model: onnx.ModelProto) -> int:
    """One main-graph copy of each constant that several If/Loop/Scan bodies hold identical copies of; how many.

    graphsurgeon exports a constant the bodies read from the enclosing scope into every body that reads it (a
    Silero VAD's weights, read by both branches of an If, came out twice: the file grew 1.41×); ONNX lets a body
    read any name of an enclosing graph, so one copy in the main graph serves them all."""
    bodies = list(subgraphs(model.graph))
    copies: dict[str, list[tuple[onnx.GraphProto, onnx.TensorProto]]] = {}
    for body in bodies:
        for tensor in body.initializer:
            copies.setdefault(tensor.name, []).append((body, tensor))
    taken = {t.name for t in model.graph.initializer}
    for graph in [model.graph, *bodies]:
        taken |= {i.name for i in graph.input} | {o for n in graph.node for o in n.output}
    hoisted = 0
    for name, found in copies.items():
        if len(found) < 2 or name in taken:
            continue
        first = found[0][1].SerializeToString()
        if any(t.SerializeToString() != first for _, t in found[1:]):
            continue
        model.graph.initializer.append(found[0][1])
        for body, tensor in found:
            body.initializer.remove(tensor)
        hoisted += 1
    return hoisted


def subgraphs(graph: onnx.GraphProto):
    """Every If/Loop/Scan body inside `graph`, nested ones too."""
    for node in graph.node:
        for attribute in node.attribute:
            inner = [attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else list(attribute.graphs)
            for body in inner:
                yield body
                yield from subgraphs(body)


def ensure_writable_output(output: Path, inputs: list[Path], force: bool) -> None:
    out = output.resolve()
    for src in inputs:
        if src.exists() and out == src.resolve():
            raise InputError(f"{output}: output path is the input file; choose another -o")
    if output.exists() and not force:
        raise InputError(f"{output}: already exists (use --force to replace it)")
    if output.exists() and output.is_dir():
        raise InputError(f"{output}: is a directory")
    if not output.parent.exists():
        raise InputError(f"{output.parent}: output folder does not exist")


def save_model_atomic(model: onnx.ModelProto, output: Path) -> int:
    """Write to a temporary file in the same folder, then rename: a crash leaves no partial file.

    Models past 2 GB get their weights in `<output>.data` next to it. Returns the bytes written.
    """
    large = model.ByteSize() >= _TWO_GB
    tmp = make_tempfile(output)
    try:
        if large:
            data_name = output.name + ".data"
            model = _copy(model)   # saving as external data rewrites the proto: work on a copy
            onnx.save_model(model, tmp, save_as_external_data=True, all_tensors_to_one_file=True,
                            location=data_name + ".tmp")
            os.replace(output.parent / (data_name + ".tmp"), output.parent / data_name)
            _relocate_external(tmp, data_name)
        else:
            onnx.save_model(model, tmp)
        os.replace(tmp, output)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return output.stat().st_size


def write_text_atomic(text: str, output: Path) -> None:
    write_bytes_atomic(text.encode("utf-8"), output)


def write_bytes_atomic(data: bytes, output: Path) -> None:
    tmp = make_tempfile(output)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, output)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy


def make_tempfile(output: Path) -> str:
    """A temporary file beside `output` with the permissions a normal file would get (mkstemp gives 0600)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return tmp


def _relocate_external(model_path: str, data_name: str) -> None:
    """Point external-data references at the final data file name."""
    model = onnx.load(model_path, load_external_data=False)
    for tensor in onnx.external_data_helper._get_all_tensors(model):
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = data_name
    onnx.save_model(model, model_path)


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]
