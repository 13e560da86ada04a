"""Removing a channel group's channels from the graph, and the terminals' weights as rows per channel.

A terminal's weight is seen as one row per input channel, W̃ [C, cols], so that the MLP pruning's plans
(`plans.prune`: scores, least-squares re-solve on the kept rows) apply unchanged: a k×k Conv's row holds its
O·k·k taps and a linear's row its S·O entries of that channel (S: spatial values per channel before a
Flatten). The re-solve then uses the channel Gram for every tap alike (cross-tap correlations are left out);
the bias row carries the kept channels' share of what the removed ones contributed on average.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import onnx_graphsurgeon as gs

from edgec.passes.conv.discovery import ChannelGroup, Terminal
from edgec.passes.plans.prune import augmented_weight


@dataclass
class Rows:
    """A terminal's weight as rows per input channel, and how to give the rows back the terminal's layout."""
    weight: np.ndarray          # [C, cols]
    bias: np.ndarray            # [cols]: the bias on the first tap's columns, zeros elsewhere
    taps: int                   # columns per output (k·k for a Conv, S for a linear)
    outputs: int


def terminal_rows(terminal: Terminal) -> Rows:
    node = terminal.node
    if terminal.kind == "conv":
        w = np.asarray(node.inputs[1].values, np.float64)          # [O, C, kh, kw]
        outputs, channels, taps = w.shape[0], w.shape[1], int(np.prod(w.shape[2:], dtype=np.int64))
        rows = w.reshape(outputs, channels, taps).transpose(1, 0, 2).reshape(channels, outputs * taps)
    else:
        w = _linear_in_out(node)                                      # [C·S, O]
        outputs, taps = w.shape[1], terminal.spatial
        rows = w.reshape(-1, taps, outputs).transpose(0, 2, 1).reshape(-1, outputs * taps)
    bias = np.zeros((outputs, taps))
    bias[:, 0] = _bias(node, outputs)
    return Rows(rows, bias.reshape(-1), taps, outputs)


def set_terminal(terminal: Terminal, rows: Rows, weight: np.ndarray, bias: np.ndarray) -> None:
    """Write re-solved rows [K, cols] and bias [cols] back in the terminal's own layout."""
    node, taps, outputs = terminal.node, rows.taps, rows.outputs
    kept = weight.shape[0]
    folded_bias = bias.reshape(outputs, taps).sum(axis=1).astype(np.float32)
    per_output = weight.reshape(kept, outputs, taps)
    if terminal.kind == "conv":
        shape = node.inputs[1].values.shape
        new = per_output.transpose(1, 0, 2).reshape((outputs, kept) + tuple(shape[2:]))
    else:
        new = per_output.transpose(0, 2, 1).reshape(kept * taps, outputs)
        if node.op == "Gemm" and int(node.attrs.get("transB", 0)):
            new = new.T
        if node.op == "MatMul":          # a flattened [N, C·S] input: a Gemm can carry the re-solved bias
            node.op, node.attrs = "Gemm", {}
    _replace(node, 1, np.ascontiguousarray(new, np.float32))
    if len(node.inputs) > 2 and node.inputs[2].name:
        old = np.asarray(node.inputs[2].values)
        _replace(node, 2, folded_bias.reshape(old.shape) if old.size == outputs else folded_bias)
    elif np.any(folded_bias):
        node.inputs.append(gs.Constant(f"{node.inputs[1].name}.bias", folded_bias))


def narrow(group: ChannelGroup, kept: np.ndarray, resolve: Callable[[Terminal, np.ndarray], np.ndarray] | None = None,
           lineage: dict[str, np.ndarray] | None = None) -> None:
    """Keep only the channels `kept` (sorted) of the group. Each terminal's rows with the bias row under them
    [C + 1, cols] become `resolve(terminal, rows)` ([K + 1, cols]: a re-solve on the kept channels), or the kept
    rows as they are (exact where the removed channels reached the terminal as zeros: a gated, masked model).
    `lineage` (PassContext.lineage) learns which original channels each narrowed tensor keeps."""
    for terminal in group.terminals:
        rows = terminal_rows(terminal)
        w_aug = augmented_weight(rows.weight, rows.bias)
        solved = resolve(terminal, w_aug) if resolve is not None else np.vstack([w_aug[kept], w_aug[-1:]])
        set_terminal(terminal, rows, solved[:-1], solved[-1])
    remove_channels(group, kept)
    if lineage is not None:
        for tensor in group.tensors:
            lineage[tensor.name] = lineage[tensor.name][kept] if tensor.name in lineage else kept


def remove_channels(group: ChannelGroup, keep: np.ndarray) -> None:
    """The producers' output channels outside `keep`, and what carries them up to the terminals (the
    terminals themselves are written by `set_terminal`)."""
    for tensor in group.tensors:
        tensor.shape = None                  # the channel count changes: let ONNX Runtime infer it again
    for terminal in group.terminals:
        if terminal.kind == "linear":
            terminal.node.inputs[0].shape = None     # the flattened row is shorter too
    for node in group.depthwise:
        node.attrs["group"] = len(keep)
    for node in group.producers + group.depthwise:
        _replace(node, 1, np.asarray(node.inputs[1].values)[keep])
        if len(node.inputs) > 2 and node.inputs[2].name:
            _replace(node, 2, np.asarray(node.inputs[2].values)[keep])
    for node, index in group.channel_constants:
        value = np.asarray(node.inputs[index].values)
        axis = next(i for i, d in enumerate(value.shape) if d != 1)
        _replace(node, index, np.take(value, keep, axis=axis))


def _linear_in_out(node: gs.Node) -> np.ndarray:
    w = np.asarray(node.inputs[1].values, np.float64)
    return w.T if node.op == "Gemm" and int(node.attrs.get("transB", 0)) else w


def _bias(node: gs.Node, outputs: int) -> np.ndarray:
    if len(node.inputs) < 3 or not node.inputs[2].name:
        return np.zeros(outputs)
    value = np.asarray(node.inputs[2].values, np.float64).reshape(-1)
    return np.broadcast_to(value, (outputs,)).copy()


def _replace(node: gs.Node, index: int, value: np.ndarray) -> None:
    node.inputs[index] = gs.Constant(f"{node.inputs[index].name}.c", np.ascontiguousarray(value))
