"""Fold a PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors) into an exported ONNX model.

Each adapted module M gets ΔW = (lora_alpha / r) · B·A (torch orientation [out, in]). Its ONNX layer is
found by name: a weight or bias initializer named M.weight / M.bias, or a MatMul/Gemm whose node scope
is M (the legacy exporter's /encoder/layer.0/…/MatMul). Names match by suffix, so a wrapper module in the
export (e.g. bert.encoder… for a PEFT adapter on encoder…) does not matter.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx

from edgec.compiler import modelio
from edgec.compiler.errors import InputError
from edgec.passes.mlp.edit import set_linear
from edgec.passes.mlp.linear import Linear, NotLinear, match_linear


def read_adapter(folder: Path) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], float]:
    """module path → (A [r, in], B [out, r]) and the scale lora_alpha / r."""
    config_path, weights_path = folder / "adapter_config.json", folder / "adapter_model.safetensors"
    if not config_path.is_file() or not weights_path.is_file():
        raise InputError(f"{folder}: not a PEFT adapter (needs adapter_config.json and adapter_model.safetensors)")
    try:
        from safetensors.numpy import load_file
    except ImportError:
        raise InputError("folding LoRA adapters needs the safetensors package") from None
    config = json.loads(config_path.read_text())
    if config.get("peft_type", "LORA") != "LORA":
        raise InputError(f"{folder}: adapter type {config.get('peft_type')} is not LoRA")
    scale = float(config.get("lora_alpha", config.get("r", 1))) / float(config.get("r", 1))
    tensors = load_file(str(weights_path))
    modules: dict[str, dict[str, np.ndarray]] = {}
    for key, value in tensors.items():
        m = re.match(r"(?:base_model\.model\.)?(.+)\.lora_([AB])(?:\.default)?\.weight$", key)
        if m:
            modules.setdefault(m.group(1), {})[m.group(2)] = value.astype(np.float64)
    pairs = {k: (v["A"], v["B"]) for k, v in modules.items() if "A" in v and "B" in v}
    if not pairs:
        raise InputError(f"{folder}: no lora_A / lora_B weight pairs found")
    return pairs, scale


def _keys(lin) -> set[str]:
    """Dotted names this linear layer answers to."""
    names = {lin.weight_source.name, lin.matmul.name}
    if lin.bias_node is not None:
        names.update(t.name for t in lin.bias_node.inputs)
    elif lin.matmul.op == "Gemm" and len(lin.matmul.inputs) > 2:
        names.add(lin.matmul.inputs[2].name)
    keys = set()
    for name in names:
        dotted = name.strip("/").replace("/", ".")
        dotted = re.sub(r"\.(weight|bias|MatMul|Gemm|Add)(_\d+)?$", "", dotted)
        keys.add(dotted)
    return keys


def linear_layers(graph) -> list[Linear]:
    linears = []
    for node in graph.nodes:
        if node.op in ("MatMul", "Gemm"):
            try:
                linears.append(match_linear(graph, node))
            except NotLinear:
                continue
    return linears


def matching_layers(linears: list[Linear], module: str) -> list[Linear]:
    """The layers a module path names (by suffix: a wrapper module in the export does not matter)."""
    return [lin for lin in linears if any(k == module or k.endswith("." + module) for k in _keys(lin))]


def fold_lora(base_path: Path, adapter: Path, output: Path, force: bool = False) -> dict:
    modelio.ensure_writable_output(output, [base_path], force)
    model = modelio.load_model(base_path)
    pairs, scale = read_adapter(adapter)
    graph = modelio.to_graph(model)
    linears = linear_layers(graph)
    folded, missing = [], []
    for module, (a, b) in sorted(pairs.items()):
        hits = matching_layers(linears, module)
        if len(hits) != 1:
            missing.append(f"{module} ({'no' if not hits else len(hits)} matching layers)")
            continue
        lin = hits[0]
        delta = scale * (b @ a).T                 # [in, out], the ONNX orientation
        if delta.shape != lin.weight.shape:
            missing.append(f"{module} (adapter {delta.shape} vs layer {lin.weight.shape})")
            continue
        set_linear(graph, lin, lin.weight.astype(np.float64) + delta, lin.bias)
        folded.append(module)
    if not folded:
        raise InputError(f"{adapter}: none of the adapter's {len(pairs)} modules matched a layer of {base_path}")
    graph.cleanup().toposort()
    result = modelio.to_model(graph, model)
    onnx.checker.check_model(result)
    modelio.save_model_atomic(result, output)
    return {"folded": folded, "unmatched": missing, "scale": scale}
