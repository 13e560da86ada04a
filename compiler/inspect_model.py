"""`edgec inspect`: what a model holds and which MLP and attention blocks edgec can rewrite."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgec.compiler import modelio
from edgec.compiler.report.compile_report import ModelSummary
from edgec.passes.attention.discovery import find_attention
from edgec.passes.mlp.discovery import find_mlps


def inspect_model(path: Path) -> dict[str, Any]:
    model = modelio.load_model(path)
    graph = modelio.to_graph(model)
    found = find_mlps(graph)
    attention = find_attention(graph)
    summary = ModelSummary.of(model)
    return {
        "file": str(path),
        "ir_version": model.ir_version,
        "opsets": {o.domain or "ai.onnx": o.version for o in model.opset_import},
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "inputs": [_value_info(v) for v in model.graph.input
                   if v.name not in {i.name for i in model.graph.initializer}],
        "outputs": [_value_info(v) for v in model.graph.output],
        "nodes": summary.nodes, "params": summary.params, "bytes": summary.bytes, "ops": summary.ops,
        "mlp_blocks": [b.describe() for b in found.blocks],
        "attention_blocks": [b.describe() for b in attention.blocks],
        "near_misses": [{"node": m.node, "op": m.op, "reason": m.reason}
                        for m in found.near_misses + attention.near_misses],
    }


def _value_info(v) -> dict[str, Any]:
    t = v.type.tensor_type
    dims = [d.dim_param or (d.dim_value if d.HasField("dim_value") else "?") for d in t.shape.dim]
    import onnx

    dtype = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name if t.elem_type else "?"
    return {"name": v.name, "dtype": dtype, "shape": dims}


def format_inspection(info: dict[str, Any]) -> str:
    lines = [f"{info['file']}: IR {info['ir_version']}, opsets {info['opsets']}, producer '{info['producer']}'"]
    for kind in ("inputs", "outputs"):
        for v in info[kind]:
            lines.append(f"  {kind[:-1]:6} {v['name']}: {v['dtype']} {v['shape']}")
    lines.append(f"  {info['nodes']} nodes, {info['params']:,} parameters, {info['bytes']:,} bytes of weights")
    ops = ", ".join(f"{k}×{v}" for k, v in sorted(info["ops"].items(), key=lambda kv: -kv[1]))
    lines.append(f"  ops: {ops}")
    lines.append(f"  MLP blocks: {len(info['mlp_blocks'])}")
    for b in info["mlp_blocks"]:
        shared = "  [shared weights: left alone]" if b["shared_weights"] else ""
        lines.append(f"    #{b['index']:<3} {b['shape']:>16}  {b['pattern']:<10} {b['name']}{shared}")
    lines.append(f"  attention blocks: {len(info['attention_blocks'])}")
    for b in info["attention_blocks"]:
        lines.append(f"    #{b['index']:<3} {b['heads']:>3} heads × {b['head_dim']:<4} {b['name']}")
    if info["near_misses"]:
        lines.append(f"  near-misses: {len(info['near_misses'])}")
        for m in info["near_misses"]:
            lines.append(f"    {m['op']} '{m['node']}': {m['reason']}")
    return "\n".join(lines)
