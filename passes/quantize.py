"""quantize: int8 through ONNX Runtime's quantization tools — dynamic (weights int8, activations quantized
at run time) or static QDQ (activation ranges calibrated on the calibration feeds).

Runs last, after the compression passes (pruned or factorized layers quantize like any other). With a
`floor`, the quantized graph is scored on the driver's search feeds and the pass keeps the float graph
when int8 would fall below it — how the arm and android targets make int8 their default "where fidelity
allows". The tools only write to a path, so the graph takes a round trip through a private temporary folder.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import onnx
import onnx_graphsurgeon as gs

from edgec.passes.base import PassContext, PassOptionError, PassResult, build_options
from edgec.passes.ort_tools import quiet_root_logger, replace_contents

Mode = Literal["dynamic", "static"]
MODES = get_args(Mode)
INTEGER_OPS = ("MatMulInteger", "ConvInteger", "DynamicQuantizeMatMul", "QLinearMatMul", "DequantizeLinear")


@dataclass(frozen=True)
class QuantizeOptions:
    mode: Mode = "dynamic"         # dynamic | static (QDQ, calibrated activation ranges)
    per_channel: bool = True      # per-channel weights: closer to float than per-tensor on MiniLM
                                  # (samples/RESULTS.md#int8)
    # 7-bit weights: auto = when the judging CPU's int8 sums saturate (x86 without VNNI, ctx.int8_saturates), so
    # the fidelity judged there is what every CPU computes (edgec.runtime.cpu); true = always (the x86 target)
    reduce_range: str = "auto"
    ops: str = "MatMul,Gemm"
    floor: float = 0.0            # > 0: keep the float graph if int8 scores below this (the probe's score)

    def __post_init__(self):
        if self.reduce_range.strip().lower() not in ("auto", "true", "false"):
            raise PassOptionError(f"pass 'quantize': reduce_range must be auto, true or false, not "
                                  f"{self.reduce_range!r}")


class QuantizePass:
    name = "quantize"
    Options = QuantizeOptions
    needs = frozenset({"calibration", "fidelity"})
    lossless = False

    def run(self, graph: gs.Graph, ctx: PassContext) -> PassResult:
        opts = build_options(QuantizeOptions, ctx.options, self.name)
        ops = [o.strip() for o in opts.ops.split(",") if o.strip()]
        before = sum(n.op in ops for n in graph.nodes)
        if not before:
            return PassResult(False, {"quantized": 0}, ["no MatMul/Gemm to quantize"])
        reduce_range, notes = _reduce_range(opts.reduce_range, ctx.int8_saturates)
        quantized = _quantize(gs.export_onnx(graph, do_type_check=False), opts, reduce_range, ops, ctx)
        integer = sum(n.op in INTEGER_OPS for n in quantized.nodes)
        if not integer:
            return PassResult(False, {"quantized": 0}, ["ONNX Runtime's quantizer left every layer in float"])
        stats = {"mode": opts.mode, "per_channel": opts.per_channel, "reduce_range": reduce_range,
                 "integer_ops": integer}
        if opts.floor and ctx.fidelity is not None:
            stats["calibration_score"] = score = round(float(ctx.fidelity(quantized)), 6)
            if score < opts.floor:
                return PassResult(False, stats, notes + [f"int8 skipped: calibration score {score:.4f} < floor "
                                                         f"{opts.floor} (the float graph is kept)"])
        replace_contents(graph, quantized)
        stats["quantized"] = before - sum(n.op in ops and not _dequantized_weight(n) for n in graph.nodes)
        return PassResult(True, stats, notes)


def _reduce_range(setting: str, host_saturates: bool) -> tuple[bool, list[str]]:
    choice = setting.strip().lower()
    if choice != "auto":
        return choice == "true", []
    if host_saturates:
        return True, ["7-bit int8 weights (reduce_range): this x86 CPU has no VNNI, its int8 sums would saturate; "
                      "with 7 bits every CPU computes what was verified here"]
    return False, []


def _dequantized_weight(node: gs.Node) -> bool:
    """A QDQ-format layer: its weight comes out of a DequantizeLinear."""
    return len(node.inputs) > 1 and any(p.op == "DequantizeLinear" for p in node.inputs[1].inputs)


def _quantize(model: onnx.ModelProto, opts: QuantizeOptions, reduce_range: bool, ops: list[str],
              ctx: PassContext) -> gs.Graph:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    extra = {"DefaultTensorType": onnx.TensorProto.FLOAT}   # fused graphs have tensors of unknown type
    with tempfile.TemporaryDirectory() as tmp, quiet_root_logger():
        out = Path(tmp) / "quantized.onnx"
        if opts.mode == "dynamic":
            quantize_dynamic(model, out, op_types_to_quantize=ops, per_channel=opts.per_channel,
                             reduce_range=reduce_range, weight_type=QuantType.QInt8, extra_options=extra)
        else:
            quantize_static(model, out, _Reader(_feeds(ctx)), quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=ops, per_channel=opts.per_channel, reduce_range=reduce_range,
                            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                            extra_options={**extra, "MatMulConstBOnly": True})
        return gs.import_onnx(onnx.load(str(out)))


def _feeds(ctx: PassContext) -> list[dict]:
    feeds = ctx.calibration.feeds if ctx.calibration is not None else None
    if not feeds:
        raise ValueError("quantize: mode=static needs calibration inputs")
    return list(feeds)


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over a list of feed dicts."""

    def __init__(self, feeds: list[dict]):
        self._it = iter(feeds)

    def get_next(self):
        return next(self._it, None)
