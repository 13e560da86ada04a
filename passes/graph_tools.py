"""Small graph helpers shared by the passes (onnx-graphsurgeon graphs)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import onnx_graphsurgeon as gs

# Ops that only pass a constant through (possibly transposed); a weight may hide behind them.
_WRAPPERS = {"Identity", "Constant", "Transpose", "Cast"}


@dataclass
class ResolvedConstant:
    value: np.ndarray
    source: gs.Tensor        # the tensor that really holds the data (an initializer or a Constant output)


def producer(tensor: gs.Tensor) -> gs.Node | None:
    return tensor.inputs[0] if tensor.inputs else None


def consumers(tensor: gs.Tensor) -> list[gs.Node]:
    return list(tensor.outputs)


def constant_value(tensor: gs.Tensor) -> ResolvedConstant | None:
    """The value of a tensor that is constant: an initializer, a Constant node, or one behind
    Identity / Transpose / Cast wrappers. None for anything computed from graph inputs."""
    if isinstance(tensor, gs.Constant):
        return ResolvedConstant(np.asarray(tensor.values), tensor)
    node = producer(tensor)
    if node is None or node.op not in _WRAPPERS or (node.domain or "") not in ("", "ai.onnx"):
        return None
    if node.op == "Constant":
        value = node.attrs.get("value")
        if isinstance(value, gs.Constant):
            return ResolvedConstant(np.asarray(value.values), tensor)
        for key in ("value_float", "value_int"):
            if key in node.attrs:
                return ResolvedConstant(np.asarray(node.attrs[key]), tensor)
        for key in ("value_floats", "value_ints"):
            if key in node.attrs:
                return ResolvedConstant(np.asarray(node.attrs[key]), tensor)
        return None
    inner = constant_value(node.inputs[0])
    if inner is None:
        return None
    if node.op == "Transpose":
        perm = node.attrs.get("perm")
        return ResolvedConstant(np.transpose(inner.value, perm), inner.source)
    if node.op == "Cast":
        return None  # a cast weight changes dtype; leave it to cleanup's folding first
    return inner


def is_graph_output(graph: gs.Graph, tensor: gs.Tensor) -> bool:
    return any(t is tensor for t in graph.outputs)


def scalar_or_none(tensor: gs.Tensor) -> float | None:
    c = constant_value(tensor)
    if c is None or c.value.size != 1:
        return None
    return float(c.value.ravel()[0])


def count_params(graph: gs.Graph) -> tuple[int, int]:
    """(parameters, bytes) held in constants of the graph, each tensor counted once."""
    params = nbytes = 0
    for t in graph.tensors().values():
        if isinstance(t, gs.Constant):
            v = t.values
            params += int(np.prod(v.shape))
            nbytes += int(getattr(v, "nbytes", 0))
    return params, nbytes


def fresh_name(graph: gs.Graph, base: str) -> str:
    """`base`, or `base_N`, unused by any tensor or node: node names are optional in ONNX, so names made
    from them ("linear.lowrank_B" for every unnamed layer) must be made unique here."""
    names = set(graph.tensors().keys()) | {n.name for n in graph.nodes if n.name}
    if base not in names:
        return base
    i = 1
    while f"{base}_{i}" in names:
        i += 1
    return f"{base}_{i}"


def forget_shapes(nodes: list[gs.Node]) -> None:
    """Drop the declared shapes of these nodes' outputs: after a rewrite they may be stale, and ONNX
    Runtime rejects a model whose declared shapes contradict its weights. Dtypes are kept."""
    for node in nodes:
        for out in node.outputs:
            if isinstance(out, gs.Variable):
                out.shape = None


def changed_initializers(model: onnx.ModelProto, original: onnx.ModelProto) -> frozenset[str]:
    """Initializers the compression created or changed: absent from the original, or different there."""
    from onnx import numpy_helper

    before = {i.name: i for i in original.graph.initializer}
    changed = set()
    for init in model.graph.initializer:
        old = before.get(init.name)
        if old is None or list(old.dims) != list(init.dims) or old.data_type != init.data_type \
                or not np.array_equal(numpy_helper.to_array(old), numpy_helper.to_array(init)):
            changed.add(init.name)
    return frozenset(changed)


def carried_state(graph: gs.Graph) -> str:
    """'input → output' for a float input that an output of the same rank hands on to the next run, as recurrent
    exports name them (state → stateN, h → hn, c → cn, h0 → hN); '' when there is none."""
    for x in graph.inputs:
        stem = x.name.rstrip("0123456789_.").lower()
        for y in graph.outputs:
            same_rank = x.shape is not None and y.shape is not None and len(x.shape) == len(y.shape)
            if stem and same_rank and y.name != x.name and y.name.lower().startswith(stem) \
                    and len(y.name) <= len(stem) + 2 and x.dtype == y.dtype == np.float32:
                return f"{x.name} → {y.name}"
    return ""


def default_opset(model: onnx.ModelProto) -> int:
    """The default-domain opset, or 0 for a model with none."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def readers(model: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    """Tensor name → the nodes of the main graph that read it (an onnx.ModelProto: graphsurgeon has its own)."""
    found: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            found.setdefault(name, []).append(node)
    return found


def inferred_infos(model: onnx.ModelProto) -> dict[str, onnx.ValueInfoProto]:
    """Value name → its ValueInfo (type, shape) as ONNX shape inference gives it; nothing where inference fails."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - inference raises on some graphs: their values are then unknown
        return {}
    return {v.name: v for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]}


def inferred_types(model: onnx.ModelProto) -> dict[str, tuple[int, int | None]]:
    """Value name → (element type, rank or None) where ONNX shape inference knows it."""
    return {name: (v.type.tensor_type.elem_type,
                   len(v.type.tensor_type.shape.dim) if v.type.tensor_type.HasField("shape") else None)
            for name, v in inferred_infos(model).items() if v.type.HasField("tensor_type")}


def protected_names(model: onnx.ModelProto) -> set[str]:
    """The values a rewrite of the main graph must keep as they are: its outputs and what any If/Loop/Scan body
    reads from the outer scope (a reader that `readers` does not list)."""
    names = {o.name for o in model.graph.output}
    stack = [a.g for n in model.graph.node for a in n.attribute if a.type == onnx.AttributeProto.GRAPH]
    stack += [g for n in model.graph.node for a in n.attribute if a.type == onnx.AttributeProto.GRAPHS for g in a.graphs]
    while stack:
        body = stack.pop()
        for node in body.node:
            names.update(node.input)
            stack += [a.g for a in node.attribute if a.type == onnx.AttributeProto.GRAPH]
            stack += [g for a in node.attribute if a.type == onnx.AttributeProto.GRAPHS for g in a.graphs]
    return names


def inferred_shapes(model: onnx.ModelProto) -> dict[str, list[int | None]]:
    """Value name → its shape (None for a dimension not known as a number) where ONNX shape inference knows it."""
    return {name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
            for name, v in inferred_infos(model).items()
            if v.type.HasField("tensor_type") and v.type.tensor_type.HasField("shape")}
