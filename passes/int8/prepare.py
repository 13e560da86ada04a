"""A graph made ready for static (QDQ) int8 by ONNX Runtime's own pre-processing.

Static int8 of a convolutional network is fast only when ONNX Runtime can fuse DequantizeLinear → Conv →
QuantizeLinear into one QLinearConv. A BatchNormalization that still follows the Conv (as most exports
leave it: ONNX Runtime folds it only at session load) sits between the Conv and its QuantizeLinear and
blocks the fusion, leaving float Convs wrapped in Q/DQ pairs and layout Transposes around each one.
`quant_pre_process` runs ONNX Runtime's basic graph optimizations first (BatchNormalization and bias Adds
folded into Convs, constants folded) and infers shapes, so the quantizer sees the graph the session runs.
Per-channel scales need DequantizeLinear's `axis`, which opset 13 introduced.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import onnx

from edgec.passes.conv.affine import affine_folded
from edgec.passes.graph_tools import default_opset
from edgec.passes.int8.hardswish import HARDSWISH_OPSET, hardswish_fused, hardswish_matches

PER_CHANNEL_OPSET = 13


def prepared(model: onnx.ModelProto, per_channel: bool) -> tuple[onnx.ModelProto, list[str], bool]:
    """The model as the static quantizer should see it, notes on what was done (or could not be), and whether
    per-channel scales are possible (its opset, or the conversion to 13)."""
    notes: list[str] = []
    per_channel_ok = default_opset(model) >= PER_CHANNEL_OPSET
    if per_channel and not per_channel_ok:
        try:
            model, upgrade = _upgraded(model, PER_CHANNEL_OPSET, "per-channel int8 scales need it")
            per_channel_ok = True
        except ValueError as exc:
            upgrade = f"{exc}: per-tensor scales only"
        notes.append(upgrade)
    model, failure = _pre_processed(model)
    notes += [failure] if failure else []
    model, folded = affine_folded(model)
    notes += [f"{folded} Convs took the per-channel Add/Sub/Mul/Div after them (a batch normalization written out) "
              "into their weights and bias: an int8 elementwise op and a quantization point fewer each"] if folded else []
    model, fused = _with_hardswish(model)
    notes += [fused] if fused else []
    return _named(model), notes, per_channel_ok


def _with_hardswish(model: onnx.ModelProto) -> tuple[onnx.ModelProto, str]:
    """Hard-swishes written out (or expanded by the pre-processing) as one HardSwish op each (`int8.hardswish`), the
    opset raised to 14 where that needs it and can be converted; a note where any was fused."""
    if not hardswish_matches(model):
        return model, ""
    raised = ""
    if default_opset(model) < HARDSWISH_OPSET:
        with contextlib.suppress(ValueError):        # else those written with Clip become x · HardSigmoid(x)
            model, raised = _upgraded(model, HARDSWISH_OPSET, "the HardSwish op needs it")
    model, count = hardswish_fused(model)
    if not count:
        return model, ""
    return model, f"{count} hard-swish activations run as one op each (a float op between int8 layers)" \
        + (f"; {raised}" if raised else "")


def _upgraded(model: onnx.ModelProto, opset: int, why: str) -> tuple[onnx.ModelProto, str]:
    from onnx import version_converter

    before = default_opset(model)
    try:
        upgraded = version_converter.convert_version(model, opset)
        onnx.checker.check_model(upgraded)
    except Exception as exc:  # noqa: BLE001 - the converter lacks adapters for some ops; per-tensor then
        raise ValueError(f"opset {before} cannot be converted to {opset} ({why}) "
                         f"({str(exc).splitlines()[0][:120]})") from None
    return upgraded, f"opset {before} → {opset} ({why})"


def _pre_processed(model: onnx.ModelProto) -> tuple[onnx.ModelProto, str | None]:
    """ONNX Runtime's quant_pre_process; without symbolic shape inference where that fails (it raises on some
    operators), and the model as it is where the optimizer itself fails."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    # from inside the temporary folder: where symbolic shape inference leaves shapes unknown, ONNX Runtime saves
    # sym_shape_infer_temp.onnx (+ uuid-named .data files) into the working directory and never removes them
    with tempfile.TemporaryDirectory(prefix="edgec-int8-") as tmp, contextlib.chdir(tmp):
        source, out = Path(tmp) / "in.onnx", Path(tmp) / "out.onnx"
        onnx.save(model, str(source))
        error = ""
        for skip_symbolic in (False, True):
            try:
                quant_pre_process(str(source), str(out), skip_symbolic_shape=skip_symbolic)
                return onnx.load(str(out)), None
            except Exception as exc:  # noqa: BLE001 - ORT's shape inference raises plain Exceptions
                error = (str(exc).splitlines()[0][:120] if str(exc) else "") or type(exc).__name__
    return model, f"ONNX Runtime's pre-processing failed ({error}): quantized as exported"


def _named(model: onnx.ModelProto) -> onnx.ModelProto:
    """Every node named (layers are kept float by name), names unique."""
    seen: set[str] = set()
    for i, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{i}"
        seen.add(node.name)
    return model
