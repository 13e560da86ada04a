"""MLP discovery shared by every MLP pass: Linear → element-wise activation → Linear.

`find_mlps(graph)` returns the blocks it found and, for every MatMul/Gemm or activation it looked at
and could not use, the reason (a near-miss), so `edgec inspect` can say why a block was skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import onnx_graphsurgeon as gs

from edgec.passes.mlp.activations import ELEMENTWISE, NONLINEAR, Activation, NoActivation, match_activation
from edgec.passes.mlp.linear import Linear, NotLinear, match_linear


@dataclass
class MLPBlock:
    index: int
    fc1: Linear
    act: Activation
    fc2: Linear
    shared_weights: bool = False   # a weight of this block is also used elsewhere: passes leave it alone
    up: Linear | None = None       # gated MLPs (SwiGLU, GeGLU): fc2(act(fc1(x)) * up(x)); fc1 is the gate

    @property
    def hidden(self) -> int:
        return self.fc1.out_features

    @property
    def d_in(self) -> int:
        return self.fc1.in_features

    @property
    def d_out(self) -> int:
        return self.fc2.out_features

    @property
    def params(self) -> int:
        return self.fc1.params + self.fc2.params + (self.up.params if self.up else 0)

    @property
    def linears(self) -> list[Linear]:
        return [self.fc1, self.fc2] + ([self.up] if self.up else [])

    @property
    def name(self) -> str:
        return layer_name(self.fc1)

    def describe(self) -> dict:
        return {
            "index": self.index, "name": self.name, "pattern": self.act.pattern,
            "shape": f"{self.d_in}→{self.hidden}→{self.d_out}",
            "fc1": self.fc1.matmul.name, "fc2": self.fc2.matmul.name,
            **({"up": self.up.matmul.name} if self.up else {}),
            "params": self.params, "shared_weights": self.shared_weights,
        }


@dataclass
class NearMiss:
    node: str
    op: str
    reason: str


@dataclass
class Discovery:
    blocks: list[MLPBlock] = field(default_factory=list)
    near_misses: list[NearMiss] = field(default_factory=list)


def find_mlps(graph: gs.Graph) -> Discovery:
    graph.toposort()
    found = Discovery()
    claimed: set[int] = set()
    for node in graph.nodes:
        if node.op not in ("MatMul", "Gemm") or id(node) in claimed:
            continue
        try:
            fc1 = match_linear(graph, node)
        except NotLinear:
            continue
        ups: dict[int, Linear] = {}
        try:
            act, fc2_node = match_activation(graph, fc1.y, fc1.out_features, _fc2_test(graph),
                                             _gate_test(graph, fc1.out_features, ups))
            fc2 = match_linear(graph, fc2_node)
        except (NoActivation, NotLinear) as exc:
            if _leads_to_nonlinearity(fc1):
                found.near_misses.append(NearMiss(node.name, node.op, str(exc)))
            continue
        if fc2.in_features != fc1.out_features:
            found.near_misses.append(NearMiss(node.name, node.op,
                                              f"fc2 takes {fc2.in_features} features, fc1 gives {fc1.out_features}"))
            continue
        block = MLPBlock(len(found.blocks), fc1, act, fc2, up=ups.get(id(act.gate)) if act.gate is not None else None)
        found.blocks.append(block)
        claimed.update(id(n) for lin in block.linears for n in lin.nodes)
        claimed.update(id(n) for n in act.nodes)
    # the up projection of a gated MLP was looked at first as a would-be fc1: not a near-miss after all
    found.near_misses = [m for m in found.near_misses
                         if not any(b.up is not None and b.up.matmul.name == m.node for b in found.blocks)]
    _mark_shared(graph, found.blocks)
    _orphan_activations(graph, found, claimed)
    return found


def editable_blocks(graph: gs.Graph) -> list[MLPBlock]:
    """The blocks a pass may rewrite: those whose weights no other layer shares."""
    return [b for b in find_mlps(graph).blocks if not b.shared_weights]


def _fc2_test(graph: gs.Graph):
    def is_fc2(node: gs.Node, tensor: gs.Tensor) -> bool:
        if node.op not in ("MatMul", "Gemm") or node.inputs[0] is not tensor:
            return False
        try:
            match_linear(graph, node)
        except NotLinear:
            return False
        return True
    return is_fc2


def _gate_test(graph: gs.Graph, hidden: int, found: dict[int, Linear]):
    """Whether a tensor is the output of a linear layer of the hidden width (a gated MLP's up projection);
    the Linear is remembered in `found` under the tensor's id."""
    def is_up(tensor: gs.Tensor) -> bool:
        producer = tensor.inputs[0] if tensor.inputs else None
        if producer is not None and producer.op == "Add":      # MatMul + bias: find the MatMul
            producer = next((t.inputs[0] for t in producer.inputs if t.inputs and t.inputs[0].op == "MatMul"), None)
        if producer is None or producer.op not in ("MatMul", "Gemm"):
            return False
        try:
            lin = match_linear(graph, producer)
        except NotLinear:
            return False
        if lin.y is not tensor or lin.out_features != hidden:
            return False
        found[id(tensor)] = lin
        return True
    return is_up


def _leads_to_nonlinearity(fc1: Linear) -> bool:
    return any(u.op in NONLINEAR for u in fc1.y.outputs)


def _mark_shared(graph: gs.Graph, blocks: list[MLPBlock]) -> None:
    """A weight used by more than one MatMul/Gemm (tied layers) stays shared; mark those blocks."""
    uses: dict[int, int] = {}
    for node in graph.nodes:
        if node.op in ("MatMul", "Gemm"):
            try:
                lin = match_linear(graph, node)
            except NotLinear:
                continue
            uses[id(lin.weight_source)] = uses.get(id(lin.weight_source), 0) + 1
    for block in blocks:
        for lin in block.linears:
            if uses.get(id(lin.weight_source), 0) > 1 or len(lin.weight_source.outputs) > 1:
                block.shared_weights = True


def _orphan_activations(graph: gs.Graph, found: Discovery, claimed: set[int]) -> None:
    """Non-linearities fed by a Conv (1×1-conv MLPs) that sit in no block: reported as near-misses."""
    explained = {m.node for m in found.near_misses}
    for node in graph.nodes:
        if node.op not in NONLINEAR or id(node) in claimed or node.name in explained:
            continue
        src = _source_through_elementwise(node)
        if src is not None and src.op == "Conv" and src.name not in explained:
            explained.add(src.name)
            found.near_misses.append(NearMiss(src.name, "Conv",
                                              f"Conv feeds {node.op} '{node.name}': 1×1-conv MLPs are not rewritten yet"))


def _source_through_elementwise(node: gs.Node, depth: int = 6) -> gs.Node | None:
    """The first producer upstream of `node` that is not an element-wise op (Div, Mul, Add, …)."""
    current = node
    for _ in range(depth):
        inputs = [t for t in current.inputs if t.inputs]
        if not inputs:
            return None
        current = inputs[0].inputs[0]
        if current.op not in ELEMENTWISE:
            return current
    return None


_LAYER_RE = re.compile(r"(?:layers?|blocks?|h|encoder|decoder|stages?)[._/](\d+)", re.IGNORECASE)


def layer_name(lin: Linear) -> str:
    """A readable layer label: a meaningful bias / weight name, else the node's scope."""
    bias_name = lin.bias_node.inputs[1].name if lin.bias_node is not None else ""
    bias_name = bias_name if "bias" in bias_name else ""
    for candidate in (bias_name, lin.weight_source.name, lin.matmul.name):
        if candidate and not re.fullmatch(r"(onnx::|val_|node_|_v_)?[\w:]*\d+", candidate):
            name = candidate.rsplit("/", 1)[0] if "/" in candidate else candidate
            return re.sub(r"\.(weight|bias)$", "", name)
    return lin.matmul.name or lin.weight_source.name
