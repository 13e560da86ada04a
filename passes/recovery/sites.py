"""Where a GRASP group affine `h̃ = γ_g ⊙ h + β_g` can sit and fold back exactly into the graph's constants.

A site is a tensor whose channels come out of constants that scale per channel: a float linear (weight
columns and bias), a Conv (output filters and bias; channels on axis 1), an int8 linear from ONNX Runtime's dynamic quantization (the per-channel weight
scale after MatMulInteger, and the bias), a QDQ linear (the DequantizeLinear's per-channel scale), a
LayerNormalization (its scale and bias) or a Mul by a constant vector (a decomposed LayerNorm's γ). Folding
multiplies those constants by γ and turns the bias into γ·b + β, so the graph keeps its structure and op count;
where there is no bias the site gets a scale only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx_graphsurgeon as gs

from edgec.passes.graph_tools import consumers, producer
from edgec.passes.mlp.discovery import editable_blocks
from edgec.passes.mlp.linear import NotLinear, match_linear

KINDS = ("linear", "conv", "int8", "qdq", "norm", "scale")
ROUNDING_KINDS = frozenset({"int8", "qdq"})     # sites followed by integer rounding (their graphs probe coarsely)


@dataclass
class Site:
    output: str                   # the modulated tensor (its channels: the last axis, or axis 1 after a Conv)
    channels: int
    kind: str                     # one of KINDS
    label: str                    # the node that computes it (reports, adapter keys)
    scales: list[tuple[gs.Constant, int]] = field(default_factory=list)   # constants × γ along this axis
    bias: gs.Constant | None = None           # becomes γ·b + β / bias_factor
    bias_factor: float = 1.0                  # Gemm's beta: C holds b / beta
    broadcast: tuple[int, ...] = ()           # how a per-channel vector lines up with the tensor: (C,) for the
                                              # last axis (the default), (C, 1, 1) after a 2-D Conv

    @property
    def shape(self) -> tuple[int, ...]:
        return self.broadcast or (self.channels,)

    @property
    def shifts(self) -> bool:
        return self.bias is not None

    def constants(self) -> list[gs.Constant]:
        """What a fold rewrites."""
        return [c for c, _ in self.scales] + ([self.bias] if self.bias is not None else [])


def find_sites(graph: gs.Graph, where: str = "linear", norms: bool = False) -> list[Site]:
    """Sites in graph order. where: `linear` (every foldable linear layer, float or int8) or `mlp` (the two
    linears of each MLP block); `norms` adds LayerNormalization outputs and Mul-by-constant-vector scales."""
    mlp_nodes = {id(lin.matmul) for b in editable_blocks(graph) for lin in (b.fc1, b.fc2)} if where == "mlp" else None
    sites: list[Site] = []
    seen: set[str] = set()
    claimed: set[int] = set()
    for node in graph.nodes:
        site = _site(graph, node, norms)
        if site is None or site.output in seen or _shared(site) or claimed & {id(c) for c in site.constants()}:
            continue
        if mlp_nodes is not None and site.kind in ("linear", "int8", "qdq", "conv") and id(node) not in mlp_nodes:
            continue
        seen.add(site.output)
        claimed.update(id(c) for c in site.constants())
        sites.append(site)
    return sites


def _site(graph: gs.Graph, node: gs.Node, norms: bool) -> Site | None:
    if node.op == "Conv":
        return _conv(node)
    if node.op in ("MatMul", "Gemm"):
        return _float_linear(graph, node) or _qdq_linear(graph, node)
    if node.op == "MatMulInteger":
        return _int8_linear(node)
    if norms and node.op == "LayerNormalization":
        return _norm(node)
    if norms and node.op == "Mul":
        return _vector_scale(node)
    return None


def _float_linear(graph: gs.Graph, node: gs.Node) -> Site | None:
    try:
        lin = match_linear(graph, node)
    except NotLinear:
        return None
    weight = lin.weight_source
    if not isinstance(weight, gs.Constant) or weight.values.dtype != np.float32:
        return None
    axis = 0 if node.op == "Gemm" and node.attrs.get("transB", 0) else 1
    site = Site(lin.y.name, lin.out_features, "linear", node.name, [(weight, axis)])
    if lin.bias_node is not None:
        bias = _constant_of(lin.bias_node, lin.matmul.outputs[0])
        if bias is None or bias.values.size != lin.out_features:
            site.output = lin.matmul.outputs[0].name     # γ cannot reach this bias: modulate before it
        else:
            site.bias = bias
    elif node.op == "Gemm" and len(node.inputs) > 2 and node.inputs[2].name:
        c = node.inputs[2]
        if not isinstance(c, gs.Constant) or c.values.size != lin.out_features:
            return None            # a broadcast C would need reshaping: not a site
        site.bias, site.bias_factor = c, float(node.attrs.get("beta", 1.0))
    return site


def _conv(node: gs.Node) -> Site | None:
    """Conv(x, W[O, I/g, k…], b[O]): channels on axis 1 of the output; γ scales W's output filters."""
    weight = node.inputs[1]
    if not isinstance(weight, gs.Constant) or weight.values.dtype != np.float32 or weight.values.ndim < 3:
        return None
    channels = int(weight.values.shape[0])
    site = Site(node.outputs[0].name, channels, "conv", node.name, [(weight, 0)],
                broadcast=(channels,) + (1,) * (weight.values.ndim - 2))
    if len(node.inputs) > 2 and node.inputs[2].name:
        bias = node.inputs[2]
        if not isinstance(bias, gs.Constant) or bias.values.shape != (channels,):
            return None
        site.bias = bias
    return site


def _qdq_linear(graph: gs.Graph, node: gs.Node) -> Site | None:
    """MatMul(x, DequantizeLinear(W_q, scale[out], zp, axis=1)) (+ bias Add): the scale carries γ."""
    dq = producer(node.inputs[1]) if node.op == "MatMul" and len(node.inputs) > 1 else None
    if dq is None or dq.op != "DequantizeLinear" or not isinstance(dq.inputs[0], gs.Constant):
        return None
    scale, w = dq.inputs[1], dq.inputs[0].values
    if not isinstance(scale, gs.Constant) or scale.values.dtype != np.float32 or w.ndim != 2 \
            or scale.values.shape != (w.shape[1],) \
            or dq.attrs.get("axis", 1) not in (1, -1) or len(consumers(node.inputs[1])) != 1:
        return None
    out = node.outputs[0]
    site = Site(out.name, int(w.shape[1]), "qdq", node.name, [(scale, 0)])
    _attach_bias(site, out)
    return site


def _int8_linear(node: gs.Node) -> Site | None:
    """ONNX Runtime's dynamic int8: MatMulInteger → Cast → Mul(·, Mul(x_scale, w_scale)) (+ bias Add)."""
    cast = _only_user(node.outputs[0], "Cast")
    mul = _only_user(cast.outputs[0], "Mul") if cast is not None else None
    if cast is None or mul is None:
        return None
    scales = mul.inputs[1] if mul.inputs[0] is cast.outputs[0] else mul.inputs[0]
    scale_mul = producer(scales)
    if scale_mul is None or scale_mul.op != "Mul" or len(consumers(scales)) != 1:
        return None
    w_scale = next((t for t in scale_mul.inputs if isinstance(t, gs.Constant)), None)
    weight = node.inputs[1]
    if w_scale is None or w_scale.values.dtype != np.float32 or not isinstance(weight, gs.Constant) \
            or weight.values.ndim != 2:
        return None
    channels = int(weight.values.shape[1])
    if w_scale.values.size not in (1, channels):
        return None
    site = Site(mul.outputs[0].name, channels, "int8", node.name, [(w_scale, 0)])
    _attach_bias(site, mul.outputs[0])
    return site


def _norm(node: gs.Node) -> Site | None:
    scale = node.inputs[1]
    axis = int(node.attrs.get("axis", -1))
    if axis != -1 or not isinstance(scale, gs.Constant) or scale.values.ndim != 1 or scale.values.dtype != np.float32:
        return None
    site = Site(node.outputs[0].name, int(scale.values.size), "norm", node.name, [(scale, 0)])
    if len(node.inputs) > 2 and isinstance(node.inputs[2], gs.Constant) and node.inputs[2].values.shape == scale.values.shape:
        site.bias = node.inputs[2]
    elif len(node.inputs) > 2 and node.inputs[2].name:
        return None
    return site


def _vector_scale(node: gs.Node) -> Site | None:
    """Mul(h, c[D]) (+ Add d[D]): a decomposed LayerNorm's γ (and β), or any per-channel scale."""
    const = next((t for t in node.inputs if isinstance(t, gs.Constant)), None)
    if const is None or const.values.ndim != 1 or const.values.size < 2 or const.values.dtype != np.float32:
        return None
    other = node.inputs[1] if node.inputs[0] is const else node.inputs[0]
    source = producer(other)
    if isinstance(other, gs.Constant) or (source is not None and source.op == "DynamicQuantizeLinear"):
        return None            # int8's scale product (x_scale · w_scale) is not an activation
    site = Site(node.outputs[0].name, int(const.values.size), "scale", node.name, [(const, 0)])
    _attach_bias(site, node.outputs[0])
    return site


def _attach_bias(site: Site, out: gs.Tensor) -> None:
    """A single Add(out, constant[D]) after `out` carries β; the site then ends at the Add."""
    add = _only_user(out, "Add")
    if add is None:
        return
    const = _constant_of(add, out)
    if const is not None and const.values.shape[-1:] == (site.channels,) and const.values.size == site.channels:
        site.bias, site.output = const, add.outputs[0].name


def _constant_of(add: gs.Node, data: gs.Tensor) -> gs.Constant | None:
    other = add.inputs[1] if add.inputs[0] is data else add.inputs[0]
    return other if isinstance(other, gs.Constant) and other.values.dtype == np.float32 else None


def _only_user(tensor: gs.Tensor, op: str) -> gs.Node | None:
    users = consumers(tensor)
    return users[0] if len(users) == 1 and users[0].op == op else None


def _shared(site: Site) -> bool:
    """A constant another node also reads cannot be rewritten for this site alone."""
    return any(len(c.outputs) != 1 for c in site.constants())
