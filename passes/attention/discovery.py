"""Multi-head attention discovery: Q/K/V projections → per-head scores → Softmax → ·V → output projection.

Exporters spell attention in many ways (TorchScript, torch.export, scaled q or k, rotary embeddings, K
transposed once or twice); discovery follows the data from every Softmax instead of matching one pattern:
back from the scores to the MatMul(Q, Kᵀ) and from each of its inputs to a projection, forward from the
probabilities through MatMul(·, V) to the output projection. Anything it cannot read is a near-miss with
the reason, like the MLP discovery's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx_graphsurgeon as gs

from edgec.passes.graph_tools import constant_value
from edgec.passes.mlp.discovery import NearMiss, layer_name
from edgec.passes.mlp.linear import Linear, NotLinear, match_linear

# Ops between a projection and the score/context MatMuls that act per head (or per element).
_HEAD_PATH = {"Transpose", "Reshape", "Cast", "Identity", "Mul", "Div", "Add", "Sub", "Neg", "Slice", "Concat",
              "Squeeze", "Unsqueeze", "Gather", "Split"}     # Gather / Split: a fused QKV's parts (a near-miss)
_FIRST_INPUT_ONLY = {"Reshape", "Slice", "Gather", "Split", "Squeeze", "Unsqueeze"}
# Ops between the score MatMul and the Softmax (scale, masks, biases).
_SCORE_PATH = {"Add", "Sub", "Mul", "Div", "Where", "Cast", "Identity"}
_PASS_THROUGH = {"Cast", "Identity", "Dropout"}
_QUANTIZED = {"MatMulInteger", "QLinearMatMul", "DynamicQuantizeLinear", "MatMulIntegerToFloat", "MatMulNBits",
              "DequantizeLinear", "QuantizeLinear"}
_INSPECTORS = {"Shape", "IsNaN"}     # consumers that only look at a tensor (its shape, or NaN guards)
FUSED = {"Attention", "MultiHeadAttention", "GroupQueryAttention", "PackedAttention"}


@dataclass
class AttentionBlock:
    index: int
    q: Linear
    k: Linear
    v: Linear
    o: Linear
    heads: int
    head_dim: int
    region: list[gs.Node] = field(default_factory=list)   # nodes between the projections and o (reshapes …)

    @property
    def name(self) -> str:
        return layer_name(self.q)

    @property
    def linears(self) -> list[Linear]:
        return [self.q, self.k, self.v, self.o]

    @property
    def params(self) -> int:
        return sum(lin.params for lin in self.linears)

    def describe(self) -> dict:
        return {"index": self.index, "name": self.name, "heads": self.heads, "head_dim": self.head_dim,
                "q": self.q.matmul.name, "k": self.k.matmul.name, "v": self.v.matmul.name,
                "o": self.o.matmul.name, "params": self.params}


@dataclass
class AttentionDiscovery:
    blocks: list[AttentionBlock] = field(default_factory=list)
    near_misses: list[NearMiss] = field(default_factory=list)


class NotAttention(Exception):
    """Why a Softmax is not the heart of an attention block edgec can rewrite."""


def find_attention(graph: gs.Graph) -> AttentionDiscovery:
    graph.toposort()
    found = AttentionDiscovery()
    for node in graph.nodes:
        if node.op in FUSED:
            found.near_misses.append(NearMiss(node.name, node.op, f"fused {node.op} ({node.domain or 'onnx'}): "
                                              "heads are removed from unfused attention only"))
        if node.op != "Softmax":
            continue
        try:
            block = _match(graph, node, len(found.blocks))
        except NotAttention as exc:
            if _looks_like_attention(node):     # a classifier's final Softmax is no near-miss
                found.near_misses.append(NearMiss(node.name, node.op, str(exc)))
            continue
        found.blocks.append(block)
    _drop_shared(found)
    return found


def _looks_like_attention(softmax: gs.Node) -> bool:
    """Scores from a MatMul of two computed tensors, or probabilities that a MatMul takes."""
    try:
        _back_to_matmul(softmax.inputs[0])
        return True
    except NotAttention:
        return _forward(softmax.outputs[0], {"MatMul"}, through={*_PASS_THROUGH, "Where"}) is not None


def _match(graph: gs.Graph, softmax: gs.Node, index: int) -> AttentionBlock:
    scores = _back_to_matmul(softmax.inputs[0])
    pv = _forward(softmax.outputs[0], {"MatMul"}, through={*_PASS_THROUGH, "Where"})
    if pv is None or _forward_from(pv, 0) is not softmax.outputs[0]:
        raise NotAttention("the probabilities do not feed a MatMul with V")
    q, k, v = (_projection(graph, t) for t in (scores.inputs[0], scores.inputs[1], pv.inputs[1]))
    if q.matmul is k.matmul or k.matmul is v.matmul:
        raise NotAttention("Q, K and V come from one fused projection (split after it): not removed yet")
    o_node = _forward(pv.outputs[0], {"MatMul", "Gemm"}, through={"Transpose", "Reshape", *_PASS_THROUGH})
    if o_node is None:
        raise NotAttention("the context does not reach an output projection")
    o = _linear(graph, o_node)
    if not q.out_features == k.out_features:
        raise NotAttention(f"K has {k.out_features} features, Q {q.out_features} (grouped-query attention: "
                           "shared K/V heads are not removed yet)")
    if v.out_features != o.in_features:
        raise NotAttention(f"V gives {v.out_features} features, the output projection takes {o.in_features}")
    heads, head_dim = _head_split(q)
    if v.out_features != heads * head_dim:
        raise NotAttention(f"V has {v.out_features} features, not {heads} heads × {head_dim}")
    region = _region([q.y, k.y, v.y], o.x)
    return AttentionBlock(index, q, k, v, o, heads, head_dim, region)


def _back_to_matmul(tensor: gs.Tensor, depth: int = 8) -> gs.Node:
    """The MatMul(Q, Kᵀ) upstream of the softmax input, through scales, masks and biases."""
    frontier = [tensor]
    for _ in range(depth):
        nxt: list[gs.Tensor] = []
        for t in frontier:
            node = t.inputs[0] if t.inputs else None
            if node is None:
                continue
            if node.op == "MatMul" and all(constant_value(i) is None for i in node.inputs):
                return node
            if node.op in _SCORE_PATH:
                nxt.extend(i for i in node.inputs if constant_value(i) is None)
        frontier = nxt
    raise NotAttention("no MatMul of two computed tensors (Q·Kᵀ) before the Softmax")


def _forward(tensor: gs.Tensor, ops: set[str], through: set[str] = _PASS_THROUGH, depth: int = 6) -> gs.Node | None:
    """The first consumer of `tensor` with an op in `ops`, following single-consumer pass-through ops."""
    for _ in range(depth):
        users = [u for u in tensor.outputs if u.op not in _INSPECTORS]
        if len(users) != 1:
            return None
        node = users[0]
        if node.op in ops:
            return node
        if node.op not in through:
            return None
        tensor = node.outputs[0]
    return None


def _forward_from(node: gs.Node, index: int) -> gs.Tensor:
    """The tensor that entered input `index` of `node`, followed back through pass-through ops."""
    tensor = node.inputs[index]
    while tensor.inputs and tensor.inputs[0].op in {*_PASS_THROUGH, "Where"}:
        node = tensor.inputs[0]
        tensor = node.inputs[-1] if node.op == "Where" else node.inputs[0]   # Where(isnan(p), 0, p)
    return tensor


def _projection(graph: gs.Graph, tensor: gs.Tensor, depth: int = 16) -> Linear:
    """The one linear layer every branch of per-head ops upstream of `tensor` leads to (rotary embeddings
    branch and join again; their cos/sin side inputs lead to no projection and are not followed)."""
    found: dict[int, Linear] = {}
    frontier, seen, repeated = [tensor], set(), False
    for _ in range(depth):
        nxt: list[gs.Tensor] = []
        for t in frontier:
            node = t.inputs[0] if t.inputs else None
            if node is None or id(node) in seen:
                continue
            seen.add(id(node))
            if node.op in ("MatMul", "Gemm") and constant_value(node.inputs[1]) is not None:
                lin = _linear(graph, node)
                found[id(lin.matmul)] = lin
            elif node.op in ("MatMul", "Gemm") and _dequantized(node.inputs[1]):
                raise NotAttention("the projection weights are stored quantized and dequantized at run time: "
                                   "heads are removed from float weights only")
            elif node.op == "Expand":
                repeated = True
            elif node.op in _QUANTIZED:
                raise NotAttention(f"the projections are quantized ({node.op}): remove heads before quantize")
            elif node.op in _HEAD_PATH:
                nxt.extend(i for i in node.inputs[:1 if node.op in _FIRST_INPUT_ONLY else None]
                           if constant_value(i) is None)
        frontier = nxt
    if not found and repeated:
        raise NotAttention("K/V heads are repeated by Expand (grouped-query attention): not removed yet")
    if len(found) != 1:
        raise NotAttention(f"{'no' if not found else len(found)} projections feed a side of the score/context MatMul")
    return next(iter(found.values()))


def _dequantized(tensor: gs.Tensor) -> bool:
    """A weight computed from an integer constant (Cast then scale, or DequantizeLinear)."""
    node = tensor.inputs[0] if tensor.inputs else None
    if node is None or node.op not in ("Mul", "DequantizeLinear"):
        return False
    for t in node.inputs:
        source = t.inputs[0] if t.inputs else None
        if node.op == "DequantizeLinear" and constant_value(t) is not None:
            return True
        if source is not None and source.op == "Cast" and constant_value(source.inputs[0]) is not None:
            return True
    return False


def _linear(graph: gs.Graph, node: gs.Node) -> Linear:
    try:
        return match_linear(graph, node)
    except NotLinear as exc:
        raise NotAttention(f"{node.name}: {exc}") from None


def _head_split(q: Linear) -> tuple[int, int]:
    """(heads, head_dim) from the Reshape that splits Q's features: its shape ends with [heads, head_dim],
    one of which may be -1."""
    from edgec.passes.attention.shapes import shape_entries

    reshape = _forward(q.y, {"Reshape"}, through={*_PASS_THROUGH, "Mul", "Div"})
    entries = shape_entries(reshape.inputs[1]) if reshape is not None else None
    while reshape is not None and entries and len(entries) <= 3 and entries[-1] == q.out_features:   # un-flatten
        reshape = _forward(reshape.outputs[0], {"Reshape"}, through={*_PASS_THROUGH, "Mul", "Div"})
        entries = shape_entries(reshape.inputs[1]) if reshape is not None else None
    if not entries or len(entries) < 2:
        raise NotAttention("the Reshape that splits Q into heads has no readable shape")
    a, b = entries[-2], entries[-1]
    features = q.out_features
    if b is not None and b > 0 and features % b == 0 and a in (-1, features // b):
        return features // b, b
    if a is not None and a > 0 and b == -1 and features % a == 0:
        return a, features // a
    raise NotAttention(f"the Reshape that splits Q into heads ends with {entries[-2:]}, not [heads, head_dim]")


def _region(starts: list[gs.Tensor], end: gs.Tensor) -> list[gs.Node]:
    """Nodes on a path from any of `starts` to `end`."""
    upstream: set[int] = set()
    stack = [end]
    while stack:
        t = stack.pop()
        if any(t is s for s in starts):
            continue
        for node in t.inputs:
            if id(node) not in upstream:
                upstream.add(id(node))
                stack.extend(node.inputs)
    region, stack, seen = [], list(starts), set()
    while stack:
        t = stack.pop()
        for node in t.outputs:
            if id(node) in upstream and id(node) not in seen:
                seen.add(id(node))
                region.append(node)
                stack.extend(node.outputs)
    return region


def _drop_shared(found: AttentionDiscovery) -> None:
    """A projection claimed by two blocks, or a weight used twice, is left alone."""
    uses: dict[int, int] = {}
    for b in found.blocks:
        for lin in b.linears:
            uses[id(lin.weight_source)] = uses.get(id(lin.weight_source), 0) + 1
    kept = []
    for b in found.blocks:
        if any(uses[id(lin.weight_source)] > 1 or len(lin.weight_source.outputs) > 1 for lin in b.linears):
            found.near_misses.append(NearMiss(b.q.matmul.name, "MatMul", "a projection weight is shared"))
        else:
            kept.append(b)
    for i, b in enumerate(kept):
        b.index = i
    found.blocks = kept
