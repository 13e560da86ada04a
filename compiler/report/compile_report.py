"""The compile report: what each pass did, sizes, fidelity and latency; JSON and a console table."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import onnx
from rich.console import Console
from rich.table import Table


@dataclass
class ModelSummary:
    nodes: int
    params: int
    bytes: int
    ops: dict[str, int]
    components: dict[str, int] = field(default_factory=dict)   # bytes of weights by what reads them

    @classmethod
    def of(cls, model: onnx.ModelProto) -> ModelSummary:
        params = nbytes = 0
        readers = _readers(model)
        components: Counter[str] = Counter()
        for t in list(model.graph.initializer):
            n = 1
            for d in t.dims:
                n *= d
            params += n
            size = len(t.raw_data) if t.raw_data else n * _itemsize(t.data_type)
            nbytes += size
            components[_component(t.name, readers)] += size
        for t in model.graph.sparse_initializer:
            n = 1
            for d in t.dims:
                n *= d
            params += n
            nbytes += t.values.ByteSize() + t.indices.ByteSize()
            components[_component(t.values.name, readers)] += t.values.ByteSize() + t.indices.ByteSize()
        ops = Counter(n.op_type for n in model.graph.node)
        return cls(len(model.graph.node), params, nbytes, dict(sorted(ops.items())), dict(sorted(components.items())))


EMBEDDING_OPS = {"Gather", "GatherBlockQuantized"}
LINEAR_OPS = {"MatMul", "Gemm", "MatMulInteger", "DynamicQuantizeMatMul", "QLinearMatMul", "MatMulNBits",
              "Conv", "ConvInteger", "QLinearConv", "ConvTranspose"}


def _readers(model: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    return readers


def _component(name: str, readers: dict[str, list[onnx.NodeProto]]) -> str:
    """embedding tables | linear layers | other weights, by the op that reads the weight (through a
    DequantizeLinear, for QDQ and dequantized-table layouts)."""
    ops = set()
    for node in readers.get(name, []):
        if node.op_type == "DequantizeLinear":
            ops |= {n.op_type for n in readers.get(node.output[0], [])}
        ops.add(node.op_type)
    if ops & EMBEDDING_OPS:
        return "embedding tables"
    return "linear layers" if ops & LINEAR_OPS else "other weights"


def size_rows(before: ModelSummary, after: ModelSummary) -> list[tuple[str, int, int]]:
    """(label, original, compiled) rows of the size table, with the weight bytes of each component."""
    rows = [("nodes", before.nodes, after.nodes), ("params", before.params, after.params),
            ("bytes", before.bytes, after.bytes)]
    for part in sorted(set(before.components) | set(after.components)):
        rows.append((f"  {part}", before.components.get(part, 0), after.components.get(part, 0)))
    return rows


def _itemsize(data_type: int) -> int:
    try:
        return onnx.helper.tensor_dtype_to_np_dtype(data_type).itemsize
    except Exception:  # noqa: BLE001
        return 4


@dataclass
class PassRecord:
    name: str
    changed: bool
    seconds: float
    delta_nodes: int
    delta_params: int
    delta_bytes: int
    stats: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class CompileReport:
    input: str
    output: str | None
    target: str
    providers: list[str]
    pipeline: list[str]
    before: ModelSummary | None = None
    after: ModelSummary | None = None
    passes: list[PassRecord] = field(default_factory=list)
    fidelity: list[dict] = field(default_factory=list)
    fidelity_eval: list[dict] = field(default_factory=list)   # on --eval-text, another domain (gated too)
    min_cosine: float = 0.0
    fidelity_ok: bool = True
    latency: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    mlp_blocks: int = 0
    mobile: dict[str, Any] = field(default_factory=dict)
    placement: dict[str, int] = field(default_factory=dict)
    rolled_back: bool = False
    candidates: list[dict] = field(default_factory=list)   # goal search: every pipeline evaluated
    executor: dict[str, Any] = field(default_factory=dict)   # goal search: where its tasks ran, how long each took
    resources: dict[str, Any] = field(default_factory=dict)  # the compile's seconds and peak memory (report.resources)
    notes: list[str] = field(default_factory=list)
    ok: bool = True

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=float)


def print_report(report: CompileReport, console: Console | None = None) -> None:
    console = console or Console(width=max(Console().width, 110))
    table = Table(title=f"edgec compile → {report.target}  ({', '.join(report.providers)})")
    table.add_column("")
    table.add_column("original", justify="right")
    table.add_column("compiled", justify="right")
    table.add_column("ratio", justify="right")
    b, a = report.before, report.after
    if b and a:
        for label, x, y in size_rows(b, a):
            table.add_row(label, f"{x:,}", f"{y:,}", _ratio(y, x))
    lat = report.latency
    if lat:
        table.add_row("latency p50 (ms)", f"{lat['original']['p50_ms']:.3f}", f"{lat['compiled']['p50_ms']:.3f}",
                      f"{lat['ratio_p50']:.3f}×")
    console.print(table)
    held, source = report.calibration.get("held_out", "?"), report.calibration.get("source", "")
    if report.fidelity:
        console.print(_fidelity_table(report.fidelity, f"fidelity on {held} held-out inputs ({source})"))
    if report.fidelity_eval:
        console.print(_fidelity_table(report.fidelity_eval, f"fidelity on {report.calibration.get('evaluation')} "
                                                            f"inputs of {report.calibration.get('evaluation_source')}"))
    for rec in report.passes:
        stats = ", ".join(f"{k}={v}" for k, v in rec.stats.items() if not isinstance(v, (list, dict)))
        console.print(f"  pass {rec.name}: {'changed' if rec.changed else 'no change'} in {rec.seconds:.2f}s"
                      f" (Δnodes {rec.delta_nodes:+d}, Δparams {rec.delta_params:+,d}){'; ' + stats if stats else ''}")
        for note in rec.notes:
            console.print(f"    note: {note}")
    if lat.get("input_shapes"):
        shapes = ", ".join(f"{k} {'×'.join(map(str, v)) or 'scalar'}" for k, v in lat["input_shapes"].items())
        console.print(f"  latency timed on {shapes} ({'the calibration data' if source != 'synthesized' else 'synthesized inputs'})")
    if report.placement:
        console.print("  placement: " + ", ".join(f"{ep} ran {n} nodes" for ep, n in report.placement.items()))
    for note in report.notes:
        console.print(f"  note: {note}")
    if report.resources.get("peak_memory_mb"):
        console.print(f"  compile took {report.resources['seconds']:.1f} s at a peak of "
                      f"{report.resources['peak_memory_mb']:,.0f} MiB")
    if report.mobile:
        _print_mobile(console, report.mobile)
    verdict = "[green]OK[/green]" if report.ok else "[red]FAILED[/red]"
    gate = f"fidelity gate {report.min_cosine}" if report.min_cosine > 0 else "fidelity gate off"
    console.print(f"  result: {verdict} ({gate}); output: {report.output or 'not written'}")


def _fidelity_table(records: list[dict], title: str) -> Table:
    table = Table(title=title)
    columns = [("metric", "gated by", "{}"), ("score", "score", "{:.5f}"), ("cosine", "cosine", "{:.5f}"),
               ("min_cosine", "worst cos", "{:.5f}"), ("rel_l2", "rel L2", "{:.2e}"),
               ("max_abs", "max |Δ|", "{:.2e}"), ("top1_agreement", "top-1", "{:.3f}"),
               ("nn_agreement", "NN agree", "{:.3f}"), ("similarity_spearman", "sim ρ", "{:.4f}")]
    table.add_column("output")
    for _, title, _ in columns:
        table.add_column(title, justify="right")
    for f in records:
        table.add_row(f["name"], *[fmt.format(f[key]) if key in f else "-" for key, _, fmt in columns])
    return table


def _print_mobile(console: Console, mobile: dict[str, Any]) -> None:
    console.print(f"  ORT-format model: {mobile['ort_model']} ({mobile['ort_bytes']:,} bytes)")
    usable = mobile.get("usability", {})
    for ep, info in usable.get("execution_providers", {}).items():
        verdict = {True: "recommended", False: "not recommended"}.get(info.get("recommended"), "?")
        console.print(f"    {ep}: {info.get('nodes_supported', '?')}/{info.get('nodes_total', '?')} nodes in "
                      f"{info.get('partitions', '?')} partitions, {verdict}"
                      + (f"; unsupported: {', '.join(info['unsupported_ops'])}" if info.get("unsupported_ops") else ""))
    if usable.get("advice"):
        console.print(f"    advice: use {usable['advice']}")


def _ratio(new: float, old: float) -> str:
    return f"{new / old:.3f}" if old else "-"
