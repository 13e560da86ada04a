"""Which output channels of a convolution can be removed, and everything that removal touches.

A `ChannelGroup` starts at a producer Conv (group 1, constant weights) and follows its output through what
keeps channels apart — BatchNormalization, elementwise activations (SiLU's x·sigmoid(x) included), pooling,
Pad and Resize that leave the channel axis alone, per-channel constants, depthwise convolutions (a channel goes
with its input channel) — to the terminals that mix channels: Conv with group 1 (its input channels go), or
Flatten / Reshape / Squeeze into a Gemm or MatMul (the linear's rows follow the channels). Anything else on the
way (a residual Add with another branch, a Concat, a graph output, an unknown op) leaves the producer alone,
with the reason as a near-miss.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx_graphsurgeon as gs

from edgec.passes.graph_tools import constant_value, is_graph_output

UNARY = {"Relu", "LeakyRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu", "Selu", "Softplus",
         "Softsign", "Mish", "Gelu", "FastGelu", "Identity", "Dropout", "Celu", "ThresholdedRelu", "Abs", "Neg", "Exp", "Sqrt",
         "Erf", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool", "Cast"}
BINARY = {"Add", "Sub", "Mul", "Div", "Max", "Min", "Pow", "PRelu", "Sum"}
SPATIAL = {"Pad", "Resize", "Upsample"}      # channel-preserving when their channel entries are trivial


@dataclass
class Terminal:
    """A consumer that mixes channels: its weight loses the removed input channels (and is re-solved)."""
    node: gs.Node
    tensor: gs.Variable         # its input as the channels reach it (statistics are taken here)
    kind: str                   # conv | linear
    spatial: int = 1            # linear: values per channel in the flattened row (H·W before a Flatten)


@dataclass
class ChannelGroup:
    producers: list[gs.Node]    # Convs whose output channels are these channels (the first one named the group;
                                # more where branches meet: an SE block's gate, a residual's other side)
    channels: int
    terminals: list[Terminal] = field(default_factory=list)
    depthwise: list[gs.Node] = field(default_factory=list)      # their weights and biases lose the channels
    channel_constants: list[tuple[gs.Node, int]] = field(default_factory=list)  # (node, input index) sliced
    tensors: list[gs.Variable] = field(default_factory=list)    # whose channel count changes

    @property
    def name(self) -> str:
        first = self.producers[0]
        return first.name or first.outputs[0].name


class NotPrunable(Exception):
    pass


def find_channel_groups(graph: gs.Graph) -> tuple[list[ChannelGroup], list[str]]:
    """The producers whose channels can be removed, and a reason for each Conv that cannot."""
    groups: list[ChannelGroup] = []
    near_misses: list[str] = []
    claimed: set[int] = set()
    for node in graph.nodes:
        if node.op != "Conv" or id(node) in claimed:
            continue
        try:
            group = _group(graph, node)
        except NotPrunable as why:
            near_misses.append(f"{node.name or node.outputs[0].name}: {why}")
            continue
        claimed.update(id(p) for p in group.producers)
        groups.append(group)
    return groups, near_misses


def conv_weight(node: gs.Node) -> np.ndarray | None:
    """A Conv's weight when it is a constant that only this node reads (so editing it changes nothing else)."""
    weight = node.inputs[1] if len(node.inputs) > 1 else None
    if not isinstance(weight, gs.Constant) or len(weight.outputs) != 1:
        return None
    return np.asarray(weight.values)


def _group(graph: gs.Graph, conv: gs.Node) -> ChannelGroup:
    weight = conv_weight(conv)
    if weight is None or weight.dtype != np.float32:
        raise NotPrunable("weight is not a float32 constant of its own")
    if int(conv.attrs.get("group", 1)) != 1:
        raise NotPrunable("grouped or depthwise (its channels go with its input's)")
    group = ChannelGroup([], int(weight.shape[0]))
    _Walk(graph, group).run(conv)
    if not group.terminals:
        raise NotPrunable("no consumer mixes its channels")
    return group


class _Walk:
    """Every tensor that carries the group's channels, from both ends: a tensor's consumers (where the channels
    go) and its producer (where they come from: where two branches meet, both sides are the same channels)."""

    def __init__(self, graph: gs.Graph, group: ChannelGroup):
        self.graph, self.group = graph, group
        self.region: set[int] = set()
        self.visited: set[tuple[int, bool]] = set()
        self.todo: list[gs.Variable] = []

    def run(self, conv: gs.Node) -> None:
        self._node(conv, None)
        while self.todo:
            tensor = self.todo.pop()
            if is_graph_output(self.graph, tensor):
                raise NotPrunable(f"'{tensor.name}' is a graph output")
            if not tensor.inputs:
                raise NotPrunable(f"'{tensor.name}' is a graph input")
            for node in [tensor.inputs[0], *tensor.outputs]:
                self._node(node, tensor)

    def _add(self, tensor: gs.Tensor) -> None:
        if id(tensor) not in self.region:
            self.region.add(id(tensor))
            self.group.tensors.append(tensor)
            self.todo.append(tensor)

    def _node(self, node: gs.Node, tensor: gs.Variable | None) -> None:
        # a Conv has two roles: reading the channels (its input) and writing them (its output), e.g. a
        # residual branch's Conv that reads the stream and is added back into it
        reads = node.op == "Conv" and int(node.attrs.get("group", 1)) == 1 and tensor is not None \
            and node.inputs[0] is tensor
        key = (id(node), reads)
        if key in self.visited:
            return
        self.visited.add(key)
        op, group = node.op, self.group
        if node.domain not in ("", "ai.onnx", None):
            raise NotPrunable(f"'{tensor.name if tensor else ''}' meets {op} ({node.domain}), not a standard op")
        if op == "Conv":
            self._conv(node, tensor)
        elif op in ("Flatten", "Reshape", "Squeeze") and tensor is not None and node.inputs[0] is tensor:
            group.terminals.append(_linear_terminal(node, tensor, group.channels))
        elif op == "BatchNormalization":
            if any(not _own_constant(t) for t in node.inputs[1:5]):
                raise NotPrunable("a BatchNormalization whose parameters are not constants")
            group.channel_constants += [(node, i) for i in range(1, 5)]
            self._add(node.inputs[0])
            self._add(node.outputs[0])
        elif op in UNARY or op in BINARY or op in SPATIAL:
            self._channelwise(node)
        else:
            name = tensor.name if tensor is not None else ""
            raise NotPrunable(f"'{name}' meets {op} ({node.name or 'unnamed'}), which mixes or reshapes channels")

    def _conv(self, node: gs.Node, tensor: gs.Variable | None) -> None:
        group, channels = self.group, self.group.channels
        weight = conv_weight(node)
        if weight is None or weight.dtype != np.float32:
            raise NotPrunable(f"Conv {node.name or ''} has no float32 weight of its own")
        if len(node.inputs) > 2 and node.inputs[2].name and not _own_constant(node.inputs[2]):
            raise NotPrunable(f"Conv {node.name or ''} has a bias that is not a constant of its own")
        groups = int(node.attrs.get("group", 1))
        feeds_it = tensor is not None and node.inputs[0] is tensor
        if groups == channels and weight.shape[0] == channels and weight.shape[1] == 1 and channels > 1:
            group.depthwise.append(node)      # a channel goes with its input channel
            self._add(node.inputs[0])
            self._add(node.outputs[0])
        elif groups == 1 and feeds_it and weight.shape[1] == channels:
            group.terminals.append(Terminal(node, tensor, "conv"))
        elif groups == 1 and not feeds_it and weight.shape[0] == channels:
            group.producers.append(node)
            self._add(node.outputs[0])
        else:
            raise NotPrunable(f"'{tensor.name if tensor else ''}' meets Conv {node.name or ''} ({groups} groups, "
                              f"weight {list(weight.shape)})")

    def _channelwise(self, node: gs.Node) -> None:
        """Its data inputs and output carry the channels; other inputs are constants with no channel axis (scalars,
        pads, scales) or one entry per channel (sliced with the channels)."""
        channels = self.group.channels
        if node.op in SPATIAL and not _spatial_only(node, channels):
            raise NotPrunable(f"{node.op} ({node.name or 'unnamed'}) changes the channel axis")
        for i, other in enumerate(node.inputs):
            if other.name == "" or (node.op in SPATIAL and i > 0):
                continue
            value = constant_value(other)
            if value is None:
                self._add(other)
            elif value.value.size > 1:
                if not _per_channel(value.value.shape, channels) or not _own_constant(other):
                    raise NotPrunable(f"{node.op} ({node.name or 'unnamed'}) has a constant '{other.name}' of "
                                      f"shape {list(value.value.shape)}")
                self.group.channel_constants.append((node, i))
        self._add(node.outputs[0])


def _linear_terminal(node: gs.Node, tensor: gs.Variable, channels: int) -> Terminal:
    """Flatten / Reshape / Squeeze to [N, C·S] read by one Gemm or MatMul with a constant weight (S, the values
    per channel, from the weight's rows: shapes need not be known)."""
    if node.op == "Flatten" and int(node.attrs.get("axis", 1)) != 1:
        raise NotPrunable(f"Flatten of '{tensor.name}' is not to [N, C·H·W]")
    if node.op == "Reshape":
        target = constant_value(node.inputs[1])
        if target is None or target.value.size != 2 or int(target.value[1]) != -1:
            raise NotPrunable(f"Reshape of '{tensor.name}' is not to [N, -1]")
    out = node.outputs[0]
    readers = list(out.outputs)
    if len(readers) != 1 or readers[0].op not in ("Gemm", "MatMul") or readers[0].inputs[0] is not out:
        raise NotPrunable(f"the flattened '{tensor.name}' is read by other than one Gemm/MatMul")
    linear = readers[0]
    weight = linear.inputs[1]
    if not isinstance(weight, gs.Constant) or len(weight.outputs) != 1 or linear.attrs.get("transA", 0):
        raise NotPrunable(f"{linear.op} after '{tensor.name}' has no constant weight of its own")
    if len(linear.inputs) > 2 and not _own_constant(linear.inputs[2]):
        raise NotPrunable(f"{linear.op} after '{tensor.name}' has a bias that is not its own constant")
    shape = weight.values.shape
    rows = shape[1] if linear.op == "Gemm" and int(linear.attrs.get("transB", 0)) else shape[0]
    if len(shape) != 2 or rows % channels or node.op == "Squeeze" and rows != channels:
        raise NotPrunable(f"the {linear.op} after '{tensor.name}' reads {rows} values, not a whole number per "
                          f"each of its {channels} channels")
    return Terminal(linear, tensor, "linear", rows // channels)   # C·H·W rows: H·W per channel, channel-major


def _per_channel(shape: tuple[int, ...], channels: int) -> bool:
    """(C, 1, 1), (1, C, 1, 1), (C,) for PRelu-style slopes: one entry per channel on the channel axis."""
    dims = list(shape)
    while dims and dims[0] == 1 and len(dims) > 3:
        dims.pop(0)
    return bool(dims) and dims[0] == channels and all(d == 1 for d in dims[1:])


def _spatial_only(node: gs.Node, channels: int) -> bool:
    """Pad with no channel padding; Resize / Upsample with scale 1 on the channel axis."""
    if node.op == "Pad":
        pads = node.attrs.get("pads")
        if pads is None and len(node.inputs) > 1:
            resolved = constant_value(node.inputs[1])
            pads = None if resolved is None else resolved.value.tolist()
        if pads is None or len(node.inputs) > 3 and node.inputs[3].name:    # unknown pads, or explicit axes
            return False
        half = len(pads) // 2
        return half >= 2 and pads[1] == 0 and pads[half + 1] == 0
    scales = node.inputs[2] if node.op == "Resize" and len(node.inputs) > 2 and node.inputs[2].name else \
        node.inputs[1] if node.op == "Upsample" and len(node.inputs) > 1 else None
    sizes = node.inputs[3] if node.op == "Resize" and len(node.inputs) > 3 and node.inputs[3].name else None
    if sizes is not None:
        return False
    resolved = constant_value(scales) if scales is not None else None
    return resolved is not None and resolved.value.size >= 2 and float(resolved.value[1]) == 1.0


def _own_constant(tensor: gs.Tensor) -> bool:
    return isinstance(tensor, gs.Constant) and len(tensor.outputs) == 1
