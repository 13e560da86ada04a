"""quantize: int8 dynamic quantization of MatMul/Gemm weights through ONNX Runtime's quantization tool.

Runs last, after the compression passes (pruned or factorized layers quantize like any other). The
tool only writes to a path, so the graph takes a round trip through a private temporary folder; this
is the one pass that touches the disk, and only there.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import onnx
import onnx_graphsurgeon as gs

from edgec.passes.base import PassContext, PassResult, build_options
from edgec.passes.ort_tools import quiet_root_logger, replace_contents


@dataclass(frozen=True)
class QuantizeOptions:
    per_channel: bool = True      # per-channel weights: ~0.993 cosine on MiniLM vs ~0.96 per-tensor
    reduce_range: bool = False    # 7-bit weights, for CPUs without VNNI that saturate in int16 sums
    ops: str = "MatMul,Gemm"


class QuantizePass:
    name = "quantize"
    Options = QuantizeOptions

    def run(self, graph: gs.Graph, ctx: PassContext) -> PassResult:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        opts = build_options(QuantizeOptions, ctx.options, self.name)
        ops = [o.strip() for o in opts.ops.split(",") if o.strip()]
        before = sum(n.op in ops for n in graph.nodes)
        if not before:
            return PassResult(False, {"quantized": 0}, ["no MatMul/Gemm to quantize"])
        model = gs.export_onnx(graph, do_type_check=False)
        with tempfile.TemporaryDirectory() as tmp, quiet_root_logger():
            out = Path(tmp) / "quantized.onnx"
            quantize_dynamic(model, out, op_types_to_quantize=ops, per_channel=opts.per_channel,
                             reduce_range=opts.reduce_range, weight_type=QuantType.QInt8,
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
            quantized = gs.import_onnx(onnx.load(str(out)))
        replace_contents(graph, quantized)
        after = sum(n.op in ops for n in graph.nodes)
        integer = sum(n.op in ("MatMulInteger", "ConvInteger", "DynamicQuantizeMatMul") for n in graph.nodes)
        notes = [] if integer else ["ONNX Runtime's quantizer left every layer in float"]
        return PassResult(integer > 0, {"quantized": before - after, "integer_ops": integer,
                                        "per_channel": opts.per_channel}, notes)
