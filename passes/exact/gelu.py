"""GELU written out in elementwise ops, recognized by its values and put back as the one op ONNX Runtime runs.

Exporters that know no GELU op write it out: JAX through tf2onnx as x · ½(1 + tanh(√(2/π)(x + 0.044715 x³))) in
six Muls, two Adds and a Tanh (the magika file-type model: two of them, a quarter of its latency), PyTorch before
opset 20 with Erf. ONNX Runtime fuses only the orders of operations its own exporters write. Here any chain of
elementwise ops with one varying input is evaluated on a probe of values and compared with both GELUs, so the order
and grouping of the ops, their constants' spelling (0.5 · x or x / 2) and where the scalars sit do not matter. The
rewrite keeps the values to within 1e-5 of each (an exporter's rounded constants, 0.7979 for √(2/π), included): a
chain that differs from a GELU by more is left as it is (the tanh form and the erf form differ by up to 5e-4, so one
is never taken for the other), and the compile's verification judges the result like any other.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import helper, numpy_helper
from scipy.special import erf

from edgec.passes.graph_tools import inferred_infos, inferred_types, protected_names, readers

MS_DOMAIN = "com.microsoft"
# the elementwise ops a written-out GELU is made of, as numpy computes them
_OPS = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide, "Pow": np.power,
        "Tanh": np.tanh, "Erf": erf, "Neg": np.negative, "Sqrt": np.sqrt, "Reciprocal": np.reciprocal}
_CORES = ("Tanh", "Erf")            # every GELU has one: where a search starts
PROBE = np.linspace(-8.0, 8.0, 1601)
TOLERANCE = 1e-5                    # of 1 + |GELU(x)|
MIN_NODES = 4
MAX_CANDIDATES = 24                 # values tried as the chain's input, per Tanh/Erf


def _gelu_tanh(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def _gelu_erf(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


# ONNX Runtime's contrib ops (CPU, CUDA): FastGelu is the tanh form, Gelu the erf one
FORMS = (("FastGelu", _gelu_tanh), ("Gelu", _gelu_erf))


def gelu_fused(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """The model with each written-out GELU one FastGelu/Gelu node (ONNX Runtime's contrib domain), and how many."""
    matches = gelu_matches(model)
    if not matches:
        return model, 0
    replaced: dict[int, onnx.NodeProto] = {}
    dropped: set[int] = set()
    for x, op, nodes in matches:
        last = nodes[-1]                   # the chain's end (its value leaves it): its name and output are the op's
        replaced[id(last)] = helper.make_node(op, [x], [last.output[0]], name=last.name or f"{op}_{x}",
                                              domain=MS_DOMAIN)
        dropped.update(id(n) for n in nodes[:-1])
    kept = [replaced.get(id(n), n) for n in model.graph.node if id(n) not in dropped]
    del model.graph.node[:]
    model.graph.node.extend(kept)
    if not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    _typed(model, [(x, nodes[-1].output[0]) for x, _, nodes in matches])
    return model, len(matches)


def _typed(model: onnx.ModelProto, pairs: list[tuple[str, str]]) -> None:
    """Each fused op's output typed as its input is: ONNX shape inference does not know contrib ops and would leave
    everything after them untyped, and ONNX Runtime's static quantizer calibrates only the tensors it finds typed."""
    types = {name: v.type for name, v in inferred_infos(model).items()}
    known = {v.name for v in [*model.graph.value_info, *model.graph.output]}
    for x, out in pairs:
        if out in known:
            continue
        info = onnx.ValueInfoProto(name=out)
        if x in types:
            info.type.CopyFrom(types[x])
        else:
            info.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
        model.graph.value_info.append(info)


def gelu_matches(model: onnx.ModelProto) -> list[tuple[str, str, list[onnx.NodeProto]]]:
    """Each written-out GELU: (its input, the op it becomes, its nodes in graph order, the last writing the result)."""
    graph = model.graph
    scalars = _scalar_constants(model)
    users = readers(model)
    producers = {out: n for n in graph.node for out in n.output}
    outputs = protected_names(model)
    ranks = {name: rank for name, (_, rank) in inferred_types(model).items() if rank is not None}
    found: list[tuple[str, str, list[onnx.NodeProto]]] = []
    taken: set[int] = set()
    for core in (n for n in graph.node if n.op_type in _CORES):
        if id(core) in taken:
            continue
        for x in _candidate_inputs(core, producers, scalars):
            match = _match(graph.node, x, core, scalars, users, outputs, ranks.get(x, 0))
            if match is not None and not any(id(n) in taken for n in match[1]):
                found.append((x, *match))
                taken.update(id(n) for n in match[1])
                break
    return found


def _candidate_inputs(core: onnx.NodeProto, producers: dict, scalars: dict) -> list[str]:
    """The values above `core` through elementwise ops, nearest first: one of them is the GELU's input."""
    seen: set[str] = set()
    order: list[str] = []
    queue = list(core.input)
    while queue and len(order) < MAX_CANDIDATES:
        name = queue.pop(0)
        if name in seen or name in scalars:
            continue
        seen.add(name)
        order.append(name)
        node = producers.get(name)
        if node is not None and node.op_type in _OPS:
            queue.extend(node.input)
    return order


def _match(nodes, x: str, core: onnx.NodeProto, scalars: dict[str, tuple[float, int]], users: dict,
           outputs: set[str], rank: int) -> tuple[str, list[onnx.NodeProto]] | None:
    """(op, nodes) where the elementwise chain from `x` through `core` ends in one value that is a GELU of `x`; its
    constants of more than one dimension only where `x` (of `rank`, 1 where unknown) has as many: else the op would
    return another rank than the chain does."""
    chain, values = [], {x}
    for node in nodes:              # graph order is topological: one pass collects every op computed from x alone
        if node.op_type in _OPS and len(node.output) == 1 and node.input \
                and all(i in values or i in scalars for i in node.input) and any(i in values for i in node.input):
            chain.append(node)
            values.add(node.output[0])
    inside = {id(n) for n in chain}
    ends = [n for n in chain if n.output[0] in outputs
            or any(id(u) not in inside for u in users.get(n.output[0], []))]
    if len(ends) != 1 or len(chain) < MIN_NODES or id(core) not in inside:
        return None
    end = ends[0]
    if any(scalars[i][1] > max(rank, 1) for n in chain for i in n.input if i in scalars):
        return None
    result = _evaluated(chain, x, end.output[0], scalars)
    if result is None:
        return None
    for op, form in FORMS:
        expected = form(PROBE)
        if np.all(np.abs(result - expected) <= TOLERANCE * (1.0 + np.abs(expected))):
            return op, [n for n in chain if n is not end] + [end]      # the end last: it names the op
    return None


def _evaluated(chain: list[onnx.NodeProto], x: str, end: str, scalars: dict[str, tuple[float, int]]) -> np.ndarray | None:
    env = {x: PROBE}
    with np.errstate(all="ignore"):
        for node in chain:
            args = [env[i] if i in env else np.float64(scalars[i][0]) for i in node.input]
            env[node.output[0]] = _OPS[node.op_type](*args)
    result = np.asarray(env[end], dtype=np.float64)
    return result if result.shape == PROBE.shape and np.all(np.isfinite(result)) else None


def _scalar_constants(model: onnx.ModelProto) -> dict[str, tuple[float, int]]:
    """Name → (value, rank) of each one-element float32 constant, initializer or Constant node (float32: the type the
    contrib ops take here)."""
    found = {}
    for init in model.graph.initializer:
        if int(np.prod(init.dims)) == 1 and init.data_type == onnx.TensorProto.FLOAT:
            found[init.name] = (float(numpy_helper.to_array(init).ravel()[0]), len(init.dims))
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            value = numpy_helper.to_array(node.attribute[0].t)
            if value.size == 1 and value.dtype == np.float32:
                found[node.output[0]] = (float(value.ravel()[0]), value.ndim)
    return found
