"""embed: large embedding tables (a `Gather` from a float constant) stored in 8 or 4 bits.

In a small transformer the word-embedding table is often the largest tensor (all-MiniLM-L6-v2: 30,522 × 384,
over half the parameters) and int8 MatMul quantization leaves it float. Each table's rows are quantized in
blocks (`plans.embedding`) and read with ONNX Runtime's `GatherBlockQuantized` (com.microsoft), which
gathers the integer rows and scales only those — the table stays small in the file *and* in memory. With
`format=dequantize` (for runtimes without that contrib op) the table is stored as int8 behind a standard
`DequantizeLinear` instead: a small file, a float table once loaded. Tables shared with other consumers
(a tied output projection) are left as they are, with a note. With a `floor`, the rewritten graph is
scored on the driver's search feeds and the float tables are kept when it falls below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from edgec.passes.base import PassContext, PassOptionError, PassResult, build_options
from edgec.passes.graph_tools import constant_value, fresh_name
from edgec.passes.ort_tools import replace_contents
from edgec.passes.plans.embedding import QuantizedTable, block_size, quantize_table

MS_DOMAIN = "com.microsoft"


@dataclass(frozen=True)
class EmbedOptions:
    bits: Literal[8, 4] = 8
    block: int = 0                   # values per scale along a row (a power of two ≥ 16; smaller if the row needs);
                                     # 0: 128 at 8 bits (its rounding is already fine, the scales cost 3 % instead
                                     # of 16 %: samples/RESULTS.md#embedding-tables), 32 at 4 bits
    min_rows: int = 1024             # tables with fewer rows (position, token-type embeddings) stay float
    format: Literal["gather", "dequantize"] = "gather"   # GatherBlockQuantized, or int8 + DequantizeLinear
    floor: float = 0.0               # > 0: keep the float tables if the probe scores the result below this

    def __post_init__(self):
        if self.block and (self.block < 16 or self.block & (self.block - 1)):
            raise PassOptionError(f"pass 'embed': block must be 0 (by bits) or a power of two ≥ 16, not {self.block}")
        if self.format == "dequantize" and self.bits != 8:
            raise PassOptionError("pass 'embed': format=dequantize stores 8 bits (DequantizeLinear has no 4-bit "
                                  "rows before opset 21)")


class EmbedPass:
    name = "embed"
    Options = EmbedOptions
    needs = frozenset({"fidelity"})
    lossless = False

    def run(self, graph: gs.Graph, ctx: PassContext) -> PassResult:
        opts = build_options(EmbedOptions, ctx.options, self.name)
        tables, notes = _tables(graph, opts)
        if not tables:
            return PassResult(False, {"tables": 0}, notes or ["no embedding table to quantize"])
        trial = graph.copy() if opts.floor and ctx.fidelity is not None else graph
        stats: dict[str, Any] = {"tables": [], "bits": opts.bits, "format": opts.format}
        for node_index, value in tables:
            stats["tables"].append(_rewrite(trial, trial.nodes[node_index], value, opts))
        if trial is not graph:
            stats["calibration_score"] = score = round(float(ctx.need_fidelity("embed floor")(trial)), 6)
            if score < opts.floor:
                return PassResult(False, stats, notes + [f"embedding tables kept float: calibration score "
                                                         f"{score:.4f} < floor {opts.floor}"])
            _adopt(graph, trial)
        graph.cleanup()
        return PassResult(True, stats, notes)


def _tables(graph: gs.Graph, opts: EmbedOptions) -> tuple[list[tuple[int, np.ndarray]], list[str]]:
    """(node index, table) of every Gather on axis 0 of a large float32 2-D constant used only by Gathers."""
    found, notes = [], []
    for i, node in enumerate(graph.nodes):
        if node.op != "Gather" or node.attrs.get("axis", 0) != 0 or (node.domain or "") not in ("", "ai.onnx"):
            continue
        resolved = constant_value(node.inputs[0])
        if resolved is None or resolved.value.ndim != 2 or resolved.value.dtype != np.float32 \
                or resolved.value.shape[0] < opts.min_rows:
            continue
        others = [c.op for c in node.inputs[0].outputs if c.op != "Gather"]
        if others:
            notes.append(f"table '{node.inputs[0].name}' also feeds {', '.join(sorted(set(others)))}: left float")
            continue
        if block_size(resolved.value.shape[1], _block(opts)) is None:
            notes.append(f"table '{node.inputs[0].name}': rows of {resolved.value.shape[1]} have no block ≥ 16")
            continue
        found.append((i, resolved.value))
    return found, notes


def _rewrite(graph: gs.Graph, gather: gs.Node, table: np.ndarray, opts: EmbedOptions) -> dict:
    block = block_size(table.shape[1], _block(opts))
    assert block is not None, "_tables only picks tables with a block"
    name = gather.inputs[0].name
    if opts.format == "dequantize":
        quantized = quantize_table(table, 8, table.shape[1])        # one scale per row
        _dequantize_linear(graph, gather, quantized)
    else:
        quantized = quantize_table(table, opts.bits, block)
        _gather_block_quantized(graph, gather, quantized)
    error = float(np.linalg.norm(quantized.dequantized() - table)) / max(float(np.linalg.norm(table)), 1e-30)
    return {"table": name, "shape": list(table.shape), "block": quantized.block, "rel_error": round(error, 6),
            "bytes_before": int(table.nbytes),
            "bytes_after": int(quantized.data.nbytes + quantized.scales.nbytes
                               + (quantized.zero_points.nbytes if quantized.zero_points is not None else 0))}


def _block(opts: EmbedOptions) -> int:
    return opts.block or (128 if opts.bits == 8 else 32)


def _gather_block_quantized(graph: gs.Graph, gather: gs.Node, q: QuantizedTable) -> None:
    base = gather.inputs[0].name
    inputs = [gs.Constant(fresh_name(graph, f"{base}.q{q.bits}"), q.data), gather.inputs[1],
              gs.Constant(fresh_name(graph, f"{base}.scales"), q.scales)]
    if q.zero_points is not None:
        inputs.append(gs.Constant(fresh_name(graph, f"{base}.zero_points"), q.zero_points))
    gather.op, gather.domain = "GatherBlockQuantized", MS_DOMAIN
    gather.attrs = {"gather_axis": 0, "quantize_axis": 1, "block_size": q.block, "bits": q.bits}
    gather.inputs = inputs
    _import_domain(graph, MS_DOMAIN, 1)


def _dequantize_linear(graph: gs.Graph, gather: gs.Node, q: QuantizedTable) -> None:
    """int8 rows and one scale per row, dequantized by DequantizeLinear (axis 0) before the Gather."""
    base = gather.inputs[0].name
    table = gs.Variable(fresh_name(graph, f"{base}.dequantized"), dtype=np.float32)
    node = gs.Node("DequantizeLinear", fresh_name(graph, f"{base}.DequantizeLinear"),
                   attrs={"axis": 0},
                   inputs=[gs.Constant(fresh_name(graph, f"{base}.q8"), (q.data.astype(np.int16) - 128).astype(np.int8)),
                           gs.Constant(fresh_name(graph, f"{base}.scales"), q.scales[:, 0].copy())],
                   outputs=[table])
    gather.inputs[0] = table
    graph.nodes.append(node)
    graph.toposort()


def _import_domain(graph: gs.Graph, domain: str, version: int) -> None:
    domains = list(getattr(graph, "import_domains", None) or [])
    if not any(d.domain == domain for d in domains):
        if not domains:
            domains = [onnx.helper.make_opsetid("", graph.opset)]
        domains.append(onnx.helper.make_opsetid(domain, version))
        graph.import_domains = domains


def _adopt(graph: gs.Graph, trial: gs.Graph) -> None:
    """Take the trial graph's nodes and domains (it was scored above the floor)."""
    if trial.import_domains:
        graph.import_domains = list(graph.import_domains or [onnx.helper.make_opsetid("", graph.opset)])
    replace_contents(graph, trial)
