"""Fold a GRASP adapter trained elsewhere (per-group scales γ and shifts β of a layer's activations) into an
exported ONNX model.

The adapter is a state dict (.safetensors or .npz) keyed by module path: `M.gamma` and `M.beta` ([K] each,
K groups of contiguous channels) modulate the output of linear layer M, h̃ = γ_g ⊙ (xW + b) + β_g, folded as
W' = W·diag(γ), b' = γ ⊙ b + β; `M.input_gamma` / `M.input_beta` modulate its input, folded as
W' = diag(γ)·W, b' = b + βW. A missing β is zero. Layers are found by name like LoRA modules (`fold.lora`).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx

from edgec.compiler import modelio
from edgec.compiler.errors import InputError
from edgec.compiler.fold.lora import linear_layers, matching_layers
from edgec.passes.mlp.edit import set_linear
from edgec.runtime.zo.tuner import group_index

KEY = re.compile(r"(?:base_model\.model\.)?(.+)\.(input_gamma|input_beta|gamma|beta)$")


def read_adapter(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """module path → {"gamma"|"beta"|"input_gamma"|"input_beta": [K]}."""
    if not path.is_file():
        raise InputError(f"{path}: GRASP adapter file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.numpy import load_file

            tensors = load_file(str(path))
        else:
            with np.load(path, allow_pickle=False) as data:
                tensors = {k: data[k] for k in data.files}
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's input error
        raise InputError(f"{path}: not a readable .safetensors or .npz state dict ({exc})") from None
    modules: dict[str, dict[str, np.ndarray]] = {}
    for key, value in tensors.items():
        m = KEY.match(key)
        if m:
            modules.setdefault(m.group(1), {})[m.group(2)] = np.asarray(value, np.float64).reshape(-1)
    if not modules:
        raise InputError(f"{path}: no '<module>.gamma' / '<module>.beta' tensors found")
    return modules


def fold_grasp(base_path: Path, adapter: Path, output: Path, force: bool = False) -> dict:
    modelio.ensure_writable_output(output, [base_path, adapter], force)
    model = modelio.load_model(base_path)
    modules = read_adapter(adapter)
    graph = modelio.to_graph(model)
    linears = linear_layers(graph)
    folded, missing = [], []
    for module, values in sorted(modules.items()):
        hits = matching_layers(linears, module)
        if len(hits) != 1:
            missing.append(f"{module} ({'no' if not hits else len(hits)} matching layers)")
            continue
        problem = _fold_one(graph, hits[0], values)
        (missing.append(f"{module} ({problem})") if problem else folded.append(module))
    if not folded:
        raise InputError(f"{adapter}: none of the adapter's {len(modules)} modules matched a layer of {base_path} "
                         f"({'; '.join(missing)})")
    graph.cleanup().toposort()
    result = modelio.to_model(graph, model)
    onnx.checker.check_model(result)
    modelio.save_model_atomic(result, output)
    return {"folded": folded, "unmatched": missing}


def _fold_one(graph, lin, values: dict[str, np.ndarray]) -> str | None:
    """Fold one module's affines into its linear layer; a reason when they do not fit it."""
    weight = lin.weight.astype(np.float64)
    bias = np.zeros(lin.out_features) if lin.bias is None else lin.bias.astype(np.float64)
    if "input_gamma" in values or "input_beta" in values:
        gamma, beta, problem = _expanded(values, "input_", lin.in_features)
        if problem:
            return problem
        bias = bias + beta @ weight
        weight = gamma[:, None] * weight
    if "gamma" in values or "beta" in values:
        gamma, beta, problem = _expanded(values, "", lin.out_features)
        if problem:
            return problem
        weight, bias = weight * gamma[None, :], gamma * bias + beta
    keep_bias = lin.bias is not None or np.any(bias)
    set_linear(graph, lin, weight, bias if keep_bias else None)
    return None


def _expanded(values: dict[str, np.ndarray], prefix: str, channels: int):
    gamma = values.get(prefix + "gamma")
    beta = values.get(prefix + "beta")
    groups = len(gamma if gamma is not None else beta)   # type: ignore[arg-type]
    if groups > channels or (gamma is not None and beta is not None and len(beta) != len(gamma)):
        return None, None, f"{groups} groups do not fit {channels} channels (or γ and β differ in length)"
    index = group_index(channels, groups)
    gamma = np.ones(groups) if gamma is None else gamma
    beta = np.zeros(groups) if beta is None else beta
    return gamma[index], beta[index], None
